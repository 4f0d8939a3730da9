"""Orchestration through the gRPC API on a real server: every row of tests/outcome_table.py
(prefect-semantics.md §5.6 and the ordering notes of §5.3), set up and proposed with the generated
stubs only, and the examples of §5.3/§5.4 (resume sequences, forced bookkeeping, retries,
duplicate transitions).

A row's run is made the way a client would: a flow (and a deployment when the row needs one), the
run with its retries, infrastructure_pid via UpdateFlowRun, run_count by forced RUNNING
transitions, then the initial state forced with its details. Nothing is written to the database.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from helpers import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    FAILED,
    PAUSED,
    PENDING,
    RUNNING,
    SCHEDULED,
    at,
    close_to_now,
    get_run,
    make_flow,
    make_run,
    now,
    set_state,
    state,
    ts,
)
from outcome_table import ROWS, TERMINAL, TYPES, Row, StateSpec

from flowrpc.v1 import deployment_pb2, flow_run_pb2, orchestration_pb2, state_pb2
from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import flow_run_service_pb2 as fr

TYPE = {name: state_pb2.StateType.Value(f"STATE_TYPE_{name}") for name in TYPES}
STATUS = {
    name: orchestration_pb2.SetStateStatus.Value(f"SET_STATE_STATUS_{name}")
    for name in ("ACCEPT", "REJECT", "WAIT", "ABORT")
}
DETAILS = {"ACCEPT": "accept", "REJECT": "reject", "WAIT": "wait", "ABORT": "abort"}
ACCEPT, REJECT, WAIT, ABORT = (STATUS[s] for s in ("ACCEPT", "REJECT", "WAIT", "ABORT"))
NO_STATE = (
    "not reachable through the API: a run always has a state (CreateFlowRun and "
    "CreateFlowRunFromDeployment apply an initial state, forced) and no RPC removes states"
)
NOT_PAUSED = "Cannot resume a flow run that is not paused."


# ---- building blocks ----


def proto_state(spec: StateSpec) -> state_pb2.State:
    """The table's state spec as a proposal; its offsets count from now."""
    details = state_pb2.StateDetails(pause_reschedule=spec.pause_reschedule)
    if spec.scheduled_in is not None:
        details.scheduled_time.CopyFrom(ts(now() + timedelta(seconds=spec.scheduled_in)))
    if spec.pause_timeout_in is not None:
        details.pause_timeout.CopyFrom(ts(now() + timedelta(seconds=spec.pause_timeout_in)))
    if spec.transition_id is not None:
        details.transition_id = spec.transition_id
    data = None if spec.data is None else json_format.ParseDict(spec.data, struct_pb2.Value())
    return state_pb2.State(
        type=TYPE[spec.type], name=spec.name or "", data=data, state_details=details
    )


def reason(result: orchestration_pb2.OrchestrationResult) -> str | None:
    which = result.WhichOneof("details")
    return None if which in (None, "accept") else getattr(result, which).reason


async def states_of(stubs: Any, run_id: str) -> list[state_pb2.State]:
    request = fr.ListFlowRunStatesRequest(flow_run_id=run_id)
    return list((await stubs.flow_runs.ListFlowRunStates(request)).states)


async def forced(stubs: Any, run_id: str, proposed: state_pb2.State) -> state_pb2.State:
    """Forces `proposed` and returns the state written (it must be written as proposed)."""
    result = await set_state(stubs, run_id, proposed, force=True)
    assert result.status == ACCEPT, reason(result)
    assert result.state.type == proposed.type
    return result.state


async def resume(stubs: Any, run_id: str) -> orchestration_pb2.OrchestrationResult:
    request = fr.ResumeFlowRunRequest(flow_run_id=run_id)
    return (await stubs.flow_runs.ResumeFlowRun(request)).result


