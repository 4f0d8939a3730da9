"""One or more tests per flow-run rule (§5.3)."""

import pytest

from flowrpc.server.orchestration import FlowPolicy, orchestrate_flow_run
from flowrpc.server.orchestration.records import SetStateStatus, StateType

S = StateType
ACCEPT, REJECT, WAIT, ABORT = (
    SetStateStatus.ACCEPT,
    SetStateStatus.REJECT,
    SetStateStatus.WAIT,
    SetStateStatus.ABORT,
)
PERSISTED = {"type": "reference", "storage_key": "/results/abc"}
UNPERSISTED = {"type": "unpersisted"}


def set_state(build, run, initial, proposed, policy=FlowPolicy.CORE):
    return orchestrate_flow_run(run, initial, proposed, policy=policy, now=build.now)


# ---- 1. PreserveDeploymentConcurrencyLeaseId


def test_lease_id_is_carried_forward_when_the_proposal_has_none(build):
    initial = build.state(S.PENDING, deployment_concurrency_lease_id="lease-1")
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.RUNNING))
    assert decision.state.details.deployment_concurrency_lease_id == "lease-1"


def test_lease_id_of_the_proposal_wins(build):
    initial = build.state(S.PENDING, deployment_concurrency_lease_id="lease-1")
    proposed = build.proposal(S.RUNNING, deployment_concurrency_lease_id="lease-2")
    decision = set_state(build, build.flow_run(initial), initial, proposed)
    assert decision.state.details.deployment_concurrency_lease_id == "lease-2"


# ---- 2. PreventDuplicateTransitions


def test_repeated_transition_id_is_rejected_without_a_state(build):
    initial = build.state(S.RUNNING, transition_id="t-1")
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.COMPLETED, transition_id="t-1"))
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "This run has already made this state transition."
    assert run.state_type is S.RUNNING  # no bookkeeping for a nullified proposal


def test_different_transition_ids_are_accepted(build):
    initial = build.state(S.RUNNING, transition_id="t-1")
    proposed = build.proposal(S.COMPLETED, transition_id="t-2")
    decision = set_state(build, build.flow_run(initial), initial, proposed)
    assert decision.status is ACCEPT


# ---- 3. HandleFlowTerminalStateTransitions


@pytest.mark.parametrize("terminal", [S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED])
@pytest.mark.parametrize("proposed_type", [S.CANCELLING, S.PAUSED, S.CRASHED])
def test_terminal_runs_cannot_be_cancelled_paused_or_crashed(build, terminal, proposed_type):
    initial = build.state(terminal)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(proposed_type))
    assert (decision.status, decision.state) == (ABORT, None)
    assert decision.reason == f"Run is already in terminal state {terminal.value}."


@pytest.mark.parametrize("proposed_type", [S.SCHEDULED, S.PENDING, S.RUNNING])
def test_completed_with_persisted_result_cannot_rerun(build, proposed_type):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    run = build.flow_run(initial, deployment_id="d")
    decision = set_state(build, run, initial, build.proposal(proposed_type))
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "Run is already COMPLETED."


def test_completed_persisted_result_is_not_overwritten_by_none(build):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    proposed = build.proposal(S.COMPLETED, data=UNPERSISTED)
    decision = set_state(build, build.flow_run(initial), initial, proposed)
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == (
        "Cannot overwrite a COMPLETED state that carries persisted result data with one that"
        " does not."
    )


def test_completed_persisted_result_may_be_replaced_by_another_persisted_one(build):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    proposed = build.proposal(S.COMPLETED, data={"type": "reference", "storage_key": "/b"})
    decision = set_state(build, build.flow_run(initial), initial, proposed)
    assert decision.status is ACCEPT


def test_completed_persisted_may_become_failed(build):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.FAILED))
    assert decision.status is ACCEPT


def test_terminal_run_without_deployment_cannot_be_rescheduled(build):
    initial = build.state(S.FAILED)
    run = build.flow_run(initial, policy={"retry_type": "in_process"})
    decision = set_state(build, run, initial, build.proposal(S.SCHEDULED))
    assert (decision.status, decision.state) == (ABORT, None)
    assert decision.reason == "Cannot reschedule a run without an associated deployment."
    assert run.empirical_policy.retry_type == "in_process"


