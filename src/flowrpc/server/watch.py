"""WatchFlowRuns: one hub per server reads each new stretch of the change log once per distinct
filter and hands it to every watcher with that filter; a watcher that falls behind, or resumes
from a cursor, reads the change log itself (storage/changes.py says why it is gap-free).

Writers never wait for watchers: they only wake their own server's hub, by a callback from the
writer after commit. On PostgreSQL the hub then numbers the changes committed since
(storage.changes.sequence), at most every GATHER_MIN, and the numbering sends a NOTIFY that
reaches the hub of every replica through its LISTEN connection. (A NOTIFY from every write would
make every committing writer take turns: PostgreSQL serializes the commits of transactions that
notify.) The hub never waits for a watcher
either: each has a buffer of `watch_buffer` changes; once a watcher is that far behind, the hub
drops it and the watcher reads the changes it missed from the change log at its own pace, then
joins the hub again.

Each change is converted and encoded once per hub stretch, whatever the number of watchers: a
watcher's message is the concatenation of the encoded changes it matches, made once per stretch
and filter and sent as is to every live watcher with that filter that is not catching up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import Message
from sqlalchemy.engine import Connection

from flowrpc.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from flowrpc.server.ids import now_micros
from flowrpc.server.limits import PAGE_BUDGET, split
from flowrpc.server.services import convert as c
from flowrpc.server.storage import changes
from flowrpc.server.storage import flow_runs as runs
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.filters import Filter, compiler_for_dialect
from flowrpc.settings import Settings
from flowrpc.v1 import flow_run_pb2
from flowrpc.v1 import flow_run_service_pb2 as pb

log = logging.getLogger(__name__)

STRETCH = 1000  # positions read at a time, by the hub and by a watcher catching up
SNAPSHOT_PAGE = 200  # runs per snapshot read
POLL_SECONDS = 1.0  # the hub looks for changes this often even without a wake-up
# The hub reads at most once per GATHER_PER_WATCHER seconds times the number of watchers,
# within [GATHER_MIN, GATHER_MAX]: under load each read, and each watcher's message, then carries
# the changes of many commits. A read costs the server a few hundred microseconds whatever it
# holds, and competes with the writer thread for the interpreter (a read after every SQLite
# group commit cut the write rate several times, even for one watcher); a message costs about
# 50-100 us per watcher. So reads are at most 100/s and messages at most 5,000/s, whatever the
# rate of changes and the number of watchers, for 10 ms more latency (20 ms with 100 watchers).
GATHER_PER_WATCHER = 0.0002
GATHER_MIN = 0.01
GATHER_MAX = 0.05
CURSOR_PREFIX = "wc1:"
CHANGES_TAG = b"\x1a"  # WatchFlowRunsResponse.changes: field 3, length-delimited
OVERFLOW, CLOSING = "overflow", "closing"  # what a watcher's queue may hold besides changes
Entry = tuple[int, bytes]  # (position, the change encoded as one WatchChanges.changes item)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith(CURSOR_PREFIX):
            position = int(text.removeprefix(CURSOR_PREFIX))
            if position >= 0:
                return position
    except ValueError:
        pass
    raise InvalidArgument({"since": "is not a cursor WatchFlowRuns gave (a change's or marker's)"})


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _changes_messages(entries: list[Entry]) -> list[bytes]:
    """WatchFlowRunsResponse messages (encoded) holding these changes, each within a page."""
    messages, part, size = [], [], 0
    for _, encoded in entries:
        if part and size + len(encoded) > PAGE_BUDGET:
            messages.append(part)
            part, size = [], 0
        part.append(encoded)
        size += len(encoded)
    if part:
        messages.append(part)
    return [CHANGES_TAG + _varint(sum(map(len, p))) + b"".join(p) for p in messages]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: its tag, its length, its bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _encode(rows: list[Any], cache: dict[int, bytes] | None = None) -> list[Entry]:
    """Each change row (storage.changes.read_changes) as an encoded WatchChanges.changes item
    (a FlowRunChange), put together from the encoded run: building the nested messages copied
    the run twice, a third of the hub's time per change."""
    now, cache = now_micros(), {} if cache is None else cache
    entries = []
    for row in rows:
        encoded = cache.get(row.position)
        if encoded is None:
            run = flow_run_pb2.FlowRun(**c.flow_run_fields(row, now))
            change = (
                _field(1, run.SerializeToString())  # FlowRunChange.flow_run
                + _field(2, run.state.SerializeToString())  # .state
                + _field(3, encode_cursor(row.position).encode())  # .cursor
            )
            encoded = cache[row.position] = _field(1, change)  # WatchChanges.changes
        entries.append((row.position, encoded))
    return entries