async def deployment_run(stubs: Any, **fields: Any) -> flow_run_pb2.FlowRun:
    """A run created from a deployment (initial state: Scheduled now)."""
    flow = await make_flow(stubs)
    deployment = (
        await stubs.deployments.CreateDeployment(
            dp.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(name="prod", flow_id=flow.id)
            )
        )
    ).deployment
    request = dp.CreateFlowRunFromDeploymentRequest(deployment_id=deployment.id, **fields)
    return (await stubs.deployments.CreateFlowRunFromDeployment(request)).flow_run


async def set_up(stubs: Any, row: Row) -> flow_run_pb2.FlowRun:
    """A run with the row's facts, in the row's initial state; returned as read back."""
    assert row.initial is not None
    policy = flow_run_pb2.FlowRunPolicy(retries=row.retries) if row.retries is not None else None
    if row.deployment:
        run = await deployment_run(stubs, empirical_policy=policy)
    else:
        run = await make_run(stubs, (await make_flow(stubs)).id, empirical_policy=policy)
    if row.infrastructure_pid is not None:
        await stubs.flow_runs.UpdateFlowRun(
            fr.UpdateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(id=run.id, infrastructure_pid=row.infrastructure_pid),
                update_mask=field_mask_pb2.FieldMask(paths=["infrastructure_pid"]),
            )
        )
    # Each forced RUNNING counts a run; when the initial state is RUNNING it is the last of them.
    earlier_runs = row.runs - (row.initial.type == "RUNNING")
    assert earlier_runs >= 0
    for _ in range(earlier_runs):
        await forced(stubs, run.id, state(RUNNING))
    initial = await forced(stubs, run.id, proto_state(row.initial))
    assert initial.name == row.initial.state_name
    run = await get_run(stubs, run.id)
    assert (run.state_id, run.run_count) == (initial.id, row.runs)
    assert bool(run.deployment_id) == row.deployment
    assert run.infrastructure_pid == (row.infrastructure_pid or "")
    return run


def run_param(row: Row) -> Any:
    marks = [pytest.mark.skip(reason=NO_STATE)] if row.initial is None else []
    return pytest.param(row, id=row.id, marks=marks)


# ---- every row of the outcomes table ----


@pytest.mark.parametrize("row", [run_param(r) for r in ROWS])
async def test_outcome(stubs, row: Row):
    before = await set_up(stubs, row)
    initial = before.state
    states_before = await states_of(stubs, before.id)

    result = await set_state(stubs, before.id, proto_state(row.proposed))

    assert (result.status, reason(result)) == (STATUS[row.status], row.reason)
    assert result.WhichOneof("details") == DETAILS[row.status]
    after = await get_run(stubs, before.id)
    states = await states_of(stubs, before.id)
    if row.result is None:  # nothing written: the answer is the unchanged current state
        assert result.state == initial
        assert after.state == initial
        assert len(states) == len(states_before)
    else:
        expected_type, expected_name = row.result
        assert (result.state.type, result.state.name) == (TYPE[expected_type], expected_name)
        assert result.state.id != initial.id
        assert after.state == result.state
        assert (after.state_type, after.state_name) == (TYPE[expected_type], expected_name)
        assert [s.id for s in states] == [s.id for s in states_before] + [result.state.id]
        assert result.state.state_details.flow_run_id == before.id
    if row.wait_seconds is not None:
        # round(scheduled_time - now): the few milliseconds of setup may round it down by one
        assert row.wait_seconds - 1 <= result.wait.delay_seconds <= row.wait_seconds
    if row.scheduled_time_copied:
        scheduled_time = initial.state_details.scheduled_time
        assert result.state.state_details.scheduled_time == scheduled_time
    assert after.expected_start_time == before.expected_start_time  # set once, never changed
    assert after.start_time == before.start_time or not before.HasField("start_time")
    actual = {
        "run_count": after.run_count,
        "end_time": at(after, "end_time"),
        "next_scheduled_start_time": at(after, "next_scheduled_start_time"),
        "retry_type": after.empirical_policy.retry_type
        if after.empirical_policy.HasField("retry_type")
        else None,
        "resuming": after.empirical_policy.resuming,
    }
    assert {key: actual[key] for key in row.after} == dict(row.after)
    if row.result is None:
        assert after.run_count == before.run_count
        assert after.end_time == before.end_time


