"""StartTaskRun: a task run created (or found by its key) and proposed Running in one call,
decided by the same task-run rules as SetTaskRunState."""

from __future__ import annotations

import grpc
import pytest
from helpers import COMPLETED, PENDING, RUNNING, error_info, make_flow, make_run, state

from flowrpc.v1 import orchestration_pb2 as orc
from flowrpc.v1 import state_pb2
from flowrpc.v1 import task_run_service_pb2 as tr


async def start(stubs, flow_run_id, key="k", dynamic_key="0", running=None, **fields):
    create = tr.CreateTaskRunRequest(
        flow_run_id=flow_run_id, task_key=key, dynamic_key=dynamic_key, **fields
    )
    request = tr.StartTaskRunRequest(task_run=create, state=running or state(RUNNING))
    return await stubs.task_runs.StartTaskRun(request)


async def test_start_creates_pending_then_running(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    response = await start(stubs, run.id, name="extract-1")
    assert response.created is True
    assert response.result.status == orc.SET_STATE_STATUS_ACCEPT
    task = response.task_run
    assert (task.name, task.state_type, task.run_count) == ("extract-1", RUNNING, 1)
    assert task.state.id == response.result.state.id
    assert task.start_time.seconds > 0

    again = await start(stubs, run.id, name="ignored")
    assert again.created is False and again.task_run.id == task.id
    # The run is already Running: the rules decide about the repeated proposal as usual.
    assert again.task_run.run_count >= 1


async def test_start_returns_the_cached_state_for_a_cached_key(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    keyed = state(RUNNING)
    keyed.state_details.cache_key = "key-1"
    first = await start(stubs, run.id, dynamic_key="0", running=keyed)
    done = state(COMPLETED)
    done.state_details.cache_key = "key-1"
    done.data.struct_value.update({"type": "result", "serializer": "json", "payload": "1"})
    await stubs.task_runs.SetTaskRunState(
        tr.SetTaskRunStateRequest(task_run_id=first.task_run.id, state=done)
    )
    second = await start(stubs, run.id, dynamic_key="1", running=keyed)
    assert second.created is True
    assert second.result.status == orc.SET_STATE_STATUS_REJECT
    assert second.result.state.name == "Cached"
    assert second.task_run.state_type == COMPLETED and second.task_run.state_name == "Cached"


async def test_start_in_a_flow_that_is_not_running_aborts(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(PENDING))
    response = await start(stubs, run.id)
    assert response.result.status == orc.SET_STATE_STATUS_ABORT
    assert "enclosing flow must be running" in response.result.abort.reason
    assert response.task_run.state_type == PENDING  # created, not started


async def test_start_proposes_only_running(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start(stubs, run.id, running=state_pb2.State(type=COMPLETED))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(raised.value).reason == "INVALID_ARGUMENT"
    assert "state.type" in raised.value.details()


async def test_start_in_a_missing_flow_run_is_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start(stubs, "01a232e4-58d5-7727-99cf-476e78726187")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
