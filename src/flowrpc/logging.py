"""Run logging: `get_run_logger()`, print capture for `log_prints=True`, and the shipper that
sends both to the server in batches.

What the engine uses: `run_logging(context)` around each flow or task body (it turns print
capture on when `context.log_prints`, and flushes at the end of a flow run) and `flush_logs()`;
an async flow uses `recording_prints(context)` and flushes in a thread, so its loop goes on.

How records travel: a record logged in a run is put in a bounded in-memory buffer and the caller
goes on; a background thread sends the buffer with `create_logs` every `interval` seconds, as soon
as a batch is full, or when asked to flush (at the end of every flow run and at interpreter
exit). Records stay in order. What happens at the edges:

* A message longer than `max_message_bytes` (UTF-8, default 64 KiB, FLOWRPC_LOGGING_MAX_MESSAGE_
  BYTES) is cut, with a marker saying how long it was: the record is kept, not refused.
* When the buffer is full (`buffer_size` records, default 10,000, FLOWRPC_LOGGING_BUFFER_SIZE,
  or `buffer_bytes` of messages, default 32 MiB, FLOWRPC_LOGGING_BUFFER_BYTES),
  the caller waits for room, up to `full_wait` seconds (default 2): a run that logs faster than
  the server stores goes at the server's pace and loses nothing. If no room comes in that time
  the shipper is taken as stuck (the server unreachable): new records are then dropped without
  waiting until a batch goes through again, each run that lost records gets a WARNING record
  saying how many, and stderr says so once per episode. Memory stays bounded either way.
* An unreachable server: a batch is tried `attempts` times over a few seconds, then dropped with
  a message on stderr. A record the server refuses (its flow run deleted meanwhile, a limit) is
  dropped alone: the batch is split until the refused records are isolated.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from flowrpc.context import FlowRunContext, MissingContextError, RunContext, TaskRunContext
from flowrpc.utilities.processes import process_lock

__all__ = [
    "FLOW_RUN_LOGGER",
    "TASK_RUN_LOGGER",
    "LogShipper",
    "RunLoggerAdapter",
    "flush_logs",
    "get_run_logger",
    "recording_prints",
    "run_logging",
    "set_client_factory",
]

FLOW_RUN_LOGGER = "flowrpc.flow_runs"
TASK_RUN_LOGGER = "flowrpc.task_runs"
SHIPPER_LOGGER = "flowrpc.logging"  # the shipper's own warnings, stored with the run they concern

MAX_NAME_LENGTH = 1_000  # logger names (the server bounds strings at max_string_length)
BATCH_RECORDS = 1_000  # records per call at most (the server's max_list_length is 10,000)
MiB = 1024 * 1024
WARNING_WEIGHT = 300  # more than a dropped-records warning weighs (see _weight)
BATCH_BYTES = MiB  # and about this much text (requests are bounded at 4 MiB)
EXIT_FLUSH_SECONDS = 10.0  # how long interpreter exit waits for records still to send
FLOW_END_FLUSH_SECONDS = 10.0  # and the end of a flow run
RETRY_DELAYS = (0.2, 1.0, 3.0)  # waits between attempts when the server cannot be reached

ClientFactory = Callable[[], Any]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _weight(record: dict[str, Any]) -> int:
    """About what a record weighs in a request (its text, in characters, and the rest)."""
    return len(record["message"]) + len(record["name"]) + 100


def _warn(text: str) -> None:
    """The shipper's own messages: straight to stderr (never through print(), which may be
    recording prints, nor through logging, which may be what failed)."""
    with contextlib.suppress(Exception):
        sys.stderr.write(f"flowrpc: {text}\n")


def truncate(message: str, limit: int) -> str:
    """The message, or when it is over `limit` UTF-8 bytes its head with a marker that says so
    (the whole fits in `limit` bytes)."""
    data = message.encode(errors="replace")
    if len(data) <= limit:
        return message
    marker = f"... [message truncated: {len(data)} bytes, over the {limit} a record may carry]"
    keep = max(0, limit - len(marker.encode()))
    return data[:keep].decode(errors="ignore") + marker


# ---- the shipper ----


class LogShipper:
    """Sends log records to the server in batches from a background thread (see the module's
    docstring). `client_factory()` returns a sync client; the thread enters it once and keeps it
    until `close()`."""

    def __init__(
        self,
        client_factory: ClientFactory,
        *,
        buffer_size: int | None = None,
        buffer_bytes: int | None = None,
        interval: float | None = None,
        max_message_bytes: int | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        full_wait: float = 2.0,
    ) -> None:
        self.client_factory = client_factory
        self.buffer_size = buffer_size or _env_int("FLOWRPC_LOGGING_BUFFER_SIZE", 10_000)
        self.buffer_bytes = buffer_bytes or _env_int("FLOWRPC_LOGGING_BUFFER_BYTES", 32 * MiB)
        self.interval = interval or _env_float("FLOWRPC_LOGGING_INTERVAL_SECONDS", 1.0)
        self.max_message_bytes = max_message_bytes or _env_int(
            "FLOWRPC_LOGGING_MAX_MESSAGE_BYTES", 64 * 1024
        )
        self.retry_delays = retry_delays
        self.full_wait = full_wait
        self._stuck = False  # no room came within full_wait: drop instead of waiting
        self.dropped = 0  # records lost in all (buffer full, refused, unreachable server)
        self._buffer: deque[dict[str, Any]] = deque()
        self._bytes = 0  # what the buffered records weigh (about: see _weight)
        self._lost: Counter[str] = Counter()  # flow run id -> records dropped, not yet reported
        self._condition = threading.Condition()
        self._queued = 0  # records put so far, dropped ones included
        self._settled = 0  # of those, sent or dropped
        self._flushing = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._client: Any = None

    def put(self, record: dict[str, Any]) -> None:
        """Queues one record (a dict of LogCreate's fields). Waits only when the buffer is full
        and the shipper is sending (up to full_wait seconds); drops it when the shipper is
        stuck."""
        # PostgreSQL cannot store NUL: written out, so the record is kept on every database.
        record["message"] = truncate(record["message"].replace("\0", "\\0"), self.max_message_bytes)
        record["name"] = record["name"][:MAX_NAME_LENGTH]
        record["flow_run_id"] = str(record["flow_run_id"])
        if record.get("task_run_id") is not None:
            record["task_run_id"] = str(record["task_run_id"])
        with self._condition:
            if self._closing:
                return
            self._queued += 1
            if self._thread is None:
                self._start()
            if self._full() and not self._stuck:
                self._condition.notify_all()  # the shipper: send now
                room = self._condition.wait_for(
                    lambda: not self._full() or self._closing, self.full_wait
                )
                self._stuck = not room
            if self._full():
                self._drop_one(record["flow_run_id"])
                return
            self._buffer.append(record)
            self._bytes += _weight(record)
            if self._batch_ready():
                self._condition.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every record put before this call is sent (or dropped); False if that
        took longer than `timeout` seconds."""
        with self._condition:
            target = self._queued
            if self._settled >= target:
                return True
            self._flushing = True
            self._condition.notify_all()
            return self._condition.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float | None = EXIT_FLUSH_SECONDS) -> None:
        """Flushes (within `timeout`), then stops the thread and closes its client."""
        self.flush(timeout)
        with self._condition:
            self._closing = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _full(self) -> bool:
        return len(self._buffer) >= self.buffer_size or self._bytes >= self.buffer_bytes

    def _batch_ready(self) -> bool:
        """A batch is waiting, or callers wait for room."""
        return len(self._buffer) >= BATCH_RECORDS or self._bytes >= BATCH_BYTES or self._full()

    # ---- the thread ----

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flowrpc-log-shipper", daemon=True)
        self._thread.start()

    def _drop_one(self, flow_run_id: str) -> None:
        """Called with the lock held."""
        if not self._lost:
            _warn(
                f"the log buffer is full ({self.buffer_size} records) and the server is not "
                "taking them: dropping new records until a batch goes through"
            )
        self._lost[flow_run_id] += 1
        self.dropped += 1
        self._settled += 1

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                sent = self._send(batch) if batch else False
                with self._condition:
                    self._settled += len(batch)
                    self._stuck = self._stuck and not sent
                    self._condition.notify_all()
        finally:
            self._close_client()

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """Waits for a full batch, the interval, a flush or close; takes up to a batch. None when
        closing with nothing left."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._closing or self._flushing or self._batch_ready(), self.interval
            )
            self._report_lost()
            batch, size = [], 0
            while self._buffer and len(batch) < BATCH_RECORDS and size < BATCH_BYTES:
                record = self._buffer.popleft()
                batch.append(record)
                size += _weight(record)
            self._bytes -= size
            if not self._buffer:
                self._flushing = False
            if batch:
                self._condition.notify_all()  # callers waiting for room
            if not batch and self._closing:
                return None
            return batch

    def _report_lost(self) -> None:
        """Called with the lock held: one WARNING record per run that lost records, once the
        buffer has room for them."""
        warnings = len(self._lost)
        if not warnings or len(self._buffer) + warnings > self.buffer_size:
            return
        if self._bytes + WARNING_WEIGHT * warnings > self.buffer_bytes:
            return
        now = datetime.now(UTC)
        for flow_run_id, count in self._lost.items():
            record = {
                "name": SHIPPER_LOGGER,
                "level": logging.WARNING,
                "message": f"{count} log records of this run were dropped: the log buffer "
                f"({self.buffer_size} records, {self.buffer_bytes} bytes) was full",
                "timestamp": now,
                "flow_run_id": flow_run_id,
            }
            self._queued += 1
            self._bytes += _weight(record)
            self._buffer.append(record)
        self._lost.clear()

    def _send(self, batch: list[dict[str, Any]]) -> bool:
        """Sends the batch, trying again while the server cannot be reached; what the server
        refuses is split off and dropped alone. True if the server answered."""
        from flowrpc.client import errors

        for attempt, delay in enumerate((0.0, *self.retry_delays)):
            time.sleep(delay)
            try:
                self._open_client().create_logs(batch)
                return True
            except (errors.ServiceUnavailable, errors.DeadlineExceeded) as error:
                problem: Exception = error
            except (
                errors.ObjectNotFound,
                errors.InvalidRequest,
                errors.ResourceExhausted,
            ) as error:
                self._refused(batch, error)
                return True
            except errors.FlowRPCError as error:  # about every call (a key without the role)
                self._lose(batch, f"the server refused them: {error}")
                return True
            except Exception as error:  # no client could be made (bad settings), or a bug
                problem = error
                self._close_client()
            if attempt == len(self.retry_delays):
                self._lose(batch, f"the server could not be reached: {problem}")
        return False

    def _refused(self, batch: list[dict[str, Any]], error: Any) -> None:
        """Splits a refused batch until the refused records are alone: by flow run first (a run
        deleted meanwhile loses its records at once), then in halves."""
        runs: dict[str, list[dict[str, Any]]] = {}
        for record in batch:
            runs.setdefault(record["flow_run_id"], []).append(record)
        if len(batch) == 1 or (len(runs) == 1 and error.reason == "FLOW_RUN_NOT_FOUND"):
            self._lose(batch, f"the server refused them: {error}")
        elif len(runs) > 1:
            for records in runs.values():
                self._send(records)
        else:
            half = len(batch) // 2
            self._send(batch[:half])
            self._send(batch[half:])

    def _lose(self, batch: list[dict[str, Any]], why: str) -> None:
        self.dropped += len(batch)
        _warn(f"{len(batch)} log records dropped, {why}")

    def _open_client(self) -> Any:
        if self._client is None:
            client = self.client_factory()
            client.__enter__()
            self._client = client
        return self._client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.__exit__(None, None, None)


def _default_client() -> Any:
    from flowrpc.client import get_client

    return get_client(sync_client=True)


_lock = process_lock(globals(), "_lock")  # a new one in a forked child
_client_factory: ClientFactory = _default_client
_shipper: LogShipper | None = None


def shipper() -> LogShipper:
    """The process's shipper, made on first use (and closed, flushing, at interpreter exit)."""
    global _shipper
    if _shipper is None:
        with _lock:
            if _shipper is None:
                _shipper = LogShipper(_client_factory)
                atexit.register(_shipper.close)
    return _shipper