def test_rescheduling_a_terminal_run_resets_the_pause_policy(build):
    initial = build.state(S.FAILED)
    run = build.flow_run(
        initial,
        deployment_id="d",
        run_count=3,
        policy={"resuming": True, "pause_keys": ["k"], "retry_type": "in_process"},
    )
    decision = set_state(build, run, initial, build.proposal(S.SCHEDULED))
    assert decision.status is ACCEPT
    policy = run.empirical_policy
    assert (policy.resuming, policy.pause_keys, policy.retry_type) == (False, [], "reschedule")
    assert run.run_count == 3


def test_rerunning_a_terminal_run_clears_retry_type(build):
    initial = build.state(S.CRASHED)
    run = build.flow_run(initial, policy={"retry_type": "reschedule", "pause_keys": ["k"]})
    decision = set_state(build, run, initial, build.proposal(S.RUNNING))
    assert decision.status is ACCEPT
    assert (run.empirical_policy.retry_type, run.empirical_policy.pause_keys) == (None, [])


def test_terminal_policy_reset_is_reverted_when_a_later_rule_aborts(build):
    initial = build.state(S.CANCELLED)
    run = build.flow_run(initial, policy={"resuming": True, "pause_keys": ["k"]})
    decision = set_state(build, run, initial, build.proposal(S.PENDING))
    assert decision.status is ABORT
    policy = run.empirical_policy
    assert (policy.resuming, policy.pause_keys, policy.retry_type) == (True, ["k"], None)


def test_terminal_policy_reset_is_reverted_when_late_marking_is_rejected(build):
    initial = build.state(S.FAILED)
    run = build.flow_run(initial, deployment_id="d", policy={"retry_type": "in_process"})
    decision = set_state(build, run, initial, build.proposal(S.SCHEDULED, "Late"))
    assert decision.status is REJECT
    assert decision.reason == "Only scheduled flows can be marked late."
    assert run.empirical_policy.retry_type == "in_process"


# ---- 4. EnforceCancellingToCancelledTransition


@pytest.mark.parametrize(
    "proposed_type", [t for t in StateType if t is not S.CANCELLED], ids=lambda t: t.value
)
def test_cancelling_may_only_become_cancelled(build, proposed_type):
    initial = build.state(S.CANCELLING)
    run = build.flow_run(initial, deployment_id="d")
    decision = set_state(build, run, initial, build.proposal(proposed_type))
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == (
        "Cannot transition flows that are cancelling to a state other than Cancelled."
    )


def test_cancelling_to_cancelled_is_accepted(build):
    initial = build.state(S.CANCELLING)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.CANCELLED))
    assert (decision.status, decision.state.type) == (ACCEPT, S.CANCELLED)


# ---- 5. BypassCancellingFlowRunsWithNoInfra


def test_scheduled_run_without_infrastructure_is_cancelled_at_once(build):
    initial = build.state(S.SCHEDULED)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.CANCELLING))
    assert decision.status is REJECT
    assert (decision.state.type, decision.state.name) == (S.CANCELLED, "Cancelled")
    assert decision.reason == "Scheduled flow run has no infrastructure to terminate."
    assert (run.state_type, run.end_time) == (S.CANCELLED, decision.state.timestamp)


def test_resuming_run_is_cancelled_at_once_even_with_infrastructure(build):
    initial = build.state(S.SCHEDULED, "Resuming")
    run = build.flow_run(initial, infrastructure_pid="pid-1")
    decision = set_state(build, run, initial, build.proposal(S.CANCELLING))
    assert (decision.status, decision.state.type) == (REJECT, S.CANCELLED)
    assert decision.reason == "Scheduled flow run has no infrastructure to terminate."


def test_scheduled_run_with_infrastructure_goes_to_cancelling(build):
    initial = build.state(S.SCHEDULED)
    run = build.flow_run(initial, infrastructure_pid="pid-1")
    decision = set_state(build, run, initial, build.proposal(S.CANCELLING))
    assert (decision.status, decision.state.type) == (ACCEPT, S.CANCELLING)


