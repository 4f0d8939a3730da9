"""resume_proposal (§4 ResumeFlowRun) and what CoreFlowPolicy makes of its proposal."""

import pytest

from flowrpc.server.orchestration import (
    Decision,
    FlowPolicy,
    orchestrate_flow_run,
    resume_proposal,
)
from flowrpc.server.orchestration.records import SetStateStatus, State, StateType

S = StateType
NOT_PAUSED = "Cannot resume a flow run that is not paused."


def resume(build, run, initial):
    proposal = resume_proposal(run, initial, build.now)
    if isinstance(proposal, Decision):
        return proposal
    return orchestrate_flow_run(run, initial, proposal, policy=FlowPolicy.CORE, now=build.now)


def test_blocking_pause_resumes_running(build):
    initial = build.state(S.PAUSED)
    proposal = resume_proposal(build.flow_run(initial), initial, build.now)
    assert isinstance(proposal, State)
    assert (proposal.type, proposal.name, proposal.timestamp) == (S.RUNNING, "Running", build.now)


def test_suspended_run_is_rescheduled_as_resuming(build):
    initial = build.state(S.PAUSED, "Suspended", pause_reschedule=True)
    proposal = resume_proposal(build.flow_run(initial, deployment_id="d"), initial, build.now)
    assert (proposal.type, proposal.name) == (S.SCHEDULED, "Resuming")
    assert (proposal.timestamp, proposal.details.scheduled_time) == (build.now, build.now)


def test_run_without_state_cannot_resume(build):
    decision = resume_proposal(build.flow_run(), None, build.now)
    assert (decision.status, decision.state, decision.reason) == (
        SetStateStatus.ABORT,
        None,
        NOT_PAUSED,
    )


@pytest.mark.parametrize("state_type", [t for t in StateType if t is not S.PAUSED])
def test_only_paused_runs_resume(build, state_type):
    initial = build.state(state_type)
    decision = resume_proposal(build.flow_run(initial), initial, build.now)
    assert (decision.status, decision.reason) == (SetStateStatus.ABORT, NOT_PAUSED)


def test_blocking_resume_is_accepted_and_marks_resuming(build):
    initial = build.state(S.PAUSED)
    run = build.flow_run(initial, run_count=1)
    decision = resume(build, run, initial)
    assert (decision.status, decision.state.type) == (SetStateStatus.ACCEPT, S.RUNNING)
    assert (run.run_count, run.empirical_policy.resuming) == (2, True)


def test_suspended_resume_is_accepted_with_a_deployment(build):
    initial = build.state(S.PAUSED, "Suspended", pause_reschedule=True)
    run = build.flow_run(initial, deployment_id="d", run_count=1)
    decision = resume(build, run, initial)
    assert (decision.status, decision.state.name) == (SetStateStatus.ACCEPT, "Resuming")
    assert (run.state_name, run.next_scheduled_start_time) == ("Resuming", build.now)
    assert (run.run_count, run.empirical_policy.resuming) == (1, True)


def test_suspended_resume_without_deployment_is_rejected(build):
    initial = build.state(S.PAUSED, "Suspended", pause_reschedule=True)
    decision = resume(build, build.flow_run(initial), initial)
    assert (decision.status, decision.state) == (SetStateStatus.REJECT, None)
    assert decision.reason == "Cannot reschedule a resuming flow run without a deployment."


def test_timed_out_pause_fails_on_resume(build):
    initial = build.state(S.PAUSED, pause_timeout=build.now - build.second)
    run = build.flow_run(initial)
    decision = resume(build, run, initial)
    assert decision.status is SetStateStatus.REJECT
    assert (decision.state.type, decision.state.message) == (
        S.FAILED,
        "The flow was running and never resumed.",
    )
    assert decision.reason == "The flow run pause has timed out and can no longer resume."
    assert run.state_type is S.FAILED