def test_only_the_rows_without_a_state_are_skipped():
    """Only the "none -> X" rows are skipped (see NO_STATE)."""
    skipped = [r.id for r in ROWS if r.initial is None]
    assert skipped == [f"none->{t}" for t in TYPES if t != "PAUSED"] + ["none->PAUSED"]


# ---- §5.3 / §5.4 examples ----


async def test_suspend_and_resume_does_not_count_a_run(stubs):
    """Suspended -> Resuming -> PENDING -> RUNNING: the RUNNING after a resume is not a new run."""
    run = await deployment_run(stubs)
    assert (await set_state(stubs, run.id, state(PENDING))).status == ACCEPT
    assert (await set_state(stubs, run.id, state(RUNNING))).status == ACCEPT
    suspended = state(
        PAUSED, "Suspended", details=state_pb2.StateDetails(pause_reschedule=True, pause_key="k")
    )
    result = await set_state(stubs, run.id, suspended)
    assert (result.status, result.state.name) == (ACCEPT, "Suspended")
    run = await get_run(stubs, run.id)
    assert (run.run_count, list(run.empirical_policy.pause_keys)) == (1, ["k"])

    result = await resume(stubs, run.id)
    assert (result.status, result.state.type, result.state.name) == (ACCEPT, SCHEDULED, "Resuming")
    resumed_at = at(result.state.state_details, "scheduled_time")
    assert close_to_now(resumed_at)
    run = await get_run(stubs, run.id)
    assert (run.run_count, run.empirical_policy.resuming) == (1, True)
    assert at(run, "next_scheduled_start_time") == resumed_at

    result = await set_state(stubs, run.id, state(PENDING))
    assert (result.status, at(result.state.state_details, "scheduled_time")) == (
        ACCEPT,
        resumed_at,
    )
    result = await set_state(stubs, run.id, state(RUNNING))
    assert result.status == ACCEPT
    run = await get_run(stubs, run.id)
    assert (run.run_count, run.empirical_policy.resuming) == (1, False)

    # each pause key fires once per run
    result = await set_state(stubs, run.id, suspended)
    assert (result.status, reason(result)) == (REJECT, "This suspend has already fired.")
    assert result.state.type == RUNNING


async def test_blocking_pause_and_resume_counts_a_run(stubs):
    """PAUSED -> RUNNING (a blocking resume) counts a run, then sets `resuming` (rule 12's
    after-hook), so a second blocking pause/resume of the same run does not count one (a quirk
    kept from Prefect, docs/orchestration.md)."""
    run = await make_run(stubs, (await make_flow(stubs)).id)
    assert (await set_state(stubs, run.id, state(RUNNING))).status == ACCEPT
    assert (await set_state(stubs, run.id, state(PAUSED))).status == ACCEPT

    result = await resume(stubs, run.id)
    assert (result.status, result.state.type, result.state.name) == (ACCEPT, RUNNING, "Running")
    run = await get_run(stubs, run.id)
    assert (run.run_count, run.empirical_policy.resuming) == (2, True)

    assert (await set_state(stubs, run.id, state(PAUSED))).status == ACCEPT
    assert (await resume(stubs, run.id)).status == ACCEPT
    run = await get_run(stubs, run.id)
    assert (run.run_count, run.empirical_policy.resuming) == (2, True)


async def test_resume_of_a_suspended_run_without_a_deployment_is_rejected(stubs):
    run = await make_run(stubs, (await make_flow(stubs)).id)
    await forced(stubs, run.id, state(RUNNING))
    details = state_pb2.StateDetails(pause_reschedule=True)
    suspended = await forced(stubs, run.id, state(PAUSED, "Suspended", details=details))

    result = await resume(stubs, run.id)

    assert (result.status, reason(result)) == (
        REJECT,
        "Cannot reschedule a resuming flow run without a deployment.",
    )
    assert result.state == suspended
    assert len(await states_of(stubs, run.id)) == 3


