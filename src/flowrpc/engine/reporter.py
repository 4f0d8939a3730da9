"""Completed states reported off the task's critical path.

A task without a cache key or a persisted result needs nothing from the server's answer to its
Completed state (unless called with return_state=True), so the engine hands that state to this
reporter and returns the value at once (or resolves the future): the next task starts while the
state travels. One
thread sends the states in the order they were given, as many per SetTaskRunStates call as
have queued up within 10 ms (up to 100). A flow waits for every state it handed
over before it proposes its own final state, and the process waits at exit, so no state is lost
at a normal exit; a state the server refuses is logged. When the SDK's client is replaced, its
reporter sends what it holds and its thread ends.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from typing import Any

from flowrpc.client.errors import ObjectNotFound
from flowrpc.schemas.objects import State
from flowrpc.utilities.processes import process_lock

logger = logging.getLogger("flowrpc.engine")
BATCH = 100  # proposals per SetTaskRunStates call (the server's maximum)
LINGER_SECONDS = 0.01  # how long a short batch waits for more states (a flush cuts it short)
MAX_QUEUED = 10_000  # a bounded buffer: past it, tasks wait for the sender (back-pressure)


class StateReporter:
    """Sends (task run id, state) proposals in order on one background thread."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pending: deque[tuple[Any, State]] = deque()
        self._unsent = 0  # handed over and not yet answered
        self._flushing = 0  # callers waiting in flush(): send without lingering
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._send, name="flowrpc-states", daemon=True)
        self._thread.start()

    def report(self, task_run_id: Any, state: State) -> None:
        """Queues the proposal; waits while MAX_QUEUED are already queued. Once closed, sends it
        at once (a task that got this reporter just before its client was replaced)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._pending) < MAX_QUEUED or self._closed)
            if not self._closed:
                self._pending.append((task_run_id, state))
                self._unsent += 1
                self._changed.notify_all()
                return
        self._propose([(task_run_id, state)])

    def flush(self) -> None:
        """Returns once every state handed over so far has been answered."""
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: self._unsent == 0)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Sends every state handed over, then ends the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()

    def _send(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending:
                    return  # closed, and nothing left to send
                # Linger a little for a fuller batch: a sequence of quick tasks then costs the
                # server one call per many states instead of one each.
                self._changed.wait_for(
                    lambda: len(self._pending) >= BATCH or self._flushing > 0 or self._closed,
                    timeout=LINGER_SECONDS,
                )
                count = min(len(self._pending), BATCH)
                batch = [self._pending.popleft() for _ in range(count)]
            try:
                self._propose(batch)
            except Exception:  # never let the sender die: flushes would wait forever
                logger.exception("could not report %d task run states", len(batch))
            finally:
                with self._changed:
                    self._unsent -= len(batch)
                    self._changed.notify_all()

    def _propose(self, batch: list[tuple[Any, State]]) -> None:
        """One SetTaskRunStates call for the batch; one call each if a run in it was deleted
        meanwhile (which fails the whole call, not the others)."""
        try:
            results = self.client.set_task_run_states(batch)
        except ObjectNotFound:
            if len(batch) > 1:
                for item in batch:
                    self._propose([item])
            else:
                logger.warning("task run %s was deleted before its %s state", *_names(batch[0]))
            return
        except Exception as error:
            logger.error("could not report %d task run states: %s", len(batch), error)
            return
        for (task_run_id, state), result in zip(batch, results, strict=True):
            if result.state is None or result.state.type is not state.type:
                logger.warning(
                    "task run %s: the server did not accept %s (%s)",
                    task_run_id,
                    state.name,
                    result.status,
                )


def _names(item: tuple[Any, State]) -> tuple[Any, str | None]:
    return item[0], item[1].name


_lock = process_lock(globals(), "_lock")  # a new one in a forked child
_reporter: StateReporter | None = None
_reporter_pid: int | None = None


def state_reporter(client: Any) -> StateReporter:
    """The process's reporter of `client`'s states (started on first use, again for another
    client or after a fork)."""
    global _reporter, _reporter_pid
    with _lock:
        if _reporter is None or _reporter_pid != os.getpid() or _reporter.client is not client:
            _close_reporter()
            _reporter, _reporter_pid = StateReporter(client), os.getpid()
        return _reporter


def close_state_reporter() -> None:
    """Sends the reported states and ends the reporter's thread (before its client closes)."""
    with _lock:
        _close_reporter()


def _close_reporter() -> None:
    global _reporter
    reporter, _reporter = _reporter, None
    # After a fork the reporter is the parent's: its thread is not in this process.
    if reporter is not None and _reporter_pid == os.getpid():
        reporter.close()


def flush_reported_states() -> None:
    """Waits until every reported state has been answered (a no-op when none were)."""
    reporter = _reporter
    if reporter is not None and _reporter_pid == os.getpid():
        reporter.flush()


atexit.register(flush_reported_states)
