"""Engines and the two ways into them: `read` and `write`.

Storage functions are plain synchronous functions of a SQLAlchemy Connection; `Database` runs them
off the event loop. SQLite has one writer, so every write goes through a single writer thread that
commits many calls per transaction (group commit), each call in its own SAVEPOINT so one failing
call never undoes another: writers never wait on each other's locks, so "database is locked" cannot
reach a caller. PostgreSQL takes writes from a thread pool, one transaction per call; row locks
(SELECT ... FOR UPDATE) keep concurrent transitions, and several replicas, safe.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from flowrpc.server.storage.migrate import upgrade

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
STATISTICS_CHECK = 1000  # SQLite write calls between checks that planner statistics are fresh
SYNCHRONOUS = ("NORMAL", "FULL")  # SQLite's synchronous levels one may choose
MIGRATION_LOCK = 0x666C6F77  # advisory lock key ("flow") held while migrating


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
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read_now, fn, args)

    def _read_now(self, fn: StorageFn[T], args: tuple[Any, ...]) -> T:
        with self._read_engine.connect() as conn:
            return fn(conn, *args)

    async def write(self, fn: StorageFn[T], *args: Any) -> T:
        """Runs fn(conn, *args) in a transaction that commits before this returns."""
        return await self._writer.submit(fn, args)

    def close(self) -> None:
        self._writer.close()
        self._readers.shutdown(wait=True)
        self._read_engine.dispose()
        self._write_engine.dispose()


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
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=0, **JSON_CODEC)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, issue BEGIN, so SAVEPOINTs work.
        dbapi_conn.isolation_level = None
        for pragma in (
            "journal_mode=WAL",
            # WAL with NORMAL never corrupts and survives a killed process; a power loss may
            # lose the last commits. FULL syncs the WAL on every commit (docs/reliability.md).
            f"synchronous={synchronous}",
            "foreign_keys=ON",
            "busy_timeout=60000",
        ):
            dbapi_conn.execute(f"PRAGMA {pragma}")
        if immediate:
            # A write that fires the history triggers keeps a statement journal: in memory it
            # costs 10 µs a run, in a temporary file 30. (Readers keep temporary files on disk:
            # a large sort should not grow the process.)
            dbapi_conn.execute("PRAGMA temp_store=MEMORY")

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # The writer takes the write lock up front; readers read a snapshot. Straight to the
        # driver: SQLAlchemy's execute path cost more than the BEGIN (every read, every group).
        conn.connection.driver_connection.execute(begin)

    return engine


def _limit_statements(engine: Engine, seconds: float) -> None:
    """No statement runs longer than `seconds`: a stuck query fails instead of holding locks."""

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(seconds * 1000)}")
        dbapi_conn.commit()


class _Writer:
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
            return fn(conn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class _GroupCommitWriter(_Writer):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
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

    def _loop(self) -> None:
        since_check = 0
        with self._engine.connect() as conn:
            while (batch := self._next_batch()) is not None:
                self._commit(conn, batch)
                since_check += len(batch)
                if since_check >= STATISTICS_CHECK:
                    since_check = 0
                    self._refresh_statistics(conn)

    def _refresh_statistics(self, conn: Connection) -> None:
        try:
            with conn.begin():
                refresh_statistics(conn)
        except Exception:  # stale statistics make queries slower, never wrong
            log.exception("refreshing SQLite statistics failed")

    def _next_batch(self) -> list[Any] | None:
        """Blocks for one call, then takes every call already waiting, up to MAX_GROUP."""
        job = self._jobs.get()
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

    def _commit(self, conn: Connection, batch: list[Any]) -> None:
        outcomes = []
        try:
            with conn.begin():
                for fn, args, future, loop in batch:
                    outcomes.append((future, loop, *_in_savepoint(conn, fn, args)))
        except Exception as error:  # the commit itself failed: nothing of the batch was kept
            log.exception("group commit failed")
            outcomes = [(future, loop, None, error) for _, _, future, loop in batch]
        # One wake-up of each event loop per group, not one per call.
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for future, loop, result, error in outcomes:
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle, settled)


def _in_savepoint(conn: Connection, fn: StorageFn[T], args: tuple[Any, ...]) -> tuple[Any, Any]:
    """Runs one call of a group in its own savepoint. The savepoint is issued on the sqlite3
    connection directly: SQLAlchemy names each savepoint anew, so it compiles both statements on
    every call (a fifth of the writer's time). Calls may still nest their own savepoints."""
    driver = conn.connection.driver_connection
    driver.execute("SAVEPOINT flowrpc_call")
    try:
        result = fn(conn, *args)
    except Exception as error:
        driver.execute("ROLLBACK TO flowrpc_call")
        driver.execute("RELEASE flowrpc_call")
        return None, error
    driver.execute("RELEASE flowrpc_call")
    return result, None


def _settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