async def test_resume_after_the_pause_timed_out_fails_the_run(stubs):
    run = await make_run(stubs, (await make_flow(stubs)).id)
    await forced(stubs, run.id, state(RUNNING))
    details = state_pb2.StateDetails(pause_timeout=ts(now() - timedelta(seconds=1)))
    await forced(stubs, run.id, state(PAUSED, details=details))

    result = await resume(stubs, run.id)

    assert (result.status, reason(result)) == (
        REJECT,
        "The flow run pause has timed out and can no longer resume.",
    )
    assert (result.state.type, result.state.message) == (
        FAILED,
        "The flow was running and never resumed.",
    )
    run = await get_run(stubs, run.id)
    assert (run.state_id, run.run_count) == (result.state.id, 1)
    assert at(run, "end_time") == at(result.state, "timestamp")


async def test_resume_of_a_missing_run_is_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resume(stubs, "0190a000-0000-7000-8000-00000000dead")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("current", [SCHEDULED, PENDING, RUNNING, COMPLETED, CANCELLING])
async def test_resume_of_a_run_that_is_not_paused_aborts(stubs, current):
    run = await make_run(stubs, (await make_flow(stubs)).id, state=state(current))

    result = await resume(stubs, run.id)

    assert (result.status, reason(result)) == (ABORT, NOT_PAUSED)
    assert result.state == run.state
    assert (await get_run(stubs, run.id)).state == run.state
    assert len(await states_of(stubs, run.id)) == 1


async def test_forced_transitions_still_do_the_bookkeeping(stubs):
    """force=true skips the rules (PENDING -> PAUSED would be rejected), not the bookkeeping."""
    run = await make_run(stubs, (await make_flow(stubs)).id)
    created = at(run.state, "timestamp")
    assert (at(run, "expected_start_time"), run.run_count) == (created, 0)
    assert not run.HasField("start_time")

    paused = await forced(stubs, run.id, state(PAUSED))
    running = await forced(stubs, run.id, state(RUNNING))
    run = await get_run(stubs, run.id)
    assert run.state_id == running.id
    assert (run.run_count, at(run, "start_time")) == (1, at(running, "timestamp"))
    assert paused.state_details.flow_run_id == running.state_details.flow_run_id == run.id

    completed = await forced(stubs, run.id, state(COMPLETED))
    run = await get_run(stubs, run.id)
    first_stretch = at(completed, "timestamp") - at(running, "timestamp")
    assert at(run, "end_time") == at(completed, "timestamp")
    assert run.total_run_time.ToTimedelta() == first_stretch
    assert run.estimated_run_time.ToTimedelta() == first_stretch

    rerun = await forced(stubs, run.id, state(RUNNING))
    run = await get_run(stubs, run.id)
    assert not run.HasField("end_time")
    assert (run.run_count, at(run, "start_time")) == (2, at(running, "timestamp"))

    failed = await forced(stubs, run.id, state(FAILED))
    crashed = await forced(stubs, run.id, state(state_pb2.STATE_TYPE_CRASHED))
    run = await get_run(stubs, run.id)
    second_stretch = at(failed, "timestamp") - at(rerun, "timestamp")
    assert run.total_run_time.ToTimedelta() == first_stretch + second_stretch
    assert at(run, "end_time") == at(failed, "timestamp")  # terminal -> terminal keeps it
    assert (run.state_id, run.run_count, at(run, "expected_start_time")) == (crashed.id, 2, created)
    timestamps = [at(s, "timestamp") for s in await states_of(stubs, run.id)]
    assert timestamps == sorted(timestamps) and len(set(timestamps)) == len(timestamps) == 7