def set_client_factory(factory: ClientFactory) -> None:
    """Makes the shipper send through clients from `factory()` (a sync client, entered once by
    the shipper's thread) from now on; records queued before are sent first."""
    global _client_factory, _shipper
    with _lock:
        old, _shipper, _client_factory = _shipper, None, factory
    if old is not None:
        old.close()
        atexit.unregister(old.close)


def flush_logs(timeout: float | None = None) -> bool:
    """Waits until every run log record made so far is sent; False on timeout."""
    return True if _shipper is None else _shipper.flush(timeout)


# ---- the handler and the run loggers ----


def _run_ids(record: logging.LogRecord) -> tuple[Any, Any]:
    """(flow run id, task run id) of a record: its own, or the current run's."""
    flow_run_id = getattr(record, "flow_run_id", None)
    if flow_run_id is not None:
        return flow_run_id, getattr(record, "task_run_id", None)
    task = TaskRunContext.get()
    if task is not None:
        flow = task.task_run.flow_run_id
        if flow is None and (flow_context := FlowRunContext.get()) is not None:
            flow = flow_context.flow_run.id
        return flow, task.task_run.id
    flow_context = FlowRunContext.get()
    return (flow_context.flow_run.id, None) if flow_context else (None, None)


class APILogHandler(logging.Handler):
    """Sends run log records to the server through the shipper. Records of no flow run (logged
    outside any run, without a flow_run_id extra) have nowhere to go and are skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))  # the traceback is appended

    def emit(self, record: logging.LogRecord) -> None:
        try:
            flow_run_id, task_run_id = _run_ids(record)
            if flow_run_id is None:
                return
            shipper().put(
                {
                    "name": record.name,
                    "level": record.levelno,
                    "message": self.format(record),
                    "timestamp": datetime.fromtimestamp(record.created, UTC),
                    "flow_run_id": flow_run_id,
                    "task_run_id": task_run_id,
                }
            )
        except Exception:
            self.handleError(record)


class RunFormatter(logging.Formatter):
    """Prefect's console lines: `12:00:00.123 | INFO    | Task run 'extract-0' - message`."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "task_run_name", None):
            record.run = f"Task run {record.task_run_name!r}"
        elif getattr(record, "flow_run_name", None):
            record.run = f"Flow run {record.flow_run_name!r}"
        else:
            record.run = record.name
        return super().format(record)