def test_suspended_run_is_cancelled_at_once(build):
    initial = build.state(S.PAUSED, "Suspended", pause_reschedule=True)
    run = build.flow_run(initial, deployment_id="d", infrastructure_pid="pid-1")
    decision = set_state(build, run, initial, build.proposal(S.CANCELLING))
    assert (decision.status, decision.state.type) == (REJECT, S.CANCELLED)
    assert decision.reason == "Suspended flow run has no infrastructure to terminate."


def test_bypass_cancelling_also_applies_when_forced(build):
    initial = build.state(S.SCHEDULED)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.CANCELLING), FlowPolicy.MINIMAL)
    assert (decision.status, decision.state.type) == (REJECT, S.CANCELLED)


# ---- 6. PreventPendingTransitions


@pytest.mark.parametrize("initial_type", [S.PENDING, S.CANCELLED, S.RUNNING])
def test_pending_cannot_be_entered_twice(build, initial_type):
    initial = build.state(initial_type)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.PENDING))
    assert (decision.status, decision.state) == (ABORT, None)
    assert decision.reason == (
        f"This run is in a {initial_type.value} state and cannot transition to a PENDING state."
    )


def test_pending_may_be_renamed_and_keeps_its_scheduled_time(build):
    initial = build.state(
        S.PENDING, scheduled_time=build.earlier, deployment_concurrency_lease_id="l"
    )
    decision = set_state(
        build, build.flow_run(initial), initial, build.proposal(S.PENDING, "Submitting")
    )
    assert (decision.status, decision.state.name) == (ACCEPT, "Submitting")
    assert decision.state.details.scheduled_time == build.earlier
    assert decision.state.details.deployment_concurrency_lease_id == "l"


def test_renamed_pending_cannot_go_back_to_pending(build):
    initial = build.state(S.PENDING, "Submitting")
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.PENDING))
    assert decision.status is ABORT


# ---- 10. EnsureOnlyScheduledFlowsMarkedLate


def test_scheduled_run_can_be_marked_late(build):
    initial = build.state(S.SCHEDULED, scheduled_time=build.earlier)
    run = build.flow_run(initial)
    proposed = build.proposal(S.SCHEDULED, "Late", scheduled_time=build.earlier)
    decision = set_state(build, run, initial, proposed, FlowPolicy.MARK_LATE)
    assert (decision.status, decision.state.name) == (ACCEPT, "Late")
    assert (run.state_name, run.next_scheduled_start_time) == ("Late", build.earlier)


def test_late_run_is_not_marked_late_again(build):
    initial = build.state(S.SCHEDULED, "Late")
    run = build.flow_run(initial)
    decision = set_state(
        build, run, initial, build.proposal(S.SCHEDULED, "Late"), FlowPolicy.MARK_LATE
    )
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "This flow run is already marked late."


@pytest.mark.parametrize("initial_type", [S.RUNNING, S.PENDING, S.PAUSED, S.COMPLETED])
def test_only_scheduled_runs_are_marked_late(build, initial_type):
    initial = build.state(initial_type)
    run = build.flow_run(initial)
    decision = set_state(
        build, run, initial, build.proposal(S.SCHEDULED, "Late"), FlowPolicy.MARK_LATE
    )
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "Only scheduled flows can be marked late."


def test_late_for_a_run_without_state_is_accepted(build):
    decision = set_state(build, build.flow_run(), None, build.proposal(S.SCHEDULED, "Late"))
    assert (decision.status, decision.state.name) == (ACCEPT, "Late")


def test_rescheduling_under_another_name_is_not_a_late_check(build):
    initial = build.state(S.SCHEDULED, "Late")
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.SCHEDULED))
    assert decision.status is ACCEPT


# ---- 11. HandlePausingFlows


def test_pausing_a_running_flow_records_its_pause_key(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.PAUSED, pause_key="k1"))
    assert (decision.status, decision.state.type) == (ACCEPT, S.PAUSED)
    assert run.empirical_policy.pause_keys == ["k1"]