async def test_forced_terminal_state_of_a_run_that_never_ran_sets_start_and_end(stubs):
    run = await deployment_run(stubs)
    assert run.HasField("next_scheduled_start_time")
    cancelled = await forced(stubs, run.id, state(CANCELLED))
    run = await get_run(stubs, run.id)
    assert at(run, "start_time") == at(run, "end_time") == at(cancelled, "timestamp")
    assert not run.HasField("next_scheduled_start_time")
    assert (run.run_count, run.total_run_time.ToTimedelta()) == (0, timedelta(0))


async def test_forced_transitions_keep_the_minimal_rules(stubs):
    """MinimalFlowPolicy still cancels a scheduled run without infrastructure and still refuses
    to drop a persisted result."""
    run = await make_run(stubs, (await make_flow(stubs)).id, state=state(SCHEDULED))
    result = await set_state(stubs, run.id, state(CANCELLING), force=True)
    assert (result.status, result.state.type, reason(result)) == (
        REJECT,
        CANCELLED,
        "Scheduled flow run has no infrastructure to terminate.",
    )

    run = await make_run(stubs, (await make_flow(stubs, name="other")).id)
    persisted = json_format.ParseDict({"type": "reference", "storage_key": "k"}, struct_pb2.Value())
    completed = await forced(stubs, run.id, state(COMPLETED, data=persisted))
    result = await set_state(stubs, run.id, state(COMPLETED), force=True)
    assert result.status == REJECT
    assert result.state == completed


async def test_retries_go_through_awaiting_retry_until_exhausted(stubs):
    """RetryFailedFlows: each failed attempt with retries left becomes AwaitingRetry (in process,
    message and data kept); the attempt after the last retry fails for good."""
    policy = flow_run_pb2.FlowRunPolicy(retries=2)
    run = await make_run(stubs, (await make_flow(stubs)).id, empirical_policy=policy)
    data = json_format.ParseDict({"type": "unpersisted"}, struct_pb2.Value())
    for attempt in (1, 2, 3):
        assert (await set_state(stubs, run.id, state(RUNNING))).status == ACCEPT
        result = await set_state(stubs, run.id, state(FAILED, message="boom", data=data))
        run = await get_run(stubs, run.id)
        assert run.run_count == attempt
        if attempt == 3:
            break
        assert (result.status, reason(result)) == (REJECT, "Retrying")
        retry = result.state
        assert (retry.type, retry.name, retry.message, retry.data) == (
            SCHEDULED,
            "AwaitingRetry",
            "boom",
            data,
        )
        assert close_to_now(at(retry.state_details, "scheduled_time"))
        assert run.state == retry
        assert run.empirical_policy.retry_type == "in_process"
        assert not run.HasField("end_time")
        assert (await set_state(stubs, run.id, state(PENDING))).status == ACCEPT

    assert (result.status, result.state.type, result.state.name) == (ACCEPT, FAILED, "Failed")
    assert not run.empirical_policy.HasField("retry_type")
    assert at(run, "end_time") == at(result.state, "timestamp")
    states = await states_of(stubs, run.id)
    assert [s.name for s in states] == ["Pending", "Running", "AwaitingRetry", "Pending"] + [
        "Running",
        "AwaitingRetry",
        "Pending",
        "Running",
        "Failed",
    ]
    # time in RUNNING runs up to the state actually written (AwaitingRetry, not the FAILED proposed)
    stretches = [
        at(after, "timestamp") - at(running, "timestamp")
        for running, after in zip(states, states[1:], strict=False)
        if running.type == RUNNING
    ]
    assert run.total_run_time.ToTimedelta() == sum(stretches, timedelta(0))


async def test_retry_delay_schedules_the_retry_and_makes_the_next_attempt_wait(stubs):
    policy = flow_run_pb2.FlowRunPolicy(retries=1, retry_delay=30)
    run = await make_run(stubs, (await make_flow(stubs)).id, empirical_policy=policy)
    await set_state(stubs, run.id, state(RUNNING))

    result = await set_state(stubs, run.id, state(FAILED))

    assert (result.status, result.state.name) == (REJECT, "AwaitingRetry")
    scheduled_time = at(result.state.state_details, "scheduled_time")
    assert close_to_now(scheduled_time - timedelta(seconds=30), seconds=5)
    run = await get_run(stubs, run.id)
    assert at(run, "next_scheduled_start_time") == scheduled_time
    result = await set_state(stubs, run.id, state(RUNNING))
    assert (result.status, reason(result)) == (WAIT, "Scheduled time is in the future")
    assert 29 <= result.wait.delay_seconds <= 30
    assert (await get_run(stubs, run.id)).run_count == 1


