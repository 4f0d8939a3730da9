"""The calls a workflow engine makes to save round trips: StartFlowRun and StartTaskRun (a run
created, or found by its key, and proposed Running in one call), StartTaskRuns (many starts in
one call) and SetTaskRunStates (many task-run proposals in one call), decided by the same rules
as SetFlowRunState and SetTaskRunState; and task runs created under ids their client minted."""

from __future__ import annotations

import grpc
import pytest
import uuid_utils
from helpers import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    SCHEDULED,
    error_info,
    field_violations,
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


# ---- client-minted task run ids ----

MISSING = "01a232e4-58d5-7727-99cf-476e78726187"


def minted() -> str:
    return str(uuid_utils.uuid7())


async def get_task(stubs, task_run_id):
    return (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task_run_id))).task_run


async def test_a_run_is_created_with_the_id_its_client_minted(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    task_id = minted()
    response = await start(stubs, run.id, id=task_id)
    assert response.created is True and response.task_run.id == task_id
    assert response.result.state.state_details.task_run_id == task_id
    stored = await get_task(stubs, task_id)
    assert (stored.id, stored.state_type, stored.task_key) == (task_id, RUNNING, "k")
    create = tr.CreateTaskRunRequest(flow_run_id=run.id, task_key="c", id=(other := minted()))
    created = await stubs.task_runs.CreateTaskRun(create)
    assert created.created is True and created.task_run.id == other


@pytest.mark.parametrize("again", ["same id", "another id"])
async def test_the_same_key_again_returns_its_run_whatever_the_id(stubs, again):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    task_id = minted()
    await start(stubs, run.id, id=task_id)
    second_id = task_id if again == "same id" else minted()
    response = await start(stubs, run.id, id=second_id)
    assert response.created is False and response.task_run.id == task_id
    create = tr.CreateTaskRunRequest(flow_run_id=run.id, task_key="k", dynamic_key="0")
    create.id = second_id
    created = await stubs.task_runs.CreateTaskRun(create)
    assert created.created is False and created.task_run.id == task_id
    if second_id != task_id:  # nothing was created under the other id
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await get_task(stubs, second_id)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_id_of_another_keys_run_already_exists(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    task_id = minted()
    await start(stubs, run.id, key="first", id=task_id)
    calls = {
        "StartTaskRun": lambda: start(stubs, run.id, key="second", id=task_id),
        "CreateTaskRun": lambda: stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=run.id, task_key="second", id=task_id)
        ),
        # A run without a flow run has no key: its id alone must be free.
        "CreateTaskRun without a flow run": lambda: stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(task_key="second", id=task_id)
        ),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call()
        assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS, name
        assert error_info(raised.value).reason == "TASK_RUN_ALREADY_EXISTS"
        assert task_id in raised.value.details()
    assert (await get_task(stubs, task_id)).task_key == "first"


