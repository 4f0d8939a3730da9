"""SetFlowRunState (each status is a normal response), ListFlowRunStates, ResumeFlowRun."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import struct_pb2
from helpers import (
    COMPLETED,
    FUTURE,
    PAUSED,
    PENDING,
    RUNNING,
    SCHEDULED,
    T0,
    at,
    close_to_now,
    get_run,
    make_flow,
    make_run,
    now,
    scheduled,
    set_state,
    state,
)

from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import orchestration_pb2 as orc
from flowrpc.v1 import state_pb2

ACCEPT = orc.SET_STATE_STATUS_ACCEPT
REJECT = orc.SET_STATE_STATUS_REJECT
WAIT = orc.SET_STATE_STATUS_WAIT
ABORT = orc.SET_STATE_STATUS_ABORT


async def states_of(stubs, run_id):
    request = fr.ListFlowRunStatesRequest(flow_run_id=run_id)
    return list((await stubs.flow_runs.ListFlowRunStates(request)).states)


async def test_accept_writes_the_state_and_the_bookkeeping(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=scheduled(T0))
    pending = await set_state(stubs, run.id, state(PENDING, name="Submitting"))
    assert pending.status == ACCEPT and pending.WhichOneof("details") == "accept"
    assert pending.state.name == "Submitting"
    # CopyScheduledTime: the scheduled time follows the run into PENDING.
    assert at(pending.state.state_details, "scheduled_time") == T0
    running = await set_state(stubs, run.id, state(RUNNING, message="go"))
    assert running.status == ACCEPT
    assert running.state.message == "go"
    assert running.state.state_details.flow_run_id == run.id
    got = await get_run(stubs, run.id)
    assert got.state.id == running.state.id
    assert got.state_type == RUNNING and got.state_name == "Running"
    assert got.run_count == 1
    assert at(got, "start_time") == at(running.state, "timestamp")
    assert at(got, "expected_start_time") == T0  # set once, by the first state
    assert not got.HasField("next_scheduled_start_time")
    done = await set_state(stubs, run.id, state(COMPLETED))
    assert done.status == ACCEPT
    got = await get_run(stubs, run.id)
    assert at(got, "end_time") == at(done.state, "timestamp")
    run_time = got.total_run_time.ToTimedelta()
    assert run_time == at(done.state, "timestamp") - at(running.state, "timestamp")
    assert got.estimated_run_time.ToTimedelta() == run_time


async def test_proposed_id_and_timestamp_are_replaced_by_the_server(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    proposed = state(RUNNING, id="my-id")
    proposed.timestamp.FromDatetime(T0)
    result = await set_state(stubs, run.id, proposed)
    assert result.status == ACCEPT
    assert result.state.id != "my-id" and len(result.state.id) == 36
    assert close_to_now(at(result.state, "timestamp"))


async def test_state_data_round_trips(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    data = struct_pb2.Value()
    data.struct_value.update({"type": "unpersisted"})
    result = await set_state(stubs, run.id, state(COMPLETED, data=data))
    assert result.status == ACCEPT
    assert dict(result.state.data.struct_value) == {"type": "unpersisted"}
    assert dict((await get_run(stubs, run.id)).state.data.struct_value) == {"type": "unpersisted"}


async def test_running_to_pending_aborts_and_writes_nothing(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    result = await set_state(stubs, run.id, state(PENDING))
    assert result.status == ABORT
    assert result.WhichOneof("details") == "abort"
    assert "RUNNING" in result.abort.reason
    assert result.state.id == run.state.id  # the unchanged current state
    assert len(await states_of(stubs, run.id)) == 1
    assert (await get_run(stubs, run.id)).state_type == RUNNING


async def test_scheduled_in_the_future_to_running_waits(stubs):
    flow = await make_flow(stubs)
    soon = now() + timedelta(seconds=120)
    run = await make_run(stubs, flow.id, state=scheduled(soon))
    result = await set_state(stubs, run.id, state(RUNNING))
    assert result.status == WAIT
    assert result.wait.reason == "Scheduled time is in the future"
    assert 110 <= result.wait.delay_seconds <= 121
    assert result.state.id == run.state.id  # the unchanged current state
    got = await get_run(stubs, run.id)
    assert got.state_type == SCHEDULED and got.run_count == 0
    assert len(await states_of(stubs, run.id)) == 1


async def test_scheduled_far_in_the_future_waits_until_then(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=scheduled(FUTURE))
    result = await set_state(stubs, run.id, state(RUNNING))
    assert result.status == WAIT
    # More seconds than an int32 holds: the delay is clamped to its maximum.
    assert (FUTURE - now()).total_seconds() > 2**31
    assert result.wait.delay_seconds == 2**31 - 1


async def test_scheduled_days_ahead_waits_until_then(stubs):
    flow = await make_flow(stubs)
    when = now() + timedelta(days=3)
    run = await make_run(stubs, flow.id, state=scheduled(when))
    result = await set_state(stubs, run.id, state(RUNNING))
    assert result.status == WAIT
    assert abs(result.wait.delay_seconds - (when - now()).total_seconds()) < 10


async def test_reject_returns_the_current_state(stubs):
    # Pausing a run that is not running is refused without a new state.
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=scheduled(T0))
    result = await set_state(stubs, run.id, state(PAUSED))
    assert result.status == REJECT
    assert result.reject.reason == "Cannot pause flows that are not currently running."
    assert result.state.id == run.state.id and result.state.type == SCHEDULED


async def test_force_accepts_what_orchestration_would_refuse_and_still_keeps_books(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=scheduled(FUTURE))
    refused = await set_state(stubs, run.id, state(RUNNING))
    assert refused.status == WAIT
    forced = await set_state(stubs, run.id, state(RUNNING), force=True)
    assert forced.status == ACCEPT and forced.state.type == RUNNING
    got = await get_run(stubs, run.id)
    assert got.run_count == 1
    assert at(got, "start_time") == at(forced.state, "timestamp")
    assert not got.HasField("next_scheduled_start_time")
    assert at(got, "expected_start_time") == FUTURE
    # RUNNING -> PENDING aborts unless forced.
    assert (await set_state(stubs, run.id, state(PENDING))).status == ABORT
    back = await set_state(stubs, run.id, state(PENDING), force=True)
    assert back.status == ACCEPT
    got = await get_run(stubs, run.id)
    assert got.state_type == PENDING
    assert got.total_run_time.ToTimedelta() == at(back.state, "timestamp") - at(
        forced.state, "timestamp"
    )


async def test_list_states_oldest_first(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=scheduled(T0))
    written = [run.state.id]
    for proposed in (state(PENDING), state(RUNNING), state(PENDING), state(COMPLETED)):
        result = await set_state(stubs, run.id, proposed)
        if result.status == ABORT:  # RUNNING -> PENDING: nothing written
            continue
        assert result.status == ACCEPT
        written.append(result.state.id)
    states = await states_of(stubs, run.id)
    assert [s.id for s in states] == written
    assert [s.type for s in states] == [SCHEDULED, PENDING, RUNNING, COMPLETED]
    stamps = [at(s, "timestamp") for s in states]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert all(s.state_details.flow_run_id == run.id for s in states)


async def test_resume_of_a_run_that_is_not_paused_aborts(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    response = await stubs.flow_runs.ResumeFlowRun(fr.ResumeFlowRunRequest(flow_run_id=run.id))
    assert response.result.status == ABORT
    assert response.result.abort.reason == "Cannot resume a flow run that is not paused."
    assert response.result.state.id == run.state.id
    assert len(await states_of(stubs, run.id)) == 1


async def test_resume_of_a_blocking_pause_goes_to_running(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    paused = await set_state(stubs, run.id, state(PAUSED))
    assert paused.status == ACCEPT and paused.state.name == "Paused"
    input_ = struct_pb2.Struct()
    input_.update({"approved": True})
    response = await stubs.flow_runs.ResumeFlowRun(
        fr.ResumeFlowRunRequest(flow_run_id=run.id, run_input=input_)
    )
    assert response.result.status == ACCEPT
    assert response.result.state.type == RUNNING
    got = await get_run(stubs, run.id)
    assert got.state_type == RUNNING
    assert got.run_count == 2  # a blocking resume counts (Prefect's ordering)
    types = [s.type for s in await states_of(stubs, run.id)]
    assert types == [RUNNING, PAUSED, RUNNING]


async def test_set_state_with_an_unspecified_type_is_invalid(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await set_state(stubs, run.id, state_pb2.State())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_history_of_large_states_comes_in_pages_that_fit(stubs):
    """Ten forced states with 500 KB of data each (under the default max_json_bytes) weigh 5 MB:
    a page holds what fits in 4 MiB, and its token goes on after the last state it holds."""
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    for i in range(10):
        big = state(RUNNING if i % 2 else PENDING)
        big.data.string_value = f"{i}" + "x" * 500_000
        await set_state(stubs, run.id, big, force=True)
    first = await stubs.flow_runs.ListFlowRunStates(fr.ListFlowRunStatesRequest(flow_run_id=run.id))
    assert 0 < len(first.states) < 11 and first.next_page_token
    seen, token = [], ""
    while True:
        request = fr.ListFlowRunStatesRequest(flow_run_id=run.id, page_token=token)
        page = await stubs.flow_runs.ListFlowRunStates(request)
        seen += [s.data.string_value[:1] or "-" for s in page.states]
        if not (token := page.next_page_token):
            break
    assert seen == ["-"] + [str(i) for i in range(10)]  # the first state, then the forced ones


async def test_history_pages_by_limit_and_tokens_belong_to_their_run(stubs):
    flow = await make_flow(stubs)
    run, other = await make_run(stubs, flow.id), await make_run(stubs, flow.id)
    for proposed in (state(RUNNING), state(COMPLETED)):
        await set_state(stubs, run.id, proposed, force=True)
    everything = await states_of(stubs, run.id)
    first = await stubs.flow_runs.ListFlowRunStates(
        fr.ListFlowRunStatesRequest(flow_run_id=run.id, limit=2)
    )
    assert [s.id for s in first.states] == [s.id for s in everything[:2]]
    rest = await stubs.flow_runs.ListFlowRunStates(
        fr.ListFlowRunStatesRequest(flow_run_id=run.id, page_token=first.next_page_token)
    )
    assert [s.id for s in rest.states] == [
        s.id for s in everything[2:]
    ] and not rest.next_page_token
    for run_id, token in ((other.id, first.next_page_token), (run.id, "forged")):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stubs.flow_runs.ListFlowRunStates(
                fr.ListFlowRunStatesRequest(flow_run_id=run_id, page_token=token)
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in raised.value.details()
