"""Futures of submitted task runs, `wait` and `as_completed` (Prefect's `prefect.futures`).

A future resolves to the task run's final state; `future.result()` is that state's result.
Passing a future (or a list of them) into another task makes it an upstream dependency: the
downstream task waits for it, receives its result, and the run graph shows the edge.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from flowrpc.schemas.objects import State, StateDetails, StateType

logger = logging.getLogger("flowrpc.futures")

# One lock for every future's hand-over (its id, its outcome, its callbacks): the sections are a
# few assignments long, and a future then needs no lock of its own. A thread that waits on a
# pending future makes it a Condition on this lock, which the future drops once done.
_lock = threading.Lock()
_PENDING: Any = object()


class _CompletedInMemory(NamedTuple):
    """A Completed state that only this process made and holds its value (the usual final state
    of a task reported in the background), kept as the few fields it has: a State with its
    details weighs about 2 KB, which a map over 100,000 items would keep 100,000 times."""

    value: Any
    timestamp: datetime
    task_run_id: UUID | None
    flow_run_id: UUID | None

    def state(self) -> State:
        details = StateDetails(task_run_id=self.task_run_id, flow_run_id=self.flow_run_id)
        state = State(type=StateType.COMPLETED, timestamp=self.timestamp, state_details=details)
        state._has_value, state._value = True, self.value
        return state


_MADE_HERE = frozenset({"type", "name"})  # the fields of State set by Completed()
_ID_DETAILS = frozenset({"task_run_id", "flow_run_id"})


def _compact(state: State) -> State | _CompletedInMemory:
    """The state, or when it can be built again from a few fields, those fields. Only a state
    made in this process qualifies (one the server returned has its id and timestamp set); its
    id, a local default the server never saw, is not kept."""
    details = state.state_details
    if (
        type(state) is State
        and state.model_fields_set <= _MADE_HERE
        and state.type is StateType.COMPLETED
        and state._has_value
        and state._exception is None
        and state.data is None
        and state.message is None
        and state.name == "Completed"
        and type(details) is StateDetails
        and details.model_fields_set <= _ID_DETAILS
    ):
        return _CompletedInMemory(
            state._value, state.timestamp, details.task_run_id, details.flow_run_id
        )
    return state


class PrefectFuture:
    """A task run started by a task runner. The name is Prefect's, so ported code keeps working.

    Small by design (a map may hold 100,000 of them): a few slots, no lock of its own, and once
    done only its final state (see _CompletedInMemory) or the runner's error."""

    __slots__ = ("__weakref__", "_callbacks", "_changed", "_outcome", "_task_run_id")

    def __init__(self) -> None:
        self._outcome: Any = _PENDING  # a State, a _CompletedInMemory or a BaseException
        self._task_run_id: UUID | None = None
        self._changed: threading.Condition | None = None  # made by the first waiter
        self._callbacks: list[Callable[[PrefectFuture], Any]] | None = None

    # ---- what the task runner calls ----

    def _set_task_run_id(self, task_run_id: UUID | None) -> None:
        with _lock:
            self._task_run_id = task_run_id
            if self._changed is not None:
                self._changed.notify_all()

    def _resolve(self, state: State) -> None:
        """Resolves the future with the run's final state."""
        self._finish(_compact(state))

    def _reject(self, error: BaseException) -> None:
        """Resolves the future with an error: the runner could not produce a final state."""
        self._finish(error)

    def _finish(self, outcome: Any) -> None:
        with _lock:
            if self._outcome is not _PENDING:
                raise RuntimeError(f"{self!r} is already done")
            self._outcome = outcome
            changed, self._changed = self._changed, None
            callbacks, self._callbacks = self._callbacks, None
            if changed is not None:
                changed.notify_all()
        for callback in callbacks or ():
            self._call(callback)

    def _call(self, callback: Callable[[PrefectFuture], Any]) -> None:
        try:
            callback(self)
        except Exception:
            logger.exception("a done callback of %r raised", self)

    def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        with _lock:
            if ready():
                return True
            if self._changed is None:
                self._changed = threading.Condition(_lock)
            return self._changed.wait_for(ready, timeout)

    def _final_state(self, timeout: float | None = None) -> State:
        """The final state, waiting for it; raises the runner's error, or TimeoutError."""
        if not self._wait_until(self.done, timeout):
            raise TimeoutError(f"{self!r} did not finish within {timeout} s")
        outcome = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, _CompletedInMemory):
            state = outcome.state()
            with _lock:  # the first caller's state stays: future.state is future.state
                if self._outcome is outcome:
                    self._outcome = state
                return self._outcome
        return outcome

    # ---- public ----

    @property
    def task_run_id(self) -> UUID | None:
        """The task run's id (waits until the runner has created the run)."""
        self._wait_until(lambda: self._task_run_id is not None or self.done(), None)
        return self._task_run_id

    @property
    def state(self) -> State | None:
        """The final state once done, else None."""
        if not self.done():
            return None
        return self._final_state()

    def done(self) -> bool:
        return self._outcome is not _PENDING

    def wait(self, timeout: float | None = None) -> None:
        """Waits up to `timeout` seconds for the run to finish."""
        self._wait_until(self.done, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; its exception is raised (or returned with
        raise_on_failure=False). TimeoutError if it does not finish within `timeout`."""
        if not self._wait_until(self.done, timeout):
            raise TimeoutError(f"{self!r} did not finish within {timeout} s")
        outcome = self._outcome
        if isinstance(outcome, _CompletedInMemory):
            return outcome.value
        return self._final_state().result(raise_on_failure=raise_on_failure)

    def add_done_callback(self, fn: Callable[[PrefectFuture], Any]) -> None:
        """Calls fn(future) once the run finishes (at once, in this thread, if it has)."""
        with _lock:
            if not self.done():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        self._call(fn)

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
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in futures:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not future._wait_until(future.done, remaining):
            break
    done = {f for f in futures if f.done()}
    return DoneAndNotDoneFutures(done, {f for f in futures if f not in done})


def as_completed(
    futures: Iterable[PrefectFuture], timeout: float | None = None
) -> Iterator[PrefectFuture]:
    """Yields each future as it finishes; TimeoutError if some do not within `timeout`."""
    futures = list(dict.fromkeys(futures))
    finished: queue.SimpleQueue[PrefectFuture] = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    for yielded in range(len(futures)):
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            yield finished.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError(
                f"{len(futures) - yielded} (of {len(futures)}) futures unfinished"
            ) from None


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