class _Stretch:
    """One filter's matching changes in one hub stretch, and (made on first use, then shared by
    every watcher with that filter) the messages that carry them: building each watcher's own
    copy cost as much of the event loop as sending it."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self._messages: list[bytes] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def messages(self) -> list[bytes]:
        if self._messages is None:
            self._messages = _changes_messages(self.entries)
        return self._messages


@dataclass
class _Cursor:
    """Where a stream is: every change up to `position` was sent or did not match."""

    position: int


@dataclass(eq=False)
class _Subscription:
    """A watcher joined to the hub: the changes after `start` come through its queue."""

    key: bytes  # the filter, as grouped
    criteria: Any
    start: int
    limit: int
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    buffered: int = 0  # changes in the queue
    covered: int = 0  # the hub has looked at every change up to here for this watcher
    dropped: bool = False

    def offer(self, upto: int, stretch: _Stretch) -> None:
        """The hub's stretch up to `upto`: these changes match. Never blocks."""
        if self.dropped:
            return
        self.covered = upto
        if not stretch:
            return
        if self.buffered + len(stretch) > self.limit:
            self.dropped = True  # the watcher reads the change log from its cursor instead
            self.queue.put_nowait(OVERFLOW)
            return
        self.buffered += len(stretch)
        self.queue.put_nowait((upto, stretch))


