"""PostgreSQL specifics: statement timeout, reconnecting after connections are dropped, and
task-run creates that wait on a concurrent create of their id or key."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import grpc
import pytest
import sqlalchemy as sa
import uuid_utils
from harness import postgres_schema, running_server
from helpers import RUNNING, error_info, make_flow, make_run, service_stubs, state

from flowrpc.server.errors import ResourceExhausted
from flowrpc.server.ids import now_micros
from flowrpc.server.orchestration.records import StateType
from flowrpc.server.orchestration.states import new_state
from flowrpc.server.storage import task_runs
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.v1 import task_run_service_pb2 as tr

POSTGRES_URL = os.environ.get("FLOWRPC_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="set FLOWRPC_TEST_DATABASE_URL to a PostgreSQL URL"
)


@pytest.fixture
def url():
    with postgres_schema(POSTGRES_URL) as schema_url:
        name = f"flowrpc-test-{uuid.uuid4().hex[:8]}"
        yield sa.make_url(schema_url).update_query_dict({"application_name": name})


def scalar(sql: str):
    return lambda conn: conn.execute(sa.text(sql)).scalar()


async def test_a_statement_past_the_timeout_is_cancelled(url):
    db = Database(url.render_as_string(hide_password=False), statement_timeout=0.2)
    try:
        with pytest.raises(ResourceExhausted, match="statement_timeout_seconds"):
            await db.read(scalar("SELECT pg_sleep(2)"))
        assert await db.read(scalar("SELECT 1")) == 1  # the pool goes on serving
        with pytest.raises(ResourceExhausted, match="statement_timeout_seconds"):
            await db.write(scalar("SELECT pg_sleep(2)"))
        assert await db.write(scalar("SELECT 1")) == 1
    finally:
        db.close()


async def test_connections_dropped_by_the_database_are_replaced(url):
    db = Database(url.render_as_string(hide_password=False), readers=1, pool_size=1)
    try:
        assert await db.read(scalar("SELECT 1")) == 1
        admin = sa.create_engine(POSTGRES_URL, poolclass=sa.NullPool)
        with admin.begin() as conn:  # what a database restart does to open connections
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": url.query["application_name"]},
            ).scalar()
        admin.dispose()
        assert killed >= 1
        assert await db.read(scalar("SELECT 2")) == 2
        assert await db.write(scalar("SELECT 3")) == 3
    finally:
        db.close()


WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = "
    "current_database()"
)


@pytest.mark.parametrize("conflict", ["id", "key"])
async def test_a_create_waiting_on_a_concurrent_one_with_its_id_or_key(url, conflict):
    """Another transaction inserts a run and holds it uncommitted; a StartTaskRun with the same
    client-minted id (another key), or the same key (another id), waits on it at its insert.
    Once the other commits: ALREADY_EXISTS for the id, the other's run for the key; never
    INTERNAL."""
    database_url = url.render_as_string(hide_password=False)
    settings = Settings(database_url=database_url, port=0, late_runs_enabled=False)
    with running_server(settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = service_stubs(channel)
            tasks = stubs.task_runs
            flow = await make_flow(stubs)
            run = await make_run(stubs, flow.id, state=state(RUNNING))
            held_id, own_id = str(uuid_utils.uuid7()), str(uuid_utils.uuid7())
            held = {"flow_run_id": run.id, "task_key": "held", "dynamic_key": "0", "id": held_id}
            engine = sa.create_engine(database_url, poolclass=sa.NullPool)
            try:
                with engine.connect() as conn, conn.begin():
                    now = now_micros()
                    task_runs.create_task_run(conn, held, new_state(StateType.PENDING, now), now)
                    create = tr.CreateTaskRunRequest(
                        flow_run_id=run.id,
                        task_key="other" if conflict == "id" else "held",
                        dynamic_key="0",
                        id=held_id if conflict == "id" else own_id,
                    )
                    request = tr.StartTaskRunRequest(task_run=create, state=state(RUNNING))
                    call = asyncio.ensure_future(tasks.StartTaskRun(request, timeout=30))
                    await _until_waiting_on_a_lock(engine)
                    assert not call.done()
                # committed: the waiting create goes on
                if conflict == "key":
                    response = await call
                    assert response.created is False and response.task_run.id == held_id
                    return
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await call
                assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
                assert error_info(raised.value).reason == "TASK_RUN_ALREADY_EXISTS"
            finally:
                engine.dispose()


async def _until_waiting_on_a_lock(engine: sa.Engine, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(sa.text(WAITING_ON_A_LOCK)).scalar():
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the create never waited on the held run")