class ConsoleHandler(logging.StreamHandler):
    """A stream handler on whatever sys.stderr is when a record comes (it may be replaced after
    set-up, as pytest's capture does)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


_installed = False


def _install() -> None:
    """Gives the two run loggers their handlers, once: the API handler and a console handler
    (stderr). They do not propagate, so root handlers do not print run records twice."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        console = ConsoleHandler()
        console.setFormatter(
            RunFormatter(
                "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run)s - %(message)s", "%H:%M:%S"
            )
        )
        level = os.environ.get("FLOWRPC_LOGGING_LEVEL", "INFO").upper()
        for name in (FLOW_RUN_LOGGER, TASK_RUN_LOGGER):
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.addHandler(APILogHandler())
            logger.addHandler(console)
            logger.propagate = False
        _installed = True


class RunLoggerAdapter(logging.LoggerAdapter):
    """A logger bound to a run: its ids and names go with every record, merged with any
    `extra` given to one call."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def _run_extra(context: RunContext) -> tuple[str, dict[str, Any]]:
    """(logger name, extra) for a run context."""
    flow_context = FlowRunContext.get()
    flow_extra: dict[str, Any] = {}
    if flow_context is not None:
        flow_extra = {
            "flow_run_id": str(flow_context.flow_run.id),
            "flow_run_name": flow_context.flow_run.name,
            "flow_name": getattr(flow_context.flow, "name", None),
        }
    if isinstance(context, TaskRunContext):
        task_run = context.task_run
        extra = {
            **flow_extra,
            "task_run_id": str(task_run.id),
            "task_run_name": task_run.name,
            "task_name": getattr(context.task, "name", None),
        }
        if task_run.flow_run_id is not None:
            extra["flow_run_id"] = str(task_run.flow_run_id)
        return TASK_RUN_LOGGER, extra
    assert isinstance(context, FlowRunContext)
    return FLOW_RUN_LOGGER, {
        "flow_run_id": str(context.flow_run.id),
        "flow_run_name": context.flow_run.name,
        "flow_name": getattr(context.flow, "name", None),
    }


def get_run_logger(context: RunContext | None = None, **kwargs: Any) -> logging.LoggerAdapter:
    """A logger for the current task run, or else flow run, whose records go to the server and
    the console. Keyword arguments become extra fields of every record. Outside any run it
    raises MissingContextError, as Prefect does."""
    context = context or TaskRunContext.get() or FlowRunContext.get()
    if context is None:
        raise MissingContextError("There is no active flow or task run context.")
    _install()
    name, extra = _run_extra(context)
    return RunLoggerAdapter(logging.getLogger(name), {**extra, **kwargs})


# ---- print capture ----

# The run whose prints are recorded now (set by recording_prints), None where they are not.
_printing_for: ContextVar[RunContext | None] = ContextVar("flowrpc_print_capture", default=None)
_builtin_print = builtins.print


def _print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    """print(), which in a run with log_prints also records what goes to stdout at INFO for
    the run."""
    _builtin_print(*args, sep=sep, end=end, file=file, flush=flush)
    context = _printing_for.get()
    if context is None or (file is not None and file is not sys.stdout):
        return
    token = _printing_for.set(None)  # what recording prints (a logging error) is not recorded
    try:
        logger = get_run_logger(context)
        if logger.isEnabledFor(logging.INFO):
            message = (" " if sep is None else sep).join(map(str, args))
            # To the API handler only: the console already has the line, printed above.
            record = logger.logger.makeRecord(
                logger.logger.name, logging.INFO, "", 0, message, (), None, extra=logger.extra
            )
            for handler in logger.logger.handlers:
                if isinstance(handler, APILogHandler):
                    handler.handle(record)
    finally:
        _printing_for.reset(token)


@contextlib.contextmanager
def recording_prints(context: RunContext) -> Iterator[None]:
    """Prints inside the block are recorded for the run when `context.log_prints` (and not when
    it is False, even inside a flow that records them)."""
    if context.log_prints and builtins.print is not _print:
        builtins.print = _print  # once per process; without a capturing run it only prints
    token = _printing_for.set(context if context.log_prints else None)
    try:
        yield
    finally:
        _printing_for.reset(token)


@contextlib.contextmanager
def run_logging(context: RunContext) -> Iterator[None]:
    """The engine's hook around a flow or task body, inside its run context: prints are recorded
    (see recording_prints), and at the end of a flow run its records are flushed to the server.
    The async driver flushes in a thread instead, so its loop goes on (engine/run.py)."""
    try:
        with recording_prints(context):
            yield
    finally:
        if isinstance(context, FlowRunContext):
            # Bounded: with the server out of reach, the flow does not wait on every retry.
            flush_logs(FLOW_END_FLUSH_SECONDS)