class Watches:
    """The hub of one server, and the WatchFlowRuns streams it serves."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.position = 0  # every change up to here has been offered to the subscribers
        self.watchers = 0  # streams open, catching up or live
        self._subscriptions: set[_Subscription] = set()
        self._lock = asyncio.Lock()  # a stretch's delivery and a subscription's start
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._unnumbered = False  # PostgreSQL: this server committed changes not numbered yet
        self._stop_listening = threading.Event()
        self._listener: threading.Thread | None = None

    # ---- the hub ----

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        wake: Callable[[], None] = lambda: loop.call_soon_threadsafe(self._wake.set)  # noqa: E731
        self.db.on_changes(lambda: loop.call_soon_threadsafe(self._written))
        if self.db.dialect == "postgresql":
            self._listener = threading.Thread(
                target=self._listen, args=(wake,), name="flowrpc-listen", daemon=True
            )
            self._listener.start()
        self._task = asyncio.create_task(self._run())

    def _written(self) -> None:
        """This server committed changes: wake the hub (on PostgreSQL, to number them)."""
        self._unnumbered = True
        self._wake.set()

    async def close(self) -> None:
        """Ends every stream (UNAVAILABLE: reconnect with the cursor) and stops the hub."""
        self._closing = True
        for subscription in self._subscriptions:
            subscription.queue.put_nowait(CLOSING)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=POLL_SECONDS * 2)
        self._stop_listening.set()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 5)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            _still_cancelled()
            gather = GATHER_PER_WATCHER * len(self._subscriptions)
            gather = min(GATHER_MAX, max(GATHER_MIN, gather))
            if (wait := last + gather - loop.time()) > 0:
                await asyncio.sleep(wait)
            last = loop.time()
            self._wake.clear()
            try:
                await self._sequence()
                while await self._deliver_stretch():
                    pass
            except Exception:  # the next wake-up or poll tries again
                log.exception("reading the flow-run change log failed")

    async def _deliver_stretch(self) -> bool:
        """Offers the next stretch of changes to the subscribers; True when more are waiting
        (the stretch was full), so that otherwise the hub gathers commits first."""
        async with self._lock:
            if not self._subscriptions:
                return False
            groups = {s.key: s.criteria for s in self._subscriptions}
            upto, found = await self.db.read(self._read_stretch, self.position, groups)
            if upto <= self.position:
                return False
            stretches = {key: _Stretch(entries) for key, entries in found.items()}
            for subscription in list(self._subscriptions):
                subscription.offer(upto, stretches[subscription.key])
            full = upto - self.position >= STRETCH
            self.position = upto
            return full

    async def _sequence(self) -> None:
        """PostgreSQL: numbers the committed changes (storage.changes.sequence), when this
        server wrote some or has watchers; the numbering's NOTIFY wakes the other replicas."""
        if self.db.dialect == "postgresql" and (self._unnumbered or self._subscriptions):
            self._unnumbered = False
            await self.db.write(changes.sequence)

    @staticmethod
    def _read_stretch(
        conn: Connection, after: int, groups: dict[bytes, Any]
    ) -> tuple[int, dict[bytes, list[Entry]]]:
        """On a reader thread: the stretch's end, and each filter's matching changes."""
        upto = min(changes.head(conn), after + STRETCH)
        if upto <= after:
            return after, {}
        cache: dict[int, bytes] = {}
        found = {
            key: _encode(changes.read_changes(conn, after, upto, criteria), cache)
            for key, criteria in groups.items()
        }
        return upto, found

    async def _subscribe(self, key: bytes, criteria: Any) -> _Subscription:
        async with self._lock:
            if not self._subscriptions:  # the hub was idle: its position may be old
                self.position = await self.db.read(changes.head)
            if self._closing:  # close() has told the subscribers already: not this one
                raise _stopping()
            subscription = _Subscription(
                key, criteria, self.position, self.settings.watch_buffer, covered=self.position
            )
            self._subscriptions.add(subscription)
            self._wake.set()  # PostgreSQL: changes may wait to be numbered
            return subscription

    def _listen(self, wake: Callable[[], None]) -> None:
        """PostgreSQL: wakes the hub on every NOTIFY of this schema's changes, whichever replica
        committed them. Reconnects after a failure (the hub polls meanwhile)."""
        import psycopg

        conninfo = self.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop_listening.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {changes.CHANNEL}")
                    row = conn.execute("SELECT current_schema()").fetchone()
                    schema = row[0] if row else None
                    wake()  # changes made while not listening
                    while not self._stop_listening.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            if notice.payload == schema:
                                wake()
            except psycopg.Error as error:
                log.warning("listening for flow-run changes failed: %s; retrying", error)
                self._stop_listening.wait(1.0)

    # ---- one stream ----

    async def stream(
        self, filters: Filter, since: str, skip_snapshot: bool
    ) -> AsyncIterator[Message | bytes]:
        """The messages of one WatchFlowRuns call (encoded change batches as bytes)."""
        if self._closing:
            raise _stopping()
        if self.watchers >= self.settings.watch_max_watchers:
            raise ResourceExhausted(
                "TOO_MANY_WATCHERS",
                f"This server already serves {self.watchers} watchers, its limit (setting "
                "watch_max_watchers, FLOWRPC_WATCH_MAX_WATCHERS): retry later or on another "
                "replica.",
            )
        self.watchers += 1
        try:
            criteria = None
            if filters:
                compiler = compiler_for_dialect(self.db.dialect)
                criteria = changes.as_of_change(compiler.flow_run_set(filters))
            key = orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)
            if since:
                cursor = decode_cursor(since)
                await self.db.read(_check_cursor, cursor)
            else:
                if self.db.dialect == "postgresql":  # what committed before the watch: numbered
                    await self.db.write(changes.sequence, True)
                cursor = await self.db.read(changes.head)
                if not skip_snapshot:
                    async for message in self._snapshot(filters):
                        yield message
                yield pb.WatchFlowRunsResponse(marker=pb.WatchMarker(cursor=encode_cursor(cursor)))
            at = _Cursor(cursor)
            while True:
                subscription = await self._subscribe(key, criteria)
                try:
                    while at.position < subscription.start:  # from the change log
                        upto = min(subscription.start, at.position + STRETCH)
                        entries = await self.db.read(_read_log, at.position, upto, criteria)
                        for message in _changes_messages(entries):
                            yield message
                        at.position = upto
                    async for message in self._live(subscription, at):
                        yield message
                finally:
                    self._subscriptions.discard(subscription)
        finally:
            self.watchers -= 1

    async def _live(self, subscription: _Subscription, at: _Cursor) -> AsyncIterator[Any]:
        """Messages from the hub, `at` kept at the position they reach, until the hub drops
        the watcher (then it returns)."""
        while True:
            try:
                async with asyncio.timeout(self.settings.watch_progress_seconds):
                    items = [await subscription.queue.get()]
            except TimeoutError:
                _still_cancelled()
                if self._closing:
                    raise _stopping() from None
                if subscription.queue.empty() and subscription.covered > at.position:
                    at.position = subscription.covered
                    progress = pb.WatchProgress(cursor=encode_cursor(at.position))
                    yield pb.WatchFlowRunsResponse(progress=progress)
                continue
            # What else waits goes in the same message: a watcher that fell behind by a few
            # stretches sends one message, not one per stretch.
            while not subscription.queue.empty() and isinstance(items[-1], tuple):
                items.append(subscription.queue.get_nowait())
            for message in _messages(items, subscription, at):
                yield message
            if items[-1] == OVERFLOW:
                return

    async def _snapshot(self, filters: Filter) -> AsyncIterator[Message]:
        """The runs the filter selects, newest first, a page at a time."""
        after = None
        while True:
            rows = await self.db.read(
                runs.list_flow_runs, filters, "ID_DESC", SNAPSHOT_PAGE, 0, after
            )
            now = now_micros()
            page = pb.WatchSnapshot(flow_runs=[c.flow_run_fields(row, now) for row in rows])
            for part in split(page, "flow_runs"):
                yield pb.WatchFlowRunsResponse(snapshot=part)
            if len(rows) < SNAPSHOT_PAGE:
                return
            after = (rows[-1].id, rows[-1].id)


