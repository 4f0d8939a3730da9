"""Engines and the two ways into them: `read` and `write`.

Storage functions are plain synchronous functions of a SQLAlchemy Connection; `Database` runs them
off the event loop. SQLite has one writer, so every write goes through a single writer thread that
commits many calls per transaction (group commit), each call in its own SAVEPOINT so one failing
call never undoes another: writers never wait on each other's locks, so "database is locked" cannot
reach a caller. Other processes may write the same file (several servers, or scripts each
embedding one): the writer then waits for SQLite's write lock as long as it takes, never failing a
call with "database is locked". PostgreSQL takes writes from a thread pool, one transaction per
call; row locks (SELECT ... FOR UPDATE) keep concurrent transitions, and several replicas, safe.

Every statement has a time budget (`statement_timeout`): PostgreSQL's own statement_timeout, and on
SQLite a read call is interrupted once it has run that long. A read whose caller went away (deadline
or cancel) is interrupted too, so no reader thread keeps working for nobody. Writes are not
interrupted on SQLite: a group commits many callers' work at once, and no write selects by a
caller's filter (bulk calls select their runs with reads, then write them by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from flowrpc.server.errors import InvalidArgument, ResourceExhausted
from flowrpc.server.ids import now_micros
from flowrpc.server.storage import changes
from flowrpc.server.storage.migrate import upgrade
from flowrpc.server.storage.tables import SQLITE_JSON_CODEC

log = logging.getLogger(__name__)
T = TypeVar("T")
StorageFn = Callable[..., T]

# JSON columns through orjson: a page of 200 runs decodes 1,800 JSON values, and json.loads
# spent most of the query's time on them.
JSON_CODEC = {
    "json_serializer": lambda value: orjson.dumps(value).decode(),
    "json_deserializer": orjson.loads,
}
MAX_GROUP = 256  # calls committed together at most
WRITER_CACHE_KB = 16 * 1024  # the writer's page cache (SQLite's default is 2 MB)
CHECKPOINT_PAGES = 16_384  # WAL pages (of 4 KB) that start a checkpoint: 64 MB
# The longest a commit waits for a checkpoint, which syncs the WAL: with synchronous=NORMAL a
# power loss can lose what was committed since the last one (docs/reliability.md).
CHECKPOINT_SECONDS = 1.0
# How long SQLite waits for a lock before answering "database is locked". The writer then asks
# again (logging that it waits); other statements fail past it.
BUSY_TIMEOUT_MS = 60_000
STATISTICS_CHECK = 1000  # SQLite write calls between checks that planner statistics are fresh
SYNCHRONOUS = ("NORMAL", "FULL")  # SQLite's synchronous levels one may choose
MIGRATION_LOCK = 0x666C6F77  # advisory lock key ("flow") held while migrating
REINTERRUPT = 0.05  # seconds between interrupts of a stopped read still running (see _Call)
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement timeout or cancel request
UNTRANSLATABLE_CHARACTER = "22P05"  # \u0000 in a JSON value


class Database:
    def __init__(
        self,
        url: str,
        *,
        readers: int = 2,
        pool_size: int = 8,
        statement_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        # Two reader threads: their Python half (rows, JSON) holds the GIL, so more readers
        # only contend with the event loop. At 16 reads in flight, 4 readers gave 87-119 reads/s
        # of 200 runs and 1,832-2,081 counts/s; 2 gave 109-125 and 2,183-2,253 (alternate runs).
        self.url = sa.make_url(url)
        self.dialect = self.url.get_backend_name()
        self.statement_timeout = statement_timeout
        if self.dialect == "sqlite":
            self._read_engine = _sqlite_engine(
                self.url, immediate=False, pool_size=readers, synchronous=synchronous
            )
            # One connection for the writer thread, one for set-up (migrations, statistics).
            self._write_engine = _sqlite_engine(
                self.url, immediate=True, pool_size=2, synchronous=synchronous
            )
            self._writer: _Writer = _GroupCommitWriter(self._write_engine)
        else:
            # A bounded pool; pre-ping replaces connections the database dropped (a restart).
            engine = sa.create_engine(
                self.url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True, **JSON_CODEC
            )
            _limit_statements(engine, statement_timeout)
            self._read_engine = self._write_engine = engine
            self._writer = _PoolWriter(engine, pool_size)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="flowrpc-read")

    def migrate(self) -> None:
        """Upgrades the schema to the newest migration. On PostgreSQL an advisory lock makes
        replicas that start together take turns; on SQLite stale statistics are refreshed."""
        with self._write_engine.begin() as conn:
            if self.dialect == "postgresql":
                lock = sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))")
                conn.execute(lock, {"key": MIGRATION_LOCK})
            upgrade(conn)
            if self.dialect == "sqlite":
                refresh_statistics(conn)

    async def read(self, fn: StorageFn[T], *args: Any) -> T:
        """Runs fn(conn, *args) on a reader thread, within the statement time budget; cancelling
        the awaiting task (the call's deadline passed, or its client cancelled) interrupts it."""
        loop = asyncio.get_running_loop()
        call = _Call()
        if self.dialect == "sqlite":  # PostgreSQL keeps its statement_timeout itself
            call.timer = loop.call_later(self.statement_timeout, self._watch, call, loop)
        try:
            return await loop.run_in_executor(self._readers, self._read_now, call, fn, args)
        except asyncio.CancelledError:
            call.stopped = call.stopped or "cancelled"
            self._watch(call, loop)
            raise
        except sa.exc.DBAPIError as error:
            _translate(error, self.statement_timeout, stopped=call.stopped is not None)
            raise
        finally:
            if call.timer and call.stopped != "cancelled":
                call.timer.cancel()

    def _read_now(self, call: _Call, fn: StorageFn[T], args: tuple[Any, ...]) -> T | None:
        with self._read_engine.connect() as conn:
            if not call.bind(conn.connection.driver_connection):
                return None  # stopped before it started; nobody waits for the result
            try:
                return fn(conn, *args)
            finally:
                call.unbind()
                if call.stopped and self.dialect == "postgresql":
                    # A cancel request may reach the server after this statement has ended and
                    # cancel the next caller's: the connection is closed, not pooled again.
                    conn.invalidate()

    def _watch(self, call: _Call, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop: stops a read that has run past the budget (counted from its start,
        not from when it was queued), and interrupts a stopped read again until it ends."""
        if call.stopped is None:
            if call.started is None:  # still queued
                due = self.statement_timeout
            else:
                due = call.started + self.statement_timeout - time.monotonic()
            if due > 0:
                call.timer = loop.call_later(due, self._watch, call, loop)
                return
            call.stopped = "budget"
        if not call.running:
            return
        if self.dialect == "sqlite":
            call.interrupt(_interrupt_sqlite)
        else:  # a cancel request is a round trip to the server: not on the event loop
            loop.run_in_executor(None, call.interrupt, _cancel_postgres)
        call.timer = loop.call_later(REINTERRUPT, self._watch, call, loop)

    @property
    def writes_in_order(self) -> bool:
        """Whether writes commit in the order they were submitted: SQLite's one writer thread
        takes them in turn, PostgreSQL's pool runs them side by side."""
        return self.dialect == "sqlite"

    async def write(self, fn: StorageFn[T], *args: Any) -> T:
        """Runs fn(conn, *args) in a transaction that commits before this returns."""
        try:
            return await self._writer.submit(fn, args)
        except sa.exc.DBAPIError as error:
            _translate(error, self.statement_timeout)
            raise

    def on_changes(self, callback: Callable[[], None]) -> None:
        """callback() is called (on a writer thread) after each commit that wrote flow-run
        changes (storage/changes.py): WatchFlowRuns' in-process wake-up."""
        self._writer.on_changes = callback

    def watch_writes(self, group_size: Callable[[int], None]) -> Callable[[], int]:
        """SQLite only: group_size(n) is called (on the writer thread) with each group's number
        of calls; returns a function that tells how many writes wait for the writer."""
        if not isinstance(self._writer, _GroupCommitWriter):
            raise TypeError("only SQLite has a single writer")
        self._writer.on_group = group_size
        return self._writer.queue_depth

    def close(self) -> None:
        self._writer.close()
        self._readers.shutdown(wait=True)
        self._read_engine.dispose()
        self._write_engine.dispose()


class _Call:
    """One read's hold on its database connection, so the event loop can interrupt it. The lock
    makes sure an interrupt reaches this call's statements, never those of the next call that
    takes the connection from the pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._driver: Any = None
        self.started: float | None = None
        self.stopped: str | None = None  # why: "budget" or "cancelled"
        self.timer: asyncio.TimerHandle | None = None

    def bind(self, driver: Any) -> bool:
        """Called by the reader thread before it runs the call; False if already stopped."""
        with self._lock:
            if self.stopped:
                return False
            self._driver, self.started = driver, time.monotonic()
            return True

    def unbind(self) -> None:
        with self._lock:
            self._driver = None

    @property
    def running(self) -> bool:
        return self._driver is not None

    def interrupt(self, how: Callable[[Any], None]) -> None:
        """Interrupts the running statement, if the call still runs. (SQLite forgets an
        interrupt that comes between two statements: the caller repeats it while running.)"""
        with self._lock:
            if self._driver is not None:
                how(self._driver)


def _interrupt_sqlite(driver: Any) -> None:
    driver.interrupt()  # thread-safe; the statement stops at its next row


def _cancel_postgres(driver: Any) -> None:
    driver.cancel()


def _timed_out(error: sa.exc.DBAPIError) -> bool:
    """Whether PostgreSQL cancelled the statement (its statement_timeout, as we cancel only
    reads whose caller is gone)."""
    return getattr(error.orig, "sqlstate", None) == QUERY_CANCELED


def _translate(error: sa.exc.DBAPIError, budget: float, stopped: bool = False) -> None:
    """Raises the caller's error that a database error stands for, if any."""
    if stopped or _timed_out(error):
        raise over_budget(budget) from error
    _refuse_nul(error)


def _refuse_nul(error: sa.exc.DBAPIError) -> None:
    """PostgreSQL holds no NUL character in text or JSON: psycopg refuses to send one in a text
    parameter, the server one in JSON (untranslatable character). Either is the caller's value."""
    orig = error.orig
    sent = "NUL (0x00)" in str(orig)
    stored = getattr(orig, "sqlstate", None) == UNTRANSLATABLE_CHARACTER
    if sent or stored:
        raise InvalidArgument(
            {"request": "holds a NUL character (U+0000), which PostgreSQL cannot store or compare"}
        ) from error


def over_budget(seconds: float) -> ResourceExhausted:
    return ResourceExhausted(
        "STATEMENT_TIMEOUT",
        f"The query ran past the statement time budget of {seconds:g} s (setting "
        "statement_timeout_seconds, FLOWRPC_STATEMENT_TIMEOUT_SECONDS): narrow the filter.",
    )


def refresh_statistics(conn: Connection) -> None:
    """Takes SQLite's planner statistics again when the number of runs has doubled or halved
    since they were taken. Without them SQLite may filter first and then sort every match
    instead of walking the sort index (50 ms instead of 3 ms for a page at 5,000 runs, seconds at
    a million). A full ANALYZE reads every index (about 2 s at a million runs), so it runs only as
    the data grows. (Sampled statistics, PRAGMA analysis_limit, mislead the planner about
    state_name.) PostgreSQL's autovacuum keeps its own statistics."""
    runs = conn.exec_driver_sql("SELECT count(*) FROM flow_run").scalar() or 0
    if _stale(conn, runs):
        conn.exec_driver_sql("ANALYZE")
        log.info("refreshed SQLite statistics at %d runs", runs)


def _stale(conn: Connection, runs: int) -> bool:
    """Whether the statistics were taken at under half or over twice `runs` runs."""
    has_stats = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"
    ).scalar()
    stat = (
        has_stats
        and conn.exec_driver_sql(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = 'flow_run' LIMIT 1"
        ).scalar()
    )
    if not stat:
        return runs > 0
    analyzed = int(stat.split()[0])
    return runs > 2 * analyzed + 1000 or runs < analyzed // 2


def _sqlite_engine(url: sa.URL, *, immediate: bool, pool_size: int, synchronous: str) -> Engine:
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous[:20]!r}")
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=0, **SQLITE_JSON_CODEC)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, issue BEGIN, so SAVEPOINTs work.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _use_wal(dbapi_conn)
        for pragma in (
            # WAL with NORMAL never corrupts and survives a killed process; a power loss may
            # lose the last commits. FULL syncs the WAL on every commit (docs/reliability.md).
            f"synchronous={synchronous}",
            "foreign_keys=ON",
        ):
            dbapi_conn.execute(f"PRAGMA {pragma}")
        if immediate:
            # A write that fires the history triggers keeps a statement journal: in memory it
            # costs 10 µs a run, in a temporary file 30. (Readers keep temporary files on disk:
            # a large sort should not grow the process.)
            dbapi_conn.execute("PRAGMA temp_store=MEMORY")
            # A new run touches a random page of several indexes (its name, its times): with
            # the default 2 MB the writer reads them back from the file again and again.
            dbapi_conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KB}")
            # A checkpoint copies every page in the WAL back into the database: after every
            # 4 MB (the default) a page written by each of many transactions is copied as many
            # times. Bulk creates of 100,000 runs spent half their SQLite time checkpointing.
            dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # The writer takes the write lock up front; readers read a snapshot. Straight to the
        # driver: SQLAlchemy's execute path cost more than the BEGIN (every read, every group).
        driver = conn.connection.driver_connection
        if immediate:
            _take_write_lock(driver, url.database)
        else:
            driver.execute("BEGIN")

    return engine