def test_pause_without_key_gets_a_generated_one(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.PAUSED))
    assert decision.status is ACCEPT
    assert len(run.empirical_policy.pause_keys) == 1
    assert len(run.empirical_policy.pause_keys[0]) == 36  # a UUID string


def test_a_pause_key_fires_once(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, policy={"pause_keys": ["k1"]})
    decision = set_state(build, run, initial, build.proposal(S.PAUSED, pause_key="k1"))
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "This pause has already fired."


def test_suspend_messages_use_the_verb_suspend(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, deployment_id="d", policy={"pause_keys": ["k1"]})
    proposed = build.proposal(S.PAUSED, "Suspended", pause_key="k1", pause_reschedule=True)
    decision = set_state(build, run, initial, proposed)
    assert decision.reason == "This suspend has already fired."


def test_pausing_a_run_without_state_aborts(build):
    decision = set_state(build, build.flow_run(), None, build.proposal(S.PAUSED))
    assert (decision.status, decision.reason) == (ABORT, "Cannot pause flows with no state.")


@pytest.mark.parametrize("initial_type", [S.SCHEDULED, S.PENDING, S.PAUSED])
def test_only_running_flows_pause(build, initial_type):
    initial = build.state(initial_type)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.PAUSED, pause_key="k1"))
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "Cannot pause flows that are not currently running."
    assert run.empirical_policy.pause_keys == []


def test_subflows_cannot_suspend(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, deployment_id="d", parent_task_run_id="task-1")
    proposed = build.proposal(S.PAUSED, "Suspended", pause_reschedule=True, pause_key="k")
    decision = set_state(build, run, initial, proposed)
    assert (decision.status, decision.reason) == (ABORT, "Cannot suspend subflows.")
    assert run.empirical_policy.pause_keys == []


def test_suspending_needs_a_deployment(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial)
    proposed = build.proposal(S.PAUSED, "Suspended", pause_reschedule=True)
    decision = set_state(build, run, initial, proposed)
    assert (decision.status, decision.reason) == (
        ABORT,
        "Cannot suspend flows without a deployment.",
    )


def test_suspending_with_a_deployment_is_accepted(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, deployment_id="d")
    proposed = build.proposal(S.PAUSED, "Suspended", pause_reschedule=True, pause_key="k")
    decision = set_state(build, run, initial, proposed)
    assert (decision.status, decision.state.name) == (ACCEPT, "Suspended")
    assert run.empirical_policy.pause_keys == ["k"]


# ---- 12. HandleResumingPausedFlows


@pytest.mark.parametrize("proposed_type", [S.PENDING, S.CANCELLING])
def test_paused_runs_only_resume_or_finish(build, proposed_type):
    initial = build.state(S.PAUSED)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(proposed_type))
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == (
        f"This run cannot transition to the {proposed_type.value} state from the PAUSED state."
    )


def test_resuming_sets_the_resuming_indicator(build):
    initial = build.state(S.PAUSED)
    run = build.flow_run(initial, run_count=1)
    decision = set_state(build, run, initial, build.proposal(S.RUNNING))
    assert decision.status is ACCEPT
    assert run.empirical_policy.resuming is True


def test_suspended_run_cannot_be_rescheduled_without_deployment(build):
    initial = build.state(S.PAUSED, "Suspended", pause_reschedule=True)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.SCHEDULED, "Resuming"))
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "Cannot reschedule a resuming flow run without a deployment."
    assert run.empirical_policy.resuming is False


def test_expired_pause_fails_the_run(build):
    initial = build.state(S.PAUSED, pause_timeout=build.now - 1)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.RUNNING))
    assert decision.status is REJECT
    assert (decision.state.type, decision.state.name) == (S.FAILED, "Failed")
    assert decision.state.message == "The flow was running and never resumed."
    assert decision.reason == "The flow run pause has timed out and can no longer resume."
    # the rule fizzled: no resuming indicator, but the FAILED state got its bookkeeping
    assert run.empirical_policy.resuming is False
    assert (run.state_type, run.end_time) == (S.FAILED, decision.state.timestamp)


def test_unexpired_pause_resumes(build):
    initial = build.state(S.PAUSED, pause_timeout=build.now + build.second)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.RUNNING))
    assert decision.status is ACCEPT


