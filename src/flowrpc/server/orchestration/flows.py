"""Flow-run policies (prefect-semantics.md §5.3) and the resume proposal (§4)."""

from __future__ import annotations

import enum

from flowrpc.server.ids import new_id

from .bookkeeping import FLOW_TRANSFORMS
from .engine import ALL_TYPES, Context, Decision, Rule, run_policy
from .records import (
    TERMINAL_STATES,
    FlowRunPolicy,
    FlowRunRecord,
    SetStateStatus,
    State,
    StateType,
)
from .shared_rules import (
    CopyScheduledTime,
    WaitForScheduledTime,
    effective_retries,
    effective_retry_delay,
    retry_time,
)
from .states import has_persisted_result, new_state, private_copy

S = StateType
FlowContext = Context[FlowRunRecord]

RESULT_DATA_LOSS = (
    "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not."
)


class FlowPolicy(enum.Enum):
    CORE = "CORE"
    MINIMAL = "MINIMAL"  # force=true
    MARK_LATE = "MARK_LATE"  # the late-runs service


class PreserveDeploymentConcurrencyLeaseId(Rule):
    """The lease holding a deployment concurrency slot follows the run from state to state."""

    def before(self, ctx: FlowContext) -> None:
        if ctx.initial is None:
            return
        lease_id = ctx.initial.details.deployment_concurrency_lease_id
        if lease_id and not ctx.proposed.details.deployment_concurrency_lease_id:
            ctx.proposed.details.deployment_concurrency_lease_id = lease_id


class PreventDuplicateTransitions(Rule):
    """A client repeating a set_state call (same transition_id) must not move the run twice."""

    def before(self, ctx: FlowContext) -> None:
        if ctx.initial is None:
            return
        previous = ctx.initial.details.transition_id
        if previous is not None and previous == ctx.proposed.details.transition_id:
            ctx.reject(None, "This run has already made this state transition.")


class HandleFlowTerminalStateTransitions(Rule):
    """A finished run may be rerun or rescheduled, but never paused, crashed or cancelled again,
    and a persisted result is never thrown away."""

    FROM = TERMINAL_STATES

    def __init__(self) -> None:
        self.saved_policy: tuple[bool, list[str], str | None] | None = None

    def before(self, ctx: FlowContext) -> None:
        initial, proposed = ctx.initial, ctx.proposed
        if proposed.type in (S.CANCELLING, S.PAUSED, S.CRASHED):
            ctx.abort(f"Run is already in terminal state {initial.type.value}.")
            return
        if initial.type is S.COMPLETED and has_persisted_result(initial):
            if proposed.type not in TERMINAL_STATES:
                ctx.reject(None, "Run is already COMPLETED.")
                return
            if proposed.type is S.COMPLETED and not has_persisted_result(proposed):
                ctx.reject(None, RESULT_DATA_LOSS)
                return
        if proposed.type is S.SCHEDULED and ctx.run.deployment_id is None:
            ctx.abort("Cannot reschedule a run without an associated deployment.")
            return
        if proposed.type not in TERMINAL_STATES:
            self._reset_policy(ctx.run.empirical_policy, proposed.type)

    def _reset_policy(self, policy: FlowRunPolicy, proposed_type: StateType) -> None:
        # A rerun starts with a clean slate of pauses; run_count is kept for flows.
        self.saved_policy = (policy.resuming, policy.pause_keys, policy.retry_type)
        policy.resuming, policy.pause_keys = False, []
        policy.retry_type = "reschedule" if proposed_type is S.SCHEDULED else None

    def cleanup(self, ctx: FlowContext) -> None:
        if self.saved_policy is not None:
            policy = ctx.run.empirical_policy
            policy.resuming, policy.pause_keys, policy.retry_type = self.saved_policy


class EnforceCancellingToCancelledTransition(Rule):
    """Infrastructure teardown is in progress: the only way out is CANCELLED."""

    FROM = frozenset({S.CANCELLING})
    TO = ALL_TYPES - {S.CANCELLED}

    def before(self, ctx: FlowContext) -> None:
        ctx.reject(
            None, "Cannot transition flows that are cancelling to a state other than Cancelled."
        )