async def test_a_repeated_request_with_the_same_transition_id_moves_the_run_once(stubs):
    run = await make_run(stubs, (await make_flow(stubs)).id)
    details = state_pb2.StateDetails(transition_id="0190a000-0000-7000-8000-0000000000aa")
    request = state(RUNNING, details=details)

    first = await set_state(stubs, run.id, request)
    again = await set_state(stubs, run.id, request)

    assert first.status == ACCEPT
    assert (again.status, reason(again)) == (
        REJECT,
        "This run has already made this state transition.",
    )
    assert again.state == first.state
    run = await get_run(stubs, run.id)
    assert (run.state_id, run.run_count) == (first.state.id, 1)
    assert len(await states_of(stubs, run.id)) == 2


@pytest.mark.parametrize("terminal", TERMINAL)
async def test_rescheduling_a_finished_deployment_run_then_running_it_again(stubs, terminal):
    """terminal -> SCHEDULED (manual retry): "reschedule", run_count kept, end_time cleared; the
    next RUNNING counts the next attempt."""
    run = await deployment_run(stubs)
    await forced(stubs, run.id, state(RUNNING))
    await forced(stubs, run.id, state(TYPE[terminal]))

    result = await set_state(stubs, run.id, state(SCHEDULED))
    assert (result.status, result.state.name) == (ACCEPT, "Scheduled")
    run = await get_run(stubs, run.id)
    assert (run.run_count, run.empirical_policy.retry_type) == (1, "reschedule")
    assert not run.HasField("end_time")

    assert (await set_state(stubs, run.id, state(PENDING))).status == ACCEPT
    assert (await set_state(stubs, run.id, state(RUNNING))).status == ACCEPT
    run = await get_run(stubs, run.id)
    assert run.run_count == 2


async def test_a_rerun_clears_the_pause_keys_and_a_refused_one_leaves_them(stubs):
    """HandleFlowTerminalStateTransitions resets the policy of a rerun (retry_type, pause keys:
    a pause key may fire again) and undoes that reset when a later rule refuses the transition
    (CANCELLED -> PENDING: the reset runs, then PreventPendingTransitions aborts)."""
    policy = flow_run_pb2.FlowRunPolicy(retries=1)
    run = await make_run(stubs, (await make_flow(stubs)).id, empirical_policy=policy)
    paused = state(PAUSED, details=state_pb2.StateDetails(pause_key="k"))
    for proposed in (state(RUNNING), state(FAILED), state(PENDING), state(RUNNING), paused):
        assert (await set_state(stubs, run.id, proposed)).status in (ACCEPT, REJECT)
    assert (await resume(stubs, run.id)).status == ACCEPT
    await forced(stubs, run.id, state(CANCELLED))
    run = await get_run(stubs, run.id)
    policy = run.empirical_policy
    assert (policy.retry_type, list(policy.pause_keys), run.run_count) == ("in_process", ["k"], 3)

    result = await set_state(stubs, run.id, state(PENDING))
    assert (result.status, reason(result)) == (
        ABORT,
        "This run is in a CANCELLED state and cannot transition to a PENDING state.",
    )
    assert (await get_run(stubs, run.id)).empirical_policy == policy

    assert (await set_state(stubs, run.id, state(RUNNING))).status == ACCEPT
    run = await get_run(stubs, run.id)
    assert not run.empirical_policy.HasField("retry_type")
    assert (list(run.empirical_policy.pause_keys), run.run_count) == ([], 4)
    assert (await set_state(stubs, run.id, paused)).status == ACCEPT