# ---- 13. CopyScheduledTime


def test_pending_inherits_the_scheduled_time(build):
    initial = build.state(S.SCHEDULED, scheduled_time=build.earlier)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.PENDING))
    assert decision.state.details.scheduled_time == build.earlier


def test_pending_keeps_its_own_scheduled_time(build):
    initial = build.state(S.SCHEDULED, scheduled_time=build.earlier)
    proposed = build.proposal(S.PENDING, scheduled_time=build.now)
    decision = set_state(build, build.flow_run(initial), initial, proposed)
    assert decision.state.details.scheduled_time == build.now


# ---- 14. WaitForScheduledTime


@pytest.mark.parametrize("initial_type", [S.SCHEDULED, S.PENDING])
def test_running_before_the_scheduled_time_waits(build, initial_type):
    initial = build.state(initial_type, scheduled_time=build.now + 30 * build.second + 400_000)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.RUNNING))
    assert (decision.status, decision.state) == (WAIT, None)
    assert (decision.delay_seconds, decision.reason) == (30, "Scheduled time is in the future")
    assert run.run_count == 0


def test_less_than_half_a_second_early_runs(build):
    initial = build.state(S.SCHEDULED, scheduled_time=build.now + 400_000)
    decision = set_state(build, build.flow_run(initial), initial, build.proposal(S.RUNNING))
    assert decision.status is ACCEPT


# ---- 15. RetryFailedFlows


def test_failed_attempt_with_retries_left_awaits_retry(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(
        initial,
        run_count=1,
        policy={"retries": 2, "retry_delay": 10, "pause_keys": ["k"], "resuming": True},
    )
    proposed = build.proposal(S.FAILED, message="boom", data={"type": "reference", "k": 1})
    decision = set_state(build, run, initial, proposed)
    assert (decision.status, decision.reason) == (REJECT, "Retrying")
    retry = decision.state
    assert (retry.type, retry.name, retry.message) == (S.SCHEDULED, "AwaitingRetry", "boom")
    assert retry.data == {"type": "reference", "k": 1}
    assert retry.details.scheduled_time == build.now + 10 * build.second
    policy = run.empirical_policy
    assert (policy.retry_type, policy.pause_keys, policy.resuming) == ("in_process", [], False)
    assert (run.state_name, run.next_scheduled_start_time) == (
        "AwaitingRetry",
        build.now + 10 * build.second,
    )
    assert run.end_time is None


def test_exhausted_retries_accept_the_failure(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, run_count=3, policy={"retries": 2, "retry_type": "in_process"})
    decision = set_state(build, run, initial, build.proposal(S.FAILED))
    assert (decision.status, decision.state.type) == (ACCEPT, S.FAILED)
    assert run.empirical_policy.retry_type is None


def test_no_retries_accept_the_failure(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(initial, run_count=1)
    decision = set_state(build, run, initial, build.proposal(S.FAILED))
    assert decision.status is ACCEPT


def test_deprecated_max_retries_and_delay_are_honoured(build):
    initial = build.state(S.RUNNING)
    run = build.flow_run(
        initial, run_count=1, policy={"max_retries": 1, "retry_delay_seconds": 2.5}
    )
    decision = set_state(build, run, initial, build.proposal(S.FAILED))
    assert (decision.status, decision.state.name) == (REJECT, "AwaitingRetry")
    assert decision.state.details.scheduled_time == build.now + 2_500_000


# ---- MinimalFlowPolicy: PreventResultDataLoss


def test_forced_transition_cannot_drop_a_persisted_result(build):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    proposed = build.proposal(S.COMPLETED, data=UNPERSISTED)
    decision = set_state(build, build.flow_run(initial), initial, proposed, FlowPolicy.MINIMAL)
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason.startswith("Cannot overwrite a COMPLETED state")


def test_forced_transition_skips_the_core_rules(build):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    run = build.flow_run(initial)
    decision = set_state(build, run, initial, build.proposal(S.PAUSED), FlowPolicy.MINIMAL)
    assert (decision.status, decision.state.type) == (ACCEPT, S.PAUSED)