class BypassCancellingFlowRunsWithNoInfra(Rule):
    """Nothing runs yet (or any more) for these runs, so no worker would ever finish the
    cancellation: cancel them at once."""

    FROM = frozenset({S.SCHEDULED, S.PAUSED})
    TO = frozenset({S.CANCELLING})

    def before(self, ctx: FlowContext) -> None:
        initial = ctx.initial
        if (initial.type is S.SCHEDULED and not ctx.run.infrastructure_pid) or (
            initial.name == "Resuming"
        ):
            reason = "Scheduled flow run has no infrastructure to terminate."
        elif initial.type is S.PAUSED and initial.details.pause_reschedule:
            reason = "Suspended flow run has no infrastructure to terminate."
        else:
            return
        ctx.reject(new_state(S.CANCELLED, ctx.now), reason)


class PreventPendingTransitions(Rule):
    """PENDING means "claimed": only one worker may claim a run. Renaming a pending run
    (Pending -> Submitting) is the one exception."""

    FROM = frozenset({S.PENDING, S.CANCELLING, S.RUNNING, S.CANCELLED})
    TO = frozenset({S.PENDING})

    def before(self, ctx: FlowContext) -> None:
        initial, proposed = ctx.initial, ctx.proposed
        if (
            initial.type is S.PENDING
            and proposed.name != initial.name
            and proposed.name != "Pending"
        ):
            details = proposed.details
            if details.scheduled_time is None:
                details.scheduled_time = initial.details.scheduled_time
            if details.deployment_concurrency_lease_id is None:
                details.deployment_concurrency_lease_id = (
                    initial.details.deployment_concurrency_lease_id
                )
            return
        ctx.abort(
            f"This run is in a {initial.type.value} state and cannot transition to a PENDING state."
        )


class EnsureOnlyScheduledFlowsMarkedLate(Rule):
    """Only a scheduled run can be marked "Late", and only once."""

    TO = frozenset({S.SCHEDULED})

    def before(self, ctx: FlowContext) -> None:
        if ctx.proposed.name != "Late" or ctx.initial is None:
            return
        if ctx.initial.type is not S.SCHEDULED:
            ctx.reject(None, "Only scheduled flows can be marked late.")
        elif ctx.initial.name == "Late":
            ctx.reject(None, "This flow run is already marked late.")


class HandlePausingFlows(Rule):
    """Only a running flow can pause, each pause key fires once, and a suspended run (one that
    exits and is rescheduled on resume) needs a deployment to come back from."""

    TO = frozenset({S.PAUSED})

    def __init__(self) -> None:
        self.key: str | None = None

    def before(self, ctx: FlowContext) -> None:
        run, initial, details = ctx.run, ctx.initial, ctx.proposed.details
        verb = "suspend" if ctx.proposed.name == "Suspended" else "pause"
        if initial is None:
            ctx.abort(f"Cannot {verb} flows with no state.")
            return
        if initial.type is not S.RUNNING:
            ctx.reject(None, f"Cannot {verb} flows that are not currently running.")
            return
        self.key = details.pause_key if details.pause_key is not None else new_id()
        if self.key in run.empirical_policy.pause_keys:
            ctx.reject(None, f"This {verb} has already fired.")
            return
        if details.pause_reschedule:
            if run.parent_task_run_id is not None:
                ctx.abort(f"Cannot {verb} subflows.")
            elif run.deployment_id is None:
                ctx.abort(f"Cannot {verb} flows without a deployment.")

    def after(self, ctx: FlowContext) -> None:
        pause_keys = ctx.run.empirical_policy.pause_keys
        if self.key not in pause_keys:
            pause_keys.append(self.key)


