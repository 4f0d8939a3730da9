"""Task-run starts and states reported off the task's critical path.

The engine hands over what the server's answer is already known for (engine/task_engine.py):
the start of a run whose id it minted, and states whose decision it made by the server's rules.
One thread sends them in the order they were given, as many a call as have queued up within
10 ms (up to 100): the starts of a batch in one StartTaskRuns call, each carrying the states of
its run that are in the batch (a task that ran and finished within the batch costs the server one
write), then the batch's other states in one SetTaskRunStates call, so each run's start still
comes before its states. A flow waits for everything it handed over before it proposes its own
final state, and the process waits at exit, so nothing is lost at a normal exit; an answer
other than the expected one is logged. When the SDK's client is replaced, its reporter sends
what it holds and its thread ends.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from typing import Any, NamedTuple

from flowrpc.client.errors import ObjectNotFound
from flowrpc.schemas.actions import TaskRunStart
from flowrpc.schemas.objects import State, StateType
from flowrpc.utilities.processes import process_lock

logger = logging.getLogger("flowrpc.engine")
BATCH = 100  # starts or proposals a call (the server's maximum)
LINGER_SECONDS = 0.01  # how long a short batch waits for more states (a flush cuts it short)
MAX_QUEUED = 10_000  # a bounded buffer: past it, tasks wait for the sender (back-pressure)


class StateReporter:
    """Sends task-run starts and (task run id, state) proposals in order on one thread."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pending: deque[_Proposal | _Start] = deque()
        self._unsent = 0  # handed over and not yet answered
        self._flushing = 0  # callers waiting in flush(): send without lingering
        self._closed = False
        self._moved: dict[Any, Any] = {}  # minted id -> the id of the run its key already had
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._send, name="flowrpc-states", daemon=True)
        self._thread.start()

    def report(self, task_run_id: Any, state: State, expected: StateType | None = None) -> None:
        """Queues the proposal, whose decision should be a state of type `expected` (default:
        the proposed type)."""
        self._queue(_Proposal(task_run_id, state, expected or state.type))

    def report_start(self, start: TaskRunStart, decided: State) -> None:
        """Queues the start of a run whose id the caller minted, and which went on as if the
        server had decided `decided` (its Running, or Cached)."""
        self._queue(_Start(start, decided))

    def _queue(self, item: _Proposal | _Start) -> None:
        """Waits while MAX_QUEUED are already queued. Once closed, sends it at once (a task that
        got this reporter just before its client was replaced)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._pending) < MAX_QUEUED or self._closed)
            if not self._closed:
                self._pending.append(item)
                self._unsent += 1
                self._changed.notify_all()
                return
        self._deliver([item])

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
                self._deliver(batch)
            except Exception:  # never let the sender die: flushes would wait forever
                logger.exception("could not report %d task run starts and states", len(batch))
            finally:
                with self._changed:
                    self._unsent -= len(batch)
                    self._changed.notify_all()

    def _deliver(self, batch: list[_Proposal | _Start]) -> None:
        """The batch's starts in one call, each with the states of its run that follow it in
        the batch (in order), then the other states in another."""
        then: dict[Any, list[_Proposal]] = {
            item.start.id: [] for item in batch if isinstance(item, _Start)
        }
        others = []
        for item in batch:
            if isinstance(item, _Proposal):
                then.get(item.task_run_id, others).append(item)
        starts = [item for item in batch if isinstance(item, _Start)]
        if starts:
            self._start(starts, then)
        if others:
            self._propose(others)

    def _start(self, starts: list[_Start], then: dict[Any, list[_Proposal]]) -> None:
        """One StartTaskRuns call; one call each if a flow run was deleted meanwhile. `then`:
        each start's following proposals, by its run id."""
        try:
            results = self.client.start_task_runs(
                [
                    item.start._replace(then=tuple(p.state for p in then[item.start.id]))
                    for item in starts
                ]
            )
        except ObjectNotFound:
            if len(starts) > 1:
                for item in starts:
                    self._start([item], then)
            else:
                logger.warning("task run %s: its flow run was deleted", starts[0].start.id)
            return
        except Exception as error:
            logger.error("could not start %d task runs: %s", len(starts), error)
            return
        for (start, decided), started in zip(starts, results, strict=True):
            if started.task_run_id != start.id:  # a run of this key existed: its states go there
                self._moved[start.id] = started.task_run_id
            state = started.result.state
            if state is None or state.type is not decided.type:
                if decided.is_final() and state is not None and state.is_running():
                    # The process used a cache entry the server no longer has: record that.
                    self._propose([_Proposal(start.id, decided, decided.type)])
                else:
                    _refused(start.id, start.running, started.result)
            _check(then[start.id], started.then)

    def _propose(self, batch: list[_Proposal]) -> None:
        """One SetTaskRunStates call for the batch; one call each if a run in it was deleted
        meanwhile (which fails the whole call, not the others)."""
        proposals = [
            (self._moved.get(item.task_run_id, item.task_run_id), item.state) for item in batch
        ]
        try:
            results = self.client.set_task_run_states(proposals)
        except ObjectNotFound:
            if len(batch) > 1:
                for item in batch:
                    self._propose([item])
            else:
                item = batch[0]
                logger.warning(
                    "task run %s was deleted before its %s state", item.task_run_id, item.state.name
                )
            return
        except Exception as error:
            logger.error("could not report %d task run states: %s", len(batch), error)
            return
        _check(batch, results)


class _Proposal(NamedTuple):
    task_run_id: Any
    state: State
    expected: StateType  # the type of the state the server should decide


class _Start(NamedTuple):
    start: TaskRunStart
    decided: State  # what the process went on with


def _check(proposals: list[_Proposal], results: list[Any]) -> None:
    """Logs each proposal whose decision is not a state of its expected type."""
    for item, result in zip(proposals, results, strict=True):
        if result.state is None or result.state.type is not item.expected:
            _refused(item.task_run_id, item.state, result)


def _refused(task_run_id: Any, state: State, result: Any) -> None:
    logger.warning(
        "task run %s: the server did not accept %s (%s)", task_run_id, state.name, result.status
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
