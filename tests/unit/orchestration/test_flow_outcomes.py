"""Every row of the outcomes table (§5.6) and the ordering notes of §5.3, under CoreFlowPolicy.

The rows live in tests/outcome_table.py, shared with tests/service/test_orchestration_api.py which
runs them through the gRPC API on a real server.
"""

import copy

import pytest
from outcome_table import ROWS, Row, StateSpec

from flowrpc.server.orchestration import FlowPolicy, orchestrate_flow_run
from flowrpc.server.orchestration.records import TERMINAL_STATES, SetStateStatus, StateType

S = StateType
SECOND = 1_000_000
TERMINAL = [S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED]


def _state(build, spec: StateSpec, ts: int):
    """The table's state spec as a record; offsets count from build.now."""
    details = {}
    if spec.scheduled_in is not None:
        details["scheduled_time"] = build.now + round(spec.scheduled_in * SECOND)
    if spec.pause_timeout_in is not None:
        details["pause_timeout"] = build.now + round(spec.pause_timeout_in * SECOND)
    if spec.pause_reschedule:
        details["pause_reschedule"] = True
    if spec.transition_id is not None:
        details["transition_id"] = spec.transition_id
    return build.state(spec.type, spec.name, ts=ts, data=copy.deepcopy(spec.data), **details)


def _run(build, row: Row, initial):
    """A run with the row's facts and the bookkeeping its history would have left."""
    fields = {"run_count": row.runs}
    if row.deployment:
        fields["deployment_id"] = "d"
    if row.infrastructure_pid is not None:
        fields["infrastructure_pid"] = row.infrastructure_pid
    if initial is not None:
        fields["expected_start_time"] = build.earlier - 60 * SECOND
        if row.runs or initial.type in TERMINAL_STATES:
            fields["start_time"] = build.earlier - 30 * SECOND
        if initial.type in TERMINAL_STATES:
            fields["end_time"] = build.earlier
    policy = {"retries": row.retries} if row.retries is not None else None
    return build.flow_run(initial, policy=policy, **fields)


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in ROWS])
def test_outcome(build, row: Row):
    initial = _state(build, row.initial, build.earlier) if row.initial else None
    proposed = _state(build, row.proposed, build.now)
    run = _run(build, row, initial)
    expected_start_time = run.expected_start_time

    decision = orchestrate_flow_run(run, initial, proposed, policy=FlowPolicy.CORE, now=build.now)

    assert decision.status is SetStateStatus(row.status)
    assert decision.reason == row.reason
    if row.result is None:
        assert decision.state is None
        assert run.state_id == (initial.id if initial else None)
    else:
        expected_type, expected_name = row.result
        assert (decision.state.type, decision.state.name) == (S(expected_type), expected_name)
        assert (run.state_id, run.state_type) == (decision.state.id, S(expected_type))
    if row.wait_seconds is not None:
        assert decision.delay_seconds == row.wait_seconds
    if row.scheduled_time_copied:
        assert decision.state.details.scheduled_time == initial.details.scheduled_time
    if initial is not None:
        assert run.expected_start_time == expected_start_time
    policy = run.empirical_policy
    actual = {
        "run_count": run.run_count,
        "end_time": run.end_time,
        "next_scheduled_start_time": run.next_scheduled_start_time,
        "retry_type": policy.retry_type,
        "resuming": policy.resuming,
    }
    assert {key: actual[key] for key in row.after} == dict(row.after)


def test_scheduled_to_pending_copies_the_scheduled_time(build):
    initial = build.state(S.SCHEDULED, scheduled_time=build.now - 3 * SECOND)
    run = build.flow_run(initial)
    decision = orchestrate_flow_run(
        run, initial, build.proposal(S.PENDING), policy=FlowPolicy.CORE, now=build.now
    )
    assert decision.state.details.scheduled_time == build.now - 3 * SECOND
    assert run.next_scheduled_start_time is None


@pytest.mark.parametrize("terminal", TERMINAL)
def test_rerun_from_terminal_clears_end_time(build, terminal):
    initial = build.state(terminal)
    run = build.flow_run(initial, start_time=build.earlier, end_time=build.earlier, run_count=1)
    orchestrate_flow_run(
        run, initial, build.proposal(S.RUNNING), policy=FlowPolicy.CORE, now=build.now
    )
    assert (run.end_time, run.run_count) == (None, 2)


@pytest.mark.parametrize("terminal", TERMINAL)
def test_reschedule_from_terminal_marks_a_reschedule_and_keeps_run_count(build, terminal):
    initial = build.state(terminal)
    run = build.flow_run(initial, deployment_id="d", run_count=2)
    orchestrate_flow_run(
        run, initial, build.proposal(S.SCHEDULED), policy=FlowPolicy.CORE, now=build.now
    )
    assert (run.empirical_policy.retry_type, run.run_count) == ("reschedule", 2)
