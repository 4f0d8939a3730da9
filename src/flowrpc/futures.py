"""Futures of submitted task runs, `wait` and `as_completed` (Prefect's `prefect.futures`).

A future resolves to the task run's final state; `future.result()` is that state's result.
Passing a future (or a list of them) into another task makes it an upstream dependency: the
downstream task waits for it, receives its result, and the run graph shows the edge.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple
from uuid import UUID

from flowrpc.schemas.objects import State


class PrefectFuture:
    """A task run started by a task runner. The name is Prefect's, so ported code keeps working."""

    def __init__(self, future: cf.Future[State]) -> None:
        self._future = future
        self._task_run_id: UUID | None = None
        self._task_run_known = threading.Event()

    def _set_task_run_id(self, task_run_id: UUID | None) -> None:
        self._task_run_id = task_run_id
        self._task_run_known.set()

    @property
    def task_run_id(self) -> UUID | None:
        """The task run's id (waits until the runner has created the run)."""
        while not self._task_run_known.wait(0.05):
            if self._future.done():  # failed before creating a run
                break
        return self._task_run_id

    @property
    def state(self) -> State | None:
        """The final state once done, else None."""
        if not self._future.done():
            return None
        return self._future.result()

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> None:
        """Waits up to `timeout` seconds for the run to finish."""
        cf.wait([self._future], timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; its exception is raised (or returned with
        raise_on_failure=False). TimeoutError if it does not finish within `timeout`."""
        state = self._future.result(timeout=timeout)
        return state.result(raise_on_failure=raise_on_failure)

    def add_done_callback(self, fn: Callable[[PrefectFuture], Any]) -> None:
        """Calls fn(future) once the run finishes."""
        self._future.add_done_callback(lambda _: fn(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task_run_id={self._task_run_id})"


class PrefectFutureList(list):  # type: ignore[type-arg]
    """The futures of a map: `.wait()`, and `.result()` is the list of their results."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        return [f.result(timeout=timeout, raise_on_failure=raise_on_failure) for f in self]


class DoneAndNotDoneFutures(NamedTuple):
    done: set[PrefectFuture]
    not_done: set[PrefectFuture]


def wait(futures: Iterable[PrefectFuture], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Waits for all futures (up to `timeout` seconds); returns the done and the not done."""
    futures = list(futures)
    by_inner = {f._future: f for f in futures}
    done, not_done = cf.wait(by_inner, timeout=timeout)
    return DoneAndNotDoneFutures({by_inner[f] for f in done}, {by_inner[f] for f in not_done})


def as_completed(
    futures: Iterable[PrefectFuture], timeout: float | None = None
) -> Iterator[PrefectFuture]:
    """Yields each future as it finishes; TimeoutError if some do not within `timeout`."""
    by_inner = {f._future: f for f in futures}
    for inner in cf.as_completed(by_inner, timeout=timeout):
        yield by_inner[inner]


def resolve_futures(value: Any, on_future: Callable[[PrefectFuture], Any], depth: int = 0) -> Any:
    """`value` with every future inside it (in lists, tuples, sets and dict values) replaced by
    on_future(future)."""
    if isinstance(value, PrefectFuture):
        return on_future(value)
    if depth >= 8:  # deeper (or self-containing) collections are passed as they are
        return value
    if isinstance(value, list | tuple | set) and not isinstance(value, str):
        items = [resolve_futures(v, on_future, depth + 1) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
            return type(value)(*items)
        return type(value)(items) if not isinstance(value, PrefectFutureList) else items
    if isinstance(value, dict):
        return {k: resolve_futures(v, on_future, depth + 1) for k, v in value.items()}
    return value


__all__ = [
    "DoneAndNotDoneFutures",
    "PrefectFuture",
    "PrefectFutureList",
    "as_completed",
    "resolve_futures",
    "wait",
]
