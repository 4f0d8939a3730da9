"""Global flow-run bookkeeping (§5.4), its ordering subtleties, and forced transitions."""

import copy

import pytest

from flowrpc.server.orchestration import (
    FlowPolicy,
    orchestrate_flow_run,
    resume_proposal,
)
from flowrpc.server.orchestration.records import SetStateStatus, StateType

S = StateType
ACCEPT = SetStateStatus.ACCEPT


def set_state(run, initial, proposed, now, policy=FlowPolicy.CORE):
    return orchestrate_flow_run(run, initial, proposed, policy=policy, now=now)


def walk(build, run, *steps, policy=FlowPolicy.CORE):
    """Propose each (type, name[, details]) in turn, one second apart; all must be accepted."""
    initial = None
    for i, (state_type, name, *details) in enumerate(steps):
        now = build.now + i * build.second
        proposed = build.proposal(state_type, name, ts=now, **(details[0] if details else {}))
        decision = set_state(run, initial, proposed, now, policy)
        assert decision.status is ACCEPT, (state_type, name, decision.reason)
        initial = decision.state
    return initial


# ---- EnsureFlowRunStateTimestampIsUnique (flowrpc: monotonic per run)


def test_timestamp_not_after_the_current_one_is_bumped_past_it(build):
    initial = build.state(S.RUNNING, ts=build.now + 5)  # another replica's clock ran ahead
    run = build.flow_run(initial)
    decision = set_state(run, initial, build.proposal(S.COMPLETED), build.now)
    assert decision.state.timestamp == build.now + 6
    assert run.state_timestamp == build.now + 6


def test_equal_timestamp_is_bumped_by_one_microsecond(build):
    initial = build.state(S.RUNNING, ts=build.now)
    run = build.flow_run(initial)
    decision = set_state(run, initial, build.proposal(S.COMPLETED), build.now)
    assert decision.state.timestamp == build.now + 1


def test_later_timestamp_is_kept(build):
    initial = build.state(S.RUNNING)
    decision = set_state(build.flow_run(initial), initial, build.proposal(S.COMPLETED), build.now)
    assert decision.state.timestamp == build.now


# ---- SetRunState*, UpdateStateDetails


def test_run_mirrors_the_new_state(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial)
    decision = set_state(run, initial, build.proposal(S.COMPLETED, "Done"), build.now)
    state = decision.state
    assert (run.state_id, run.state_type, run.state_name, run.state_timestamp) == (
        state.id,
        S.COMPLETED,
        "Done",
        build.now,
    )
    assert state.details.flow_run_id == run.id
    assert decision.parent_task_state is None


# ---- start / end / run time


def test_a_full_life_sets_start_end_and_run_time(build):
    run = build.flow_run()
    walk(build, run, (S.SCHEDULED, None), (S.PENDING, None), (S.RUNNING, None), (S.COMPLETED, None))
    assert run.expected_start_time == build.now  # the scheduled_time of the first state
    assert run.start_time == build.now + 2 * build.second
    assert run.end_time == build.now + 3 * build.second
    assert run.total_run_time == build.second
    assert run.run_count == 1
    assert run.next_scheduled_start_time is None


def test_start_time_is_the_first_running(build):
    initial = build.state(S.PAUSED)
    run = build.flow_run(initial, start_time=build.earlier)
    set_state(run, initial, build.proposal(S.RUNNING), build.now)
    assert run.start_time == build.earlier


def test_terminal_without_running_sets_start_and_end(build):
    initial = build.state(S.SCHEDULED)
    run = build.flow_run(initial)
    set_state(run, initial, build.proposal(S.CANCELLED), build.now)
    assert (run.start_time, run.end_time) == (build.now, build.now)


def test_terminal_to_terminal_keeps_the_end_time(build):
    initial = build.state(S.FAILED)
    run = build.flow_run(initial, start_time=build.earlier, end_time=build.earlier)
    set_state(run, initial, build.proposal(S.COMPLETED), build.now)
    assert run.end_time == build.earlier


def test_leaving_terminal_clears_the_end_time(build):
    initial = build.state(S.FAILED)
    run = build.flow_run(initial, start_time=build.earlier, end_time=build.earlier, run_count=1)
    decision = set_state(run, initial, build.proposal(S.RUNNING), build.now)
    assert decision.status is ACCEPT
    assert (run.end_time, run.start_time, run.run_count) == (None, build.earlier, 2)


def test_run_time_accumulates_over_running_periods(build):
    initial = build.state(S.RUNNING, ts=build.now - 7 * build.second)
    run = build.flow_run(initial, total_run_time=3 * build.second)
    set_state(run, initial, build.proposal(S.PAUSED), build.now)
    assert run.total_run_time == 10 * build.second


# ---- expected / next scheduled start time


def test_expected_start_time_is_set_once(build):
    initial = build.state(S.PENDING)
    run = build.flow_run(initial, expected_start_time=build.earlier)
    set_state(run, initial, build.proposal(S.RUNNING), build.now)
    assert run.expected_start_time == build.earlier


def test_expected_start_time_of_a_non_scheduled_first_state_is_its_timestamp(build):
    run = build.flow_run()
    set_state(run, None, build.proposal(S.PENDING), build.now)
    assert run.expected_start_time == build.now


def test_next_scheduled_start_time_follows_scheduled_states(build):
    run = build.flow_run()
    later = build.now + 60 * build.second
    set_state(run, None, build.proposal(S.SCHEDULED, scheduled_time=later), build.now)
    assert (run.expected_start_time, run.next_scheduled_start_time) == (later, later)


# ---- subflows