async def test_a_minted_id_that_is_no_uuid_is_invalid(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    create = tr.CreateTaskRunRequest(flow_run_id=run.id, task_key="k", id="run-1")
    start_one = tr.StartTaskRunRequest(task_run=create, state=state(RUNNING))
    calls = {
        "id": lambda: stubs.task_runs.CreateTaskRun(create),
        "task_run.id": lambda: stubs.task_runs.StartTaskRun(start_one),
        "starts[1].task_run.id": lambda: stubs.task_runs.StartTaskRuns(
            tr.StartTaskRunsRequest(starts=[start_request(run.id, "ok", minted()), start_one])
        ),
    }
    for field, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(field_violations(raised.value)) == [field]
        assert "must be a UUID" in field_violations(raised.value)[field]


# ---- StartTaskRuns ----


def start_request(flow_run_id, key, task_run_id="", running=None, dynamic_key="0"):
    create = tr.CreateTaskRunRequest(
        flow_run_id=flow_run_id, task_key=key, dynamic_key=dynamic_key, id=task_run_id
    )
    return tr.StartTaskRunRequest(task_run=create, state=running or state(RUNNING))


async def start_many(stubs, *starts):
    response = await stubs.task_runs.StartTaskRuns(tr.StartTaskRunsRequest(starts=list(starts)))
    return list(response.results)


async def test_start_many_accepts_new_runs_in_order_with_their_ids(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    ids = [minted() for _ in range(5)]
    results = await start_many(stubs, *[start_request(run.id, f"t{i}", ids[i]) for i in range(5)])
    assert [r.task_run_id for r in results] == ids
    assert all(r.created for r in results)
    assert all(r.result.status == orc.SET_STATE_STATUS_ACCEPT for r in results)
    assert [r.result.state.state_details.task_run_id for r in results] == ids
    for result in results:
        stored = await get_task(stubs, result.task_run_id)
        assert stored.state_type == RUNNING and stored.state.id == result.result.state.id
        assert stored.run_count == 1 and stored.start_time.seconds > 0
    # Server-minted ids too, and a key seen earlier in the same call finds that start's run.
    again = await start_many(
        stubs, start_request(run.id, "new"), start_request(run.id, "new", minted())
    )
    assert again[0].created is True and again[1].created is False
    assert again[1].task_run_id == again[0].task_run_id


async def test_start_many_returns_the_cached_state_for_a_cached_key(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    keyed = state(RUNNING)
    keyed.state_details.cache_key = "key-1"
    first = (await start(stubs, run.id, dynamic_key="0", running=keyed)).task_run
    done = state(COMPLETED, message="cached result")
    done.state_details.cache_key = "key-1"
    done.data.struct_value.update({"type": "result", "serializer": "json", "payload": "1"})
    await stubs.task_runs.SetTaskRunState(
        tr.SetTaskRunStateRequest(task_run_id=first.id, state=done)
    )
    results = await start_many(
        stubs,
        start_request(run.id, "other", minted()),
        start_request(run.id, "k", minted(), running=keyed, dynamic_key="1"),
    )
    assert [r.result.status for r in results] == [
        orc.SET_STATE_STATUS_ACCEPT,
        orc.SET_STATE_STATUS_REJECT,
    ]
    cached = results[1].result.state
    assert (cached.type, cached.name) == (COMPLETED, "Cached")
    # The state comes back without data and message; the task run has them.
    assert not cached.HasField("data") and cached.message == ""
    stored = await get_task(stubs, results[1].task_run_id)
    assert stored.state_name == "Cached" and stored.state.HasField("data")


async def test_start_many_in_a_flow_that_is_not_running_aborts(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(PENDING))
    results = await start_many(stubs, start_request(run.id, "a", minted()))
    assert results[0].created is True
    assert results[0].result.status == orc.SET_STATE_STATUS_ABORT
    assert "enclosing flow must be running" in results[0].result.abort.reason
    assert (await get_task(stubs, results[0].task_run_id)).state_type == PENDING


@pytest.mark.parametrize("count", [0, 101])
async def test_start_many_takes_1_to_100_starts(stubs, count):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start_many(stubs, *[start_request(run.id, f"t{i}") for i in range(count)])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(raised.value)) == ["starts"]
    assert "1 to 100 starts" in raised.value.details()


async def test_start_many_names_the_field_of_a_bad_start(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    not_running = start_request(run.id, "b", running=state(COMPLETED))
    bad_flow_run = start_request("flow-run-1", "c")
    for index, bad, field in (
        (1, not_running, "starts[1].state.type"),
        (2, bad_flow_run, "starts[2].task_run.flow_run_id"),
    ):
        starts = [start_request(run.id, f"ok{i}") for i in range(3)]
        starts[index] = bad
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await start_many(stubs, *starts)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(field_violations(raised.value)) == [field]


@pytest.mark.parametrize(
    "failing", ["missing flow run", "id of another key's run", "id of an earlier run"]
)
async def test_start_many_writes_all_or_none(stubs, failing):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    first_id, earlier_id = minted(), minted()
    await start(stubs, run.id, key="earlier", id=earlier_id)
    last = {
        "missing flow run": start_request(MISSING, "b", minted()),
        "id of another key's run": start_request(run.id, "b", first_id),
        # New runs are written together: the conflict is found when they are.
        "id of an earlier run": start_request(run.id, "b", earlier_id),
    }[failing]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await start_many(stubs, start_request(run.id, "a", first_id), last)
    expected = "FLOW_RUN_NOT_FOUND" if failing == "missing flow run" else "TASK_RUN_ALREADY_EXISTS"
    assert error_info(raised.value).reason == expected
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get_task(stubs, first_id)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_started_runs_are_then_finished_in_bulk(stubs):
    """The engine's sequence: tasks started under client-minted ids, reported in one
    StartTaskRuns, then their final states in one SetTaskRunStates."""
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    ids = [minted() for _ in range(3)]
    started = await start_many(stubs, *[start_request(run.id, "t", i, dynamic_key=i) for i in ids])
    assert all(s.result.status == orc.SET_STATE_STATUS_ACCEPT for s in started)
    finished = await set_states(stubs, *[proposal(i, state(COMPLETED)) for i in ids])
    assert [r.status for r in finished] == [orc.SET_STATE_STATUS_ACCEPT] * 3
    for task_run_id in ids:
        assert (await get_task(stubs, task_run_id)).state_type == COMPLETED


# ---- then: a start's following states ----


async def test_start_with_then_decides_each_state_after_running(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    create = tr.CreateTaskRunRequest(flow_run_id=run.id, task_key="k", dynamic_key="0")
    done = state(COMPLETED, message="done")
    response = await stubs.task_runs.StartTaskRun(
        tr.StartTaskRunRequest(task_run=create, state=state(RUNNING), then=[done])
    )
    assert response.result.state.type == RUNNING
    assert [r.status for r in response.then] == [orc.SET_STATE_STATUS_ACCEPT]
    (completed,) = response.then
    # The run carries its final state in full; the `then` results without message or data.
    assert completed.state.type == COMPLETED and not completed.state.HasField("message")
    assert response.task_run.state.message == "done" and response.task_run.run_count == 1
    assert response.task_run.state.id == completed.state.id
    # The states keep their order: Running's timestamp before Completed's.
    started = response.result.state.timestamp.ToMicroseconds()
    assert completed.state.timestamp.ToMicroseconds() > started


async def test_then_states_are_checked_as_proposals(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    unspecified = state_pb2.State()  # no type
    one = start_request(run.id, "k", minted())
    one.then.append(unspecified)
    many = start_request(run.id, "m")
    many.then.extend([state(COMPLETED)] * 101)
    calls = {
        "then[0].type": lambda: stubs.task_runs.StartTaskRun(one),
        "starts[1].then[0].type": lambda: start_many(stubs, start_request(run.id, "o"), one),
        "then": lambda: stubs.task_runs.StartTaskRun(many),
        "starts[0].then": lambda: start_many(stubs, many),
    }
    for field, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert list(field_violations(raised.value)) == [field]
    listed = await stubs.task_runs.ListTaskRuns(tr.ListTaskRunsRequest())
    assert list(listed.task_runs) == []
