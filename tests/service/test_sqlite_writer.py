"""The SQLite writer: calls committed together stay apart (one failing call undoes only itself),
and planner statistics follow the data while the server runs, so a read that filters by state
and sorts by expected start time walks the sort index instead of sorting every match."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from harness import running_server

from flowrpc.server.ids import now_micros
from flowrpc.server.orchestration.records import StateType
from flowrpc.server.orchestration.states import new_state
from flowrpc.server.storage import flow_runs, flows
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import CHECKPOINT_SECONDS, STATISTICS_CHECK, Database
from flowrpc.settings import Settings

READ = {"flow_runs": {"state": {"name": {"any_of": ["Scheduled", "Late"]}}}}


def read_plan(db: Database) -> str:
    engine = sa.create_engine(db.url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        query = (
            flow_runs.READ.where(flow_runs.flow_run_criteria(conn, READ))
            .order_by(*flow_runs.SORTS["EXPECTED_START_TIME_DESC"].order_by())
            .limit(201)
        )
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    engine.dispose()
    return plan


async def test_statistics_are_taken_as_runs_are_written(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'flowrpc.db'}")
    try:
        db.migrate()  # an empty database: nothing to take statistics of
        flow, _ = await db.write(flows.create_flow, {"name": "etl"}, now_micros())
        for i in range(STATISTICS_CHECK):
            now = now_micros()
            kind = StateType.SCHEDULED if i % 5 < 3 else StateType.COMPLETED
            values = {"flow_id": flow.id, "name": f"run-{i}"}
            await db.write(flow_runs.create_flow_run, values, new_state(kind, now), now)
        assert "ix_flow_run_expected_start_time_id" in read_plan(db)
        assert "TEMP B-TREE" not in read_plan(db)  # no sort of the matches
    finally:
        db.close()


def _hold(conn, seconds):
    time.sleep(seconds)  # keeps the writer busy while the next calls queue up behind it


def _failing(conn, name):
    flows.create_flow(conn, {"name": name}, now_micros())
    raise RuntimeError("this call fails after writing")


async def test_a_failing_call_undoes_only_itself(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'flowrpc.db'}")
    try:
        db.migrate()
        held = db.write(_hold, 0.3)
        calls = [
            db.write(flows.create_flow, {"name": "before"}, now_micros()),
            db.write(_failing, "failed"),
            db.write(flows.create_flow, {"name": "after"}, now_micros()),
        ]
        await held
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[1], RuntimeError)
        names = await db.read(lambda conn: set(conn.execute(sa.select(t.flow.c.name)).scalars()))
        assert names == {"before", "after"}
        with pytest.raises(RuntimeError):
            await db.write(_failing, "again")
        assert (await db.write(flows.create_flow, {"name": "later"}, now_micros()))[1]
    finally:
        db.close()


def _flows_in_database_file(tmp_path) -> int:
    """The flows in the database file alone (a copy without its WAL): what a checkpoint has
    copied there, after syncing the WAL."""
    shutil.copy(tmp_path / "flowrpc.db", tmp_path / "file-alone.db")
    with sqlite3.connect(tmp_path / "file-alone.db") as conn:
        return conn.execute("SELECT count(*) FROM flow").fetchone()[0]


async def test_commits_are_checkpointed_within_a_second(tmp_path):
    """With synchronous=NORMAL a power loss can lose what the WAL holds since its last sync, at
    a checkpoint: the writer checkpoints at most CHECKPOINT_SECONDS after a commit, whether
    more writes follow or none (SQLite's own checkpoints wait for 64 MB of WAL)."""
    db = Database(f"sqlite:///{tmp_path / 'flowrpc.db'}")
    try:
        db.migrate()
        await db.write(flows.create_flow, {"name": "first"}, now_micros())
        await asyncio.sleep(CHECKPOINT_SECONDS + 0.5)  # idle: checkpointed while waiting
        assert _flows_in_database_file(tmp_path) == 1
        await db.write(flows.create_flow, {"name": "second"}, now_micros())
        assert _flows_in_database_file(tmp_path) == 1  # not yet
        deadline = time.monotonic() + CHECKPOINT_SECONDS + 0.5
        while time.monotonic() < deadline:  # busy: checkpointed after a later commit
            await db.write(_hold, 0.05)
        assert _flows_in_database_file(tmp_path) == 2
    finally:
        db.close()


def test_a_database_opened_while_another_connection_writes_waits_for_it(tmp_path):
    """Switching a file to WAL needs a lock SQLite does not wait for (it answers "database is
    locked" at once, busy timeout or not): a server starting while another one migrates the
    same new file used to fail. It waits for the lock instead."""
    path = tmp_path / "flowrpc.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE other (value)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO other VALUES (1)")
    threading.Timer(0.3, other.execute, ["COMMIT"]).start()
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
    finally:
        db.close()
        other.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _synchronous(conn) -> int:
    return conn.exec_driver_sql("PRAGMA synchronous").scalar()


@pytest.mark.parametrize(("setting", "level"), [(None, 1), ("NORMAL", 1), ("FULL", 2)])
async def test_the_synchronous_setting_reaches_every_connection(
    tmp_path, monkeypatch, setting, level
):
    """FLOWRPC_SQLITE_SYNCHRONOUS sets the pragma on the writer's and the readers' connections
    (SQLite numbers NORMAL 1 and FULL 2); NORMAL by default."""
    if setting:
        monkeypatch.setenv("FLOWRPC_SQLITE_SYNCHRONOUS", setting)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'flowrpc.db'}", port=0)
    with running_server(settings) as server:
        assert await server.db.write(_synchronous) == level
        readers = await asyncio.gather(*(server.db.read(_synchronous) for _ in range(4)))
        assert set(readers) == {level}


def test_an_unknown_synchronous_level_is_refused(monkeypatch):
    monkeypatch.setenv("FLOWRPC_SQLITE_SYNCHRONOUS", "OFF")  # could corrupt on power loss
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        Settings()
