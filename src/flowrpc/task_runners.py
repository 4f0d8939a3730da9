"""Task runners: where a flow's submitted and mapped task runs execute.

A flow enters its task runner (`with runner:`) for the duration of the run and leaves it when the
run ends, which waits for every task still running. The interface a runner implements (and a
DaskTaskRunner would, on dask.distributed):

    duplicate() -> TaskRunner        a fresh, unstarted runner with the same options (each flow
                                     run, subflows included, enters its own)
    __enter__() / __exit__(...)      start the workers; wait for them and shut them down
    submit(task, parameters, wait_for=None) -> PrefectFuture
                                     run one task call; the future resolves to its final State.
                                     `parameters` maps argument names to values, which may hold
                                     futures; the engine resolves them in the worker.
    map(task, parameters, wait_for=None) -> PrefectFutureList
                                     the base class implements it with submit.

The work itself is `flowrpc.engine.run_task(task, parameters, wait_for, return_type="state")`,
called in the worker with the submitting thread's context (a copy of its contextvars), so the
task run reports to the same server under the same flow run. A runner whose workers live in
other processes must ship the flow-run context there instead (`FlowRunContext` fields).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import inspect
from collections.abc import Iterable
from typing import Any, Self

from flowrpc.futures import PrefectFuture, PrefectFutureList
from flowrpc.utilities.annotations import unmapped


class TaskRunner:
    """Base of the task runners; see the module docstring for the interface."""

    def duplicate(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def submit(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> PrefectFuture:
        raise NotImplementedError

    def map(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> PrefectFutureList:
        """One submit per item of the iterable parameters (zipped; all the same length);
        `unmapped(x)` and non-iterables are passed whole to every call. A future is mapped over
        its result, and every call depends on it."""
        upstream = [value for value in parameters.values() if isinstance(value, PrefectFuture)]
        if upstream:
            parameters = {
                name: value.result() if isinstance(value, PrefectFuture) else value
                for name, value in parameters.items()
            }
            wait_for = [*(wait_for or ()), *upstream]
        return PrefectFutureList(
            self.submit(task, call, wait_for) for call in map_calls(parameters)
        )


def map_calls(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters of each mapped call."""
    mapped: dict[str, list[Any]] = {}
    static: dict[str, Any] = {}
    for name, value in parameters.items():
        if isinstance(value, unmapped):
            static[name] = value.value
        elif isinstance(value, Iterable) and not isinstance(value, str | bytes | dict):
            mapped[name] = list(value)
        else:
            static[name] = value
    if not mapped:
        raise ValueError(
            "map needs at least one iterable argument (unmapped(...) ones do not count)"
        )
    lengths = {name: len(values) for name, values in mapped.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"map's iterable arguments differ in length: {lengths}")
    count = next(iter(lengths.values()))
    return [{**static, **{n: v[i] for n, v in mapped.items()}} for i in range(count)]


class ThreadPoolTaskRunner(TaskRunner):
    """Runs submitted tasks on a pool of threads in this process (the default runner).

    max_workers: threads in the pool (default: Python's, min(32, CPUs + 4)).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers
        self._executor: cf.ThreadPoolExecutor | None = None

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def __enter__(self) -> ThreadPoolTaskRunner:
        self._executor = cf.ThreadPoolExecutor(self.max_workers, thread_name_prefix="flowrpc-task")
        return self

    def __exit__(self, *exc_info: object) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def submit(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> PrefectFuture:
        from flowrpc.engine import run_task  # the engine imports the runners

        if self._executor is None:
            raise RuntimeError("the task runner is not started: submit tasks inside a flow run")
        inner: cf.Future[Any] = cf.Future()
        future = PrefectFuture(inner)
        context = contextvars.copy_context()

        def work() -> Any:
            if inspect.iscoroutinefunction(task.fn):
                coroutine = run_task(task, parameters, wait_for, "state", future._set_task_run_id)
                return asyncio.run(coroutine)
            return run_task(task, parameters, wait_for, "state", future._set_task_run_id)

        def chain(done: cf.Future[Any]) -> None:
            future._task_run_known.set()
            if (error := done.exception()) is not None:
                inner.set_exception(error)
            else:
                inner.set_result(done.result())

        self._executor.submit(context.run, work).add_done_callback(chain)
        return future


__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]