def test_subflow_states_point_at_the_parent_task_and_are_mirrored(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, parent_task_run_id="parent-task")
    proposed = build.proposal(S.COMPLETED, message="ok", data={"type": "reference", "k": "x"})
    decision = set_state(run, initial, proposed, build.now)
    assert decision.state.details.task_run_id == "parent-task"
    mirror = decision.parent_task_state
    assert mirror.id != decision.state.id
    assert (mirror.type, mirror.name, mirror.timestamp, mirror.message, mirror.data) == (
        S.COMPLETED,
        "Completed",
        decision.state.timestamp,
        "ok",
        {"type": "reference", "k": "x"},
    )
    details = mirror.details
    assert (details.child_flow_run_id, details.task_run_id, details.flow_run_id) == (
        run.id,
        "parent-task",
        None,
    )


def test_subflow_mirror_uses_the_final_state(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, parent_task_run_id="t", run_count=1, policy={"retries": 1})
    decision = set_state(run, initial, build.proposal(S.FAILED), build.now)
    assert decision.parent_task_state.name == "AwaitingRetry"


def test_rejected_subflow_transition_mirrors_nothing(build):
    initial = build.state(S.CANCELLING)
    run = build.flow_run(initial, parent_task_run_id="t")
    decision = set_state(run, initial, build.proposal(S.RUNNING), build.now)
    assert decision.parent_task_state is None


# ---- run_count and the resuming indicator


def test_each_running_counts_a_run(build):
    initial = build.state(S.PENDING)
    run = build.flow_run(initial, run_count=2)
    set_state(run, initial, build.proposal(S.RUNNING), build.now)
    assert run.run_count == 3


def test_running_while_resuming_does_not_count_and_clears_resuming(build):
    initial = build.state(S.PENDING)
    run = build.flow_run(initial, run_count=1, policy={"resuming": True})
    set_state(run, initial, build.proposal(S.RUNNING), build.now)
    assert (run.run_count, run.empirical_policy.resuming) == (1, False)


@pytest.mark.parametrize("terminal", [S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLED])
def test_terminal_clears_resuming(build, terminal):
    initial = build.state(S.RUNNING)  # e.g. after a blocking resume
    run = build.flow_run(initial, policy={"resuming": True})
    set_state(run, initial, build.proposal(terminal), build.now)
    assert run.empirical_policy.resuming is False


def test_blocking_resume_counts_a_run(build):
    """PAUSED -> RUNNING: resuming is set only after the transforms, so this RUNNING counts."""
    run = build.flow_run()
    walk(build, run, (S.PENDING, None), (S.RUNNING, None), (S.PAUSED, None), (S.RUNNING, None))
    assert run.run_count == 2
    assert run.empirical_policy.resuming is True


def test_suspended_resume_does_not_count_a_run(build):
    """Suspended -> SCHEDULED "Resuming" -> PENDING -> RUNNING keeps run_count."""
    run = build.flow_run(deployment_id="d")
    suspended = walk(
        build,
        run,
        (S.PENDING, None),
        (S.RUNNING, None),
        (S.PAUSED, "Suspended", {"pause_reschedule": True}),
    )
    assert run.run_count == 1
    now = build.now + 10 * build.second
    resuming = resume_proposal(run, suspended, now)
    decision = set_state(run, suspended, resuming, now)
    assert (decision.status, decision.state.name) == (ACCEPT, "Resuming")
    assert run.empirical_policy.resuming is True
    pending = set_state(run, decision.state, build.proposal(S.PENDING, ts=now + 1), now + 1).state
    running = set_state(run, pending, build.proposal(S.RUNNING, ts=now + 2), now + 2)
    assert (running.status, running.state.name) == (ACCEPT, "Running")
    assert (run.run_count, run.empirical_policy.resuming) == (1, False)


# ---- nullified proposals and forced transitions


def test_nullified_proposal_leaves_the_run_untouched(build):
    initial = build.state(S.CANCELLING)
    run = build.flow_run(initial, run_count=1, policy={"pause_keys": ["k"]})
    before = copy.deepcopy(run)
    decision = set_state(run, initial, build.proposal(S.RUNNING), build.now)
    assert decision.status is SetStateStatus.REJECT
    assert run == before


def test_forced_transitions_run_all_bookkeeping(build):
    initial = build.state(S.COMPLETED)
    run = build.flow_run(
        initial,
        run_count=1,
        start_time=build.earlier,
        end_time=build.earlier,
        parent_task_run_id="t",
    )
    decision = set_state(run, initial, build.proposal(S.RUNNING), build.now, FlowPolicy.MINIMAL)
    assert decision.status is ACCEPT
    assert (run.state_type, run.run_count, run.end_time) == (S.RUNNING, 2, None)
    assert decision.state.details.flow_run_id == run.id
    assert decision.parent_task_state.details.child_flow_run_id == run.id


def test_forced_initial_state_derives_the_run_fields(build):
    run = build.flow_run()
    decision = set_state(run, None, build.proposal(S.RUNNING), build.now, FlowPolicy.MINIMAL)
    assert decision.status is ACCEPT
    assert (run.run_count, run.start_time, run.expected_start_time) == (1, build.now, build.now)


def test_forced_transition_skips_core_rules_but_not_the_timestamp_rule(build):
    initial = build.state(S.CANCELLING, ts=build.now)
    run = build.flow_run(initial)
    decision = set_state(run, initial, build.proposal(S.RUNNING), build.now, FlowPolicy.MINIMAL)
    assert (decision.status, decision.state.timestamp) == (ACCEPT, build.now + 1)
