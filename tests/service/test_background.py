"""The background services on a running server, with short loops so the tests stay quick."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from harness import running_server

from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_run_service_pb2_grpc, flow_service_pb2_grpc, state_pb2
from flowrpc.v1 import flow_service_pb2 as fl

LOOP, AFTER = 0.2, 1.0
SERVICES_ON = {
    "late_runs_enabled": True,
    "pause_expirations_enabled": True,
    "late_runs_loop_seconds": LOOP,
    "late_runs_after_seconds": AFTER,
    "pause_expirations_loop_seconds": LOOP,
}


@pytest.fixture
async def runs(database):
    settings = database.model_copy(update=SERVICES_ON)
    with running_server(settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            flow = (await flows.CreateFlow(fl.CreateFlowRequest(name="nightly"))).flow
            yield flow_run_service_pb2_grpc.FlowRunServiceStub(channel), flow.id


def at(seconds_from_now: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(int((time.time() + seconds_from_now) * 1e6))  # the server keeps µs
    return stamp


async def wait_for_state_name(stub, run_id: str, name: str, within: float) -> float:
    """Seconds until the run's state is named `name`; fails after `within` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        run = (await stub.GetFlowRun(fr.GetFlowRunRequest(id=run_id))).flow_run
        if run.state.name == name:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"run did not become {name} within {within} s (is {run.state.name})")


async def test_a_scheduled_run_becomes_late_within_loop_plus_threshold(runs):
    stub, flow_id = runs
    scheduled_time = at(0)
    scheduled = state_pb2.State(
        type=state_pb2.STATE_TYPE_SCHEDULED,
        state_details=state_pb2.StateDetails(scheduled_time=scheduled_time),
    )
    future = state_pb2.State(
        type=state_pb2.STATE_TYPE_SCHEDULED,
        state_details=state_pb2.StateDetails(scheduled_time=at(3600)),
    )
    due = await stub.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow_id, state=scheduled))
    later = await stub.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow_id, state=future))

    await wait_for_state_name(stub, due.flow_run.id, "Late", within=AFTER + LOOP + 1.0)

    late = (await stub.GetFlowRun(fr.GetFlowRunRequest(id=due.flow_run.id))).flow_run
    assert late.state.type == state_pb2.STATE_TYPE_SCHEDULED
    assert late.state.state_details.scheduled_time == scheduled_time
    assert late.expected_start_time == due.flow_run.expected_start_time
    assert late.next_scheduled_start_time == scheduled_time
    not_due = (await stub.GetFlowRun(fr.GetFlowRunRequest(id=later.flow_run.id))).flow_run
    assert not_due.state.name == "Scheduled"


async def test_an_expired_pause_fails_the_run(runs):
    stub, flow_id = runs
    running = state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING)
    run = await stub.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow_id, state=running))
    paused = state_pb2.State(
        type=state_pb2.STATE_TYPE_PAUSED,
        state_details=state_pb2.StateDetails(pause_timeout=at(0.3)),
    )
    result = await stub.SetFlowRunState(
        fr.SetFlowRunStateRequest(flow_run_id=run.flow_run.id, state=paused)
    )
    assert result.result.status == 1  # ACCEPT

    await wait_for_state_name(stub, run.flow_run.id, "Failed", within=0.3 + LOOP + 1.0)

    failed = (await stub.GetFlowRun(fr.GetFlowRunRequest(id=run.flow_run.id))).flow_run
    assert failed.state.message == "The flow was paused and never resumed."
    assert failed.HasField("end_time")


# ---- one bad row ----
# A row this version cannot read, made with SQL: invalid JSON text on SQLite, and on PostgreSQL
# (whose JSONB holds only valid JSON) a list where an object belongs.
BAD_JSON = {"sqlite": "'{not json'", "postgresql": "'[1]'"}


@pytest.fixture
async def services_with(database):
    """(stub, flow id, spoil): a server whose services run in batches of 2; spoil(table, column,
    id) makes a row unreadable."""
    settings = database.model_copy(update={**SERVICES_ON, "batch_size": 2})
    engine = sa.create_engine(settings.database_url, poolclass=sa.NullPool)

    def spoil(table: str, column: str, row_id: str) -> None:
        bad = BAD_JSON[engine.dialect.name]
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE {table} SET {column} = {bad} WHERE id = :id"), {"id": row_id}
            )

    with running_server(settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            flow = (await flows.CreateFlow(fl.CreateFlowRequest(name="nightly"))).flow
            yield flow_run_service_pb2_grpc.FlowRunServiceStub(channel), flow.id, spoil
    engine.dispose()


def assert_skipped_once(caplog, service: str, run_id: str) -> None:
    """The service logged the run as skipped once, and no pass failed."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{service}: ")]
    assert [line for line in lines if run_id in line] == [
        next(line for line in lines if line.startswith(f"{service}: run {run_id} skipped: "))
    ]
    assert f"{service}: pass failed" not in lines


async def test_one_unreadable_run_does_not_stop_late_runs(services_with, caplog):
    stub, flow_id, spoil = services_with
    caplog.set_level(logging.INFO, logger="flowrpc")

    def scheduled(seconds_from_now: float, data: float = 0) -> fr.CreateFlowRunRequest:
        when = state_pb2.StateDetails(scheduled_time=at(seconds_from_now))
        state = state_pb2.State(
            type=state_pb2.STATE_TYPE_SCHEDULED,
            state_details=when,
            data=struct_pb2.Value(number_value=data),  # a number: readable since issue 14
        )
        return fr.CreateFlowRunRequest(flow_id=flow_id, state=state)

    # The bad run is due first, so it is in the first batch of every pass.
    bad = (await stub.CreateFlowRun(scheduled(0))).flow_run.id
    spoil("flow_run", "empirical_policy", bad)
    good = [(await stub.CreateFlowRun(scheduled(0.05, n))).flow_run.id for n in (42, 2.5, 0)]

    for run_id in good:
        await wait_for_state_name(stub, run_id, "Late", within=AFTER + LOOP + 2.0)
    await asyncio.sleep(3 * LOOP)  # more passes: the bad run is logged once, not once a pass
    assert_skipped_once(caplog, "late runs", bad)


async def test_one_unreadable_pause_does_not_stop_expirations(services_with, caplog):
    stub, flow_id, spoil = services_with
    caplog.set_level(logging.INFO, logger="flowrpc")
    running = state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING)
    paused = state_pb2.State(
        type=state_pb2.STATE_TYPE_PAUSED,
        state_details=state_pb2.StateDetails(pause_timeout=at(0.5)),
    )
    runs = []
    for _ in range(4):
        run = await stub.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow_id, state=running))
        request = fr.SetFlowRunStateRequest(flow_run_id=run.flow_run.id, state=paused)
        runs.append((await stub.SetFlowRunState(request)).result.state)
    bad_state, bad_run = runs[0].id, runs[0].state_details.flow_run_id
    spoil("flow_run_state", "state_details", bad_state)

    for state in runs[1:]:
        await wait_for_state_name(stub, state.state_details.flow_run_id, "Failed", within=3.0)
    await asyncio.sleep(3 * LOOP)
    assert_skipped_once(caplog, "expired pauses", bad_run)
