"""The calls a workflow engine makes to save round trips: StartFlowRun and StartTaskRun (a run
created, or found by its key, and proposed Running in one call) and SetTaskRunStates (many
task-run proposals in one call), decided by the same rules as SetFlowRunState and
SetTaskRunState."""

from __future__ import annotations

import grpc
import pytest
from helpers import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    SCHEDULED,
    error_info,
    hours,
    make_flow,
    make_run,
    now,
    scheduled,
    state,
)

from flowrpc.v1 import flow_run_service_pb2 as fr
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


def proposal(task_run_id, proposed):
    return tr.TaskRunStateProposal(task_run_id=task_run_id, state=proposed)


async def set_states(stubs, *proposals):
    request = tr.SetTaskRunStatesRequest(proposals=list(proposals))
    return list((await stubs.task_runs.SetTaskRunStates(request)).results)


async def test_set_states_decides_each_proposal_in_order(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    retried = tr.CreateTaskRunRequest(
        flow_run_id=run.id, task_key="r", dynamic_key="0", empirical_policy={"retries": 1}
    )
    first = (await start(stubs, run.id, dynamic_key="a")).task_run
    second = (
        await stubs.task_runs.StartTaskRun(
            tr.StartTaskRunRequest(task_run=retried, state=state(RUNNING))
        )
    ).task_run
    done = state(COMPLETED, message="all good")
    done.data.struct_value.update({"type": "result", "serializer": "json", "payload": "1"})
    results = await set_states(
        stubs,
        proposal(first.id, done),
        proposal(second.id, state(FAILED, message="boom")),
        proposal(first.id, state(RUNNING)),
    )
    statuses = [r.status for r in results]
    assert statuses == [
        orc.SET_STATE_STATUS_ACCEPT,
        orc.SET_STATE_STATUS_REJECT,  # retries left: AwaitingRetry instead
        orc.SET_STATE_STATUS_REJECT,  # completed with a persisted result
    ]
    assert (results[0].state.type, results[0].state.name) == (COMPLETED, "Completed")
    assert (results[1].state.type, results[1].state.name) == (SCHEDULED, "AwaitingRetry")
    # States come back without data and message; the task run has them.
    assert not results[0].state.HasField("data") and results[0].state.message == ""
    stored = (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=first.id))).task_run
    assert stored.state.message == "all good" and stored.state.HasField("data")


async def test_set_states_with_a_missing_task_run_changes_nothing(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    task = (await start(stubs, run.id)).task_run
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await set_states(
            stubs,
            proposal(task.id, state(COMPLETED)),
            proposal("01a232e4-58d5-7727-99cf-476e78726187", state(COMPLETED)),
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    stored = (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task.id))).task_run
    assert stored.state_type == RUNNING


@pytest.mark.parametrize("count", [0, 101])
async def test_set_states_takes_1_to_100_proposals(stubs, count):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    task = (await start(stubs, run.id)).task_run
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await set_states(stubs, *[proposal(task.id, state(COMPLETED))] * count)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1 to 100 proposals" in raised.value.details()


async def start_flow(stubs, flow_id, running=None, **fields):
    create = fr.CreateFlowRunRequest(flow_id=flow_id, **fields)
    request = fr.StartFlowRunRequest(flow_run=create, state=running or state(RUNNING))
    return await stubs.flow_runs.StartFlowRun(request)


async def test_start_flow_run_creates_pending_then_running(stubs):
    flow = await make_flow(stubs)
    response = await start_flow(stubs, flow.id, name="quick-run", idempotency_key="k1")
    assert response.created is True
    assert response.result.status == orc.SET_STATE_STATUS_ACCEPT
    run = response.flow_run
    assert (run.name, run.state_type, run.run_count) == ("quick-run", RUNNING, 1)
    states = await stubs.flow_runs.ListFlowRunStates(
        fr.ListFlowRunStatesRequest(flow_run_id=run.id)
    )
    assert [s.type for s in states.states] == [PENDING, RUNNING]

    again = await start_flow(stubs, flow.id, idempotency_key="k1")
    assert again.created is False and again.flow_run.id == run.id
    # Running again from Running: the flow rules decide as for SetFlowRunState.
    assert again.result.status in (orc.SET_STATE_STATUS_ACCEPT, orc.SET_STATE_STATUS_REJECT)


async def test_start_flow_run_scheduled_in_the_future_waits(stubs):
    flow = await make_flow(stubs)
    response = await start_flow(stubs, flow.id, state=scheduled(now() + hours(1)))
    assert response.result.status == orc.SET_STATE_STATUS_WAIT
    assert 3500 <= response.result.wait.delay_seconds <= 3600
    assert response.flow_run.state_type == SCHEDULED


async def test_start_flow_run_checks_its_input(stubs):
    flow = await make_flow(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start_flow(stubs, flow.id, running=state(COMPLETED))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "state.type" in raised.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start_flow(stubs, "01a232e4-58d5-7727-99cf-476e78726187")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