def _messages(items: list[Any], subscription: _Subscription, at: _Cursor) -> list[bytes]:
    """The messages for the hub's stretches in `items` (up to an OVERFLOW or CLOSING), `at`
    moved past them."""
    stretches: list[tuple[int, _Stretch]] = []
    for item in items:
        if item == OVERFLOW:
            break
        if item == CLOSING:
            raise _stopping()
        stretches.append(item)
    after = at.position
    for upto, stretch in stretches:
        subscription.buffered -= len(stretch)
        at.position = max(at.position, upto)
    if len(stretches) == 1 and stretches[0][1].entries[0][0] > after:
        return stretches[0][1].messages  # the usual case: as the hub made them
    # A fresh watch may start after the hub's position: nothing is sent twice.
    fresh = [entry for _, stretch in stretches for entry in stretch.entries if entry[0] > after]
    return _changes_messages(fresh)


def _read_log(conn: Connection, after: int, upto: int, criteria: Any) -> list[Entry]:
    """A watcher's own read of the change log (catching up); OUT_OF_RANGE if pruned meanwhile."""
    entries = _encode(changes.read_changes(conn, after, upto, criteria))
    _check_cursor(conn, after)  # after the read: a prune before it shows here
    return entries


def _check_cursor(conn: Connection, cursor: int) -> None:
    if changes.expired(conn, cursor):
        raise OutOfRange(
            "WATCH_CURSOR_EXPIRED",
            "The changes after this cursor are no longer kept (setting watch_retention_seconds, "
            "FLOWRPC_WATCH_RETENTION_SECONDS): watch again without `since`, from a new snapshot.",
        )
    if cursor > changes.head(conn):
        raise FailedPrecondition(
            "WATCH_CURSOR_UNKNOWN",
            "This cursor is past the last change this database has (a cursor of another "
            "database?): watch again without `since`.",
        )


def _still_cancelled() -> None:
    """Re-raises a cancellation that a timeout expiring at the same moment turned into its own
    TimeoutError or a result (Python 3.11's wait_for and timeout can lose it): a stream or hub
    that went on would keep the server from stopping."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _stopping() -> Unavailable:
    return Unavailable(
        "SERVER_STOPPING", "The server is shutting down: watch again with the last cursor."
    )