def _use_wal(driver: sqlite3.Connection) -> None:
    """PRAGMA journal_mode=WAL, asked again while another connection holds a lock it needs (a
    server starting on the same file, migrating it): SQLite may answer "database is locked" at
    once instead of waiting, when waiting could deadlock."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            driver.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _take_write_lock(driver: sqlite3.Connection, database: str | None) -> None:
    """BEGIN IMMEDIATE, waiting as long as another process holds the write lock. SQLite's busy
    handler polls for the lock (sleeps of up to 100 ms), so a process whose writer is busy can
    keep it from another for long; past the busy timeout SQLite gives up with "database is
    locked". That error must not reach the callers, whose calls merely wait: ask again."""
    waited = 0.0
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            waited += BUSY_TIMEOUT_MS / 1000
            log.warning(
                "waited %.0f s for the write lock of %s, held by another connection (another "
                "server or script on this file); still waiting",
                waited,
                database,
            )


def _limit_statements(engine: Engine, seconds: float) -> None:
    """No statement runs longer than `seconds`: a stuck query fails instead of holding locks."""

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(seconds * 1000)}")
        dbapi_conn.commit()


class _Writer:
    on_changes: Callable[[], None] | None = None  # after a commit that wrote flow-run changes

    def submit(self, fn: StorageFn[T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _PoolWriter(_Writer):
    def __init__(self, engine: Engine, size: int) -> None:
        self._engine = engine
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="flowrpc-write")

    def submit(self, fn: StorageFn[T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pool, self._run, fn, args)

    def _run(self, fn: StorageFn[T], args: tuple[Any, ...]) -> T:
        with self._engine.begin() as conn:
            changes.forget(conn)  # notes a failed call on this connection left
            result = fn(conn, *args)
            wrote = changes.flush(conn, now_micros())  # last: see storage/changes.py
        if wrote and self.on_changes is not None:
            self.on_changes()
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class _GroupCommitWriter(_Writer):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.on_group: Callable[[int], None] | None = None  # metrics: each group's size
        self.on_changes: Callable[[], None] | None = None
        self._checkpoint_due: float | None = None  # the next checkpoint, while commits wait for one
        self._thread = threading.Thread(target=self._loop, name="flowrpc-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: StorageFn[T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, future, loop))
        return future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def queue_depth(self) -> int:
        return self._jobs.qsize()

    def _loop(self) -> None:
        since_check = 0
        with self._engine.connect() as conn:
            while (batch := self._next_batch(conn)) is not None:
                if self.on_group is not None:
                    self.on_group(len(batch))
                self._commit(conn, batch)
                if self._checkpoint_due is None:
                    self._checkpoint_due = time.monotonic() + CHECKPOINT_SECONDS
                elif time.monotonic() >= self._checkpoint_due:
                    self._checkpoint(conn)
                since_check += len(batch)
                if since_check >= STATISTICS_CHECK:
                    since_check = 0
                    self._refresh_statistics(conn)

    def _checkpoint(self, conn: Connection) -> None:
        """Copies the WAL's commits into the database, syncing the WAL first; PASSIVE: what
        readers still use is left for the next one."""
        self._checkpoint_due = None
        try:
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # the next checkpoint catches up
            log.exception("checkpointing the SQLite WAL failed")

    def _refresh_statistics(self, conn: Connection) -> None:
        try:
            with conn.begin():
                refresh_statistics(conn)
        except Exception:  # stale statistics make queries slower, never wrong
            log.exception("refreshing SQLite statistics failed")

    def _next_batch(self, conn: Connection) -> list[Any] | None:
        """Blocks for one call, then takes every call already waiting, up to MAX_GROUP."""
        job = self._next_job(conn)
        if job is None:
            return None
        batch = [job]
        while len(batch) < MAX_GROUP:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closing: commit what came before the sentinel, then stop
                self._jobs.put(None)
                break
            batch.append(job)
        return batch

    def _next_job(self, conn: Connection) -> Any:
        """Blocks for the next call; a checkpoint that falls due meanwhile is made first."""
        while self._checkpoint_due is not None:
            try:
                return self._jobs.get(timeout=max(0, self._checkpoint_due - time.monotonic()))
            except queue.Empty:
                self._checkpoint(conn)
        return self._jobs.get()

    def _commit(self, conn: Connection, batch: list[Any]) -> None:
        outcomes, wrote = [], False
        try:
            with conn.begin():
                now = now_micros()
                for fn, args, future, loop in batch:
                    result, error, changed = _in_savepoint(conn, fn, args, now)
                    outcomes.append((future, loop, result, error))
                    wrote = wrote or changed
        except Exception as error:  # the commit itself failed: nothing of the batch was kept
            log.exception("group commit failed")
            outcomes = [(future, loop, None, error) for _, _, future, loop in batch]
            wrote = False
        if wrote and self.on_changes is not None:
            self.on_changes()
        # One wake-up of each event loop per group, not one per call.
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for future, loop, result, error in outcomes:
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle, settled)


@contextlib.contextmanager
def savepoint(conn: Connection, name: str = "flowrpc_part") -> Iterator[None]:
    """A savepoint for one part of a call: an exception rolls back that part alone and goes on.
    On SQLite issued on the driver (see _in_savepoint), on PostgreSQL through SQLAlchemy. The
    flow-run changes noted inside are dropped with it."""
    noted = changes.mark(conn)
    try:
        if conn.dialect.name != "sqlite":
            with conn.begin_nested():
                yield
            return
        driver = conn.connection.driver_connection
        driver.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            driver.execute(f"ROLLBACK TO {name}")
            driver.execute(f"RELEASE {name}")
            raise
        driver.execute(f"RELEASE {name}")
    except BaseException:
        changes.rewind(conn, noted)
        raise


def caller_error(error: sa.exc.DBAPIError) -> None:
    """Raises the caller's error a database error stands for (a NUL character), if any."""
    _refuse_nul(error)


def _in_savepoint(
    conn: Connection, fn: StorageFn[T], args: tuple[Any, ...], now: int
) -> tuple[Any, Any, bool]:
    """Runs one call of a group in its own savepoint, its flow-run changes written last;
    returns (result, error, whether it wrote changes). The savepoint is issued on the sqlite3
    connection directly: SQLAlchemy names each savepoint anew, so it compiles both statements on
    every call (a fifth of the writer's time). Calls may still nest their own savepoints."""
    driver = conn.connection.driver_connection
    driver.execute("SAVEPOINT flowrpc_call")
    try:
        result = fn(conn, *args)
        wrote = changes.flush(conn, now)
    except Exception as error:
        changes.forget(conn)
        driver.execute("ROLLBACK TO flowrpc_call")
        driver.execute("RELEASE flowrpc_call")
        return None, error, False
    driver.execute("RELEASE flowrpc_call")
    return result, None, wrote


def _settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
