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
other processes must ship the flow-run context there instead (`FlowRunContext` fields), as
DaskTaskRunner does (flowrpc.dask_runner; the `flowrpc[dask]` extra, imported on first use).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import inspect
import os
import threading
from collections import deque
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

    A submitted call waits in the runner's own queue as one small tuple: a map submits all its
    items at once, and an executor's work item (a Future with its Condition each) would weigh
    several times more. The executor runs at most max_workers drains of that queue.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers
        self._executor: cf.ThreadPoolExecutor | None = None
        # Calls waiting for a thread: (context, task, parameters, wait_for, future).
        self._calls: deque[tuple[Any, ...]] = deque()
        self._draining = 0  # drains started and not ended
        self._most_draining = 0
        self._lock = threading.Lock()

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def __enter__(self) -> ThreadPoolTaskRunner:
        self._most_draining = self.max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._executor = cf.ThreadPoolExecutor(
            self._most_draining, thread_name_prefix="flowrpc-task"
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # the drains end once the queue is empty

    def submit(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> PrefectFuture:
        executor = self._executor
        if executor is None:
            raise RuntimeError("the task runner is not started: submit tasks inside a flow run")
        future = PrefectFuture()
        # The call runs with the submitting thread's context (its flow run, its settings).
        self._calls.append((contextvars.copy_context(), task, parameters, wait_for, future))
        with self._lock:
            if self._draining < self._most_draining:
                self._draining += 1
                executor.submit(self._drain)
        return future

    def _drain(self) -> None:
        while True:
            with self._lock:  # so that submit sees this drain end or the call it queued taken
                if not self._calls:
                    self._draining -= 1
                    return
                context, task, parameters, wait_for, future = self._calls.popleft()
            context.run(_run_call, task, parameters, wait_for, future)


def _run_call(task: Any, parameters: dict[str, Any], wait_for: Any, future: PrefectFuture) -> None:
    """Runs one submitted call and resolves its future (never raises)."""
    from flowrpc.engine import run_task  # the engine imports the runners

    try:
        outcome = run_task(task, parameters, wait_for, "state", future._set_task_run_id)
        if inspect.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
    except BaseException as error:  # as an executor does: the error is the future's
        future._reject(error)
    else:
        future._resolve(outcome)


def __getattr__(name: str) -> Any:
    # DaskTaskRunner lives in flowrpc.dask_runner, imported on first use so that importing
    # flowrpc never imports dask (an optional dependency).
    if name in ("DaskTaskRunner", "PrefectDaskFuture"):
        try:
            from flowrpc import dask_runner
        except ImportError as error:
            raise ImportError(
                f"flowrpc.task_runners.{name} needs dask.distributed ({error}); install it "
                "with: pip install 'flowrpc[dask]'"
            ) from error
        return getattr(dask_runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TaskRunner", "ThreadPoolTaskRunner"]  # DaskTaskRunner: see __getattr__