class HandleResumingPausedFlows(Rule):
    """A paused run may resume (RUNNING, or SCHEDULED when suspended) or finish, unless its
    pause has timed out."""

    FROM = frozenset({S.PAUSED})

    def before(self, ctx: FlowContext) -> None:
        initial, proposed = ctx.initial, ctx.proposed
        if not (proposed.type in (S.RUNNING, S.SCHEDULED) or proposed.type in TERMINAL_STATES):
            ctx.reject(
                None,
                f"This run cannot transition to the {proposed.type.value} state "
                "from the PAUSED state.",
            )
            return
        if initial.details.pause_reschedule and ctx.run.deployment_id is None:
            ctx.reject(
                None,
                f"Cannot reschedule a {proposed.name.lower()} flow run without a deployment.",
            )
            return
        pause_timeout = initial.details.pause_timeout
        if pause_timeout is not None and pause_timeout < ctx.now:
            failed = new_state(
                S.FAILED,
                ctx.now,
                message=f"The flow was {proposed.name.lower()} and never resumed.",
            )
            ctx.reject(failed, "The flow run pause has timed out and can no longer resume.")

    def after(self, ctx: FlowContext) -> None:
        # Set after the global transforms ran, so this very transition still counted a RUNNING;
        # it suppresses the count of the next RUNNING (Suspended -> Resuming -> ... -> RUNNING).
        ctx.run.empirical_policy.resuming = True


class RetryFailedFlows(Rule):
    """A failed attempt with retries left is rescheduled as AwaitingRetry."""

    FROM = frozenset({S.RUNNING})
    TO = frozenset({S.FAILED})

    def before(self, ctx: FlowContext) -> None:
        run, proposed = ctx.run, ctx.proposed
        policy = run.empirical_policy
        retries = effective_retries(policy)
        if retries is None or run.run_count > retries:
            policy.retry_type = None  # leaves room for a later manual (reschedule) retry
            return
        policy.resuming, policy.pause_keys, policy.retry_type = False, [], "in_process"
        delay = effective_retry_delay(policy) or 0
        retry = new_state(
            S.SCHEDULED,
            ctx.now,
            name="AwaitingRetry",
            message=proposed.message,
            data=proposed.data,
            scheduled_time=retry_time(ctx.now, delay),
        )
        ctx.reject(retry, "Retrying")


class PreventResultDataLoss(Rule):
    """Even a forced transition may not replace a persisted result with none."""

    FROM = TERMINAL_STATES
    TO = TERMINAL_STATES

    def before(self, ctx: FlowContext) -> None:
        initial, proposed = ctx.initial, ctx.proposed
        if (
            initial.type is S.COMPLETED
            and proposed.type is S.COMPLETED
            and has_persisted_result(initial)
            and not has_persisted_result(proposed)
        ):
            ctx.reject(None, RESULT_DATA_LOSS)


POLICIES: dict[FlowPolicy, tuple[type[Rule], ...]] = {
    FlowPolicy.CORE: (
        PreserveDeploymentConcurrencyLeaseId,
        PreventDuplicateTransitions,
        HandleFlowTerminalStateTransitions,
        EnforceCancellingToCancelledTransition,
        BypassCancellingFlowRunsWithNoInfra,
        PreventPendingTransitions,
        EnsureOnlyScheduledFlowsMarkedLate,
        HandlePausingFlows,
        HandleResumingPausedFlows,
        CopyScheduledTime,
        WaitForScheduledTime,
        RetryFailedFlows,
    ),
    FlowPolicy.MINIMAL: (PreventResultDataLoss, BypassCancellingFlowRunsWithNoInfra),
    FlowPolicy.MARK_LATE: (EnsureOnlyScheduledFlowsMarkedLate,),
}


def orchestrate_flow_run(
    run: FlowRunRecord,
    initial: State | None,
    proposed: State,
    *,
    policy: FlowPolicy,
    now: int,
) -> Decision:
    """Decide `initial -> proposed` for `run`; `run` receives all bookkeeping in place."""
    ctx = Context(run=run, initial=initial, proposed=private_copy(proposed), now=now)
    return run_policy(ctx, POLICIES[policy], FLOW_TRANSFORMS)


def resume_proposal(run: FlowRunRecord, initial: State | None, now: int) -> State | Decision:
    """The state a /resume call proposes (then orchestrated with FlowPolicy.CORE), or an ABORT.

    A suspended run is proposed SCHEDULED "Resuming" even without a deployment: CORE then
    rejects it with Prefect's own reason ("Cannot reschedule a resuming flow run ...").
    """
    if initial is None or initial.type is not S.PAUSED:
        return Decision(
            SetStateStatus.ABORT, None, reason="Cannot resume a flow run that is not paused."
        )
    if initial.details.pause_reschedule:
        return new_state(S.SCHEDULED, now, name="Resuming", scheduled_time=now)
    return new_state(S.RUNNING, now)
