"""Task-run policies (prefect-semantics.md §5.5)."""

from __future__ import annotations

import enum
import random

from .bookkeeping import TASK_TRANSFORMS
from .engine import Context, Decision, Rule, run_policy
from .records import (
    MAX_RETRY_JITTER_FACTOR,
    TERMINAL_STATES,
    FlowRunRecord,
    State,
    StateType,
    TaskRunPolicy,
    TaskRunRecord,
)
from .shared_rules import (
    CopyScheduledTime,
    WaitForScheduledTime,
    effective_retries,
    effective_retry_delay,
    retry_time,
)
from .states import fresh_copy, has_persisted_result, new_state, private_copy

S = StateType
TaskContext = Context[TaskRunRecord]


class TaskPolicy(enum.Enum):
    CORE = "CORE"
    MINIMAL = "MINIMAL"  # force=true, and the parent task of a subflow


class CacheRetrieval(Rule):
    """A task about to run whose result is already cached completes from the cache instead."""

    TO = frozenset({S.RUNNING})

    def before(self, ctx: TaskContext) -> None:
        details = ctx.proposed.details
        if details.cache_key and not details.refresh_cache and ctx.cached_state is not None:
            cached = fresh_copy(ctx.cached_state, ctx.now, name="Cached")
            ctx.reject(cached, "Retrieved state from cache")


class HandleTaskTerminalStateTransitions(Rule):
    """A finished task may rerun (with its retries back) unless it completed with a persisted
    result; it is never paused, crashed or cancelled again."""

    FROM = TERMINAL_STATES

    def __init__(self) -> None:
        self.saved_run_count: int | None = None

    def before(self, ctx: TaskContext) -> None:
        run, initial, proposed = ctx.run, ctx.initial, ctx.proposed
        if proposed.type in (S.CANCELLING, S.PAUSED, S.CRASHED):
            ctx.abort(f"Run is already {initial.type.value}.")
            return
        if initial.type is S.COMPLETED and has_persisted_result(initial):
            ctx.reject(None, "This run is already completed.")
            return
        if proposed.type not in TERMINAL_STATES:
            self.saved_run_count, run.run_count = run.run_count, 0
        flow_run = ctx.flow_run
        if (
            proposed.type is S.RUNNING
            and flow_run is not None
            and run.flow_run_run_count < flow_run.run_count
        ):
            ctx.rename("Retrying")  # rerun because its flow is retrying

    def cleanup(self, ctx: TaskContext) -> None:
        if self.saved_run_count is not None:
            ctx.run.run_count = self.saved_run_count


class PreventRunningTasksFromStoppedFlows(Rule):
    """Tasks run only inside a running flow; in a paused flow they wait as NotReady.

    `flow_run` None means the task has no enclosing flow run (an autonomous task): no check.
    """

    TO = frozenset({S.RUNNING})

    def before(self, ctx: TaskContext) -> None:
        flow_run = ctx.flow_run
        if flow_run is None:
            return
        if flow_run.state_type is S.PAUSED:
            not_ready = new_state(S.PAUSED, ctx.now, name="NotReady")
            ctx.reject(
                not_ready,
                "The flow is paused, new tasks can execute after resuming flow run: "
                f"{flow_run.id}.",
            )
        elif flow_run.state_type is not S.RUNNING:
            ctx.abort("The enclosing flow must be running to begin task execution.")


class RetryFailedTasks(Rule):
    """A failed attempt with retries left (and not marked non-retriable) waits as AwaitingRetry."""

    FROM = frozenset({S.RUNNING})
    TO = frozenset({S.FAILED})

    def before(self, ctx: TaskContext) -> None:
        run, proposed = ctx.run, ctx.proposed
        retries = effective_retries(run.empirical_policy)
        if retries is None or run.run_count > retries or proposed.details.retriable is False:
            return
        delay = retry_delay_seconds(run.empirical_policy, run.run_count)
        retry = new_state(
            S.SCHEDULED,
            ctx.now,
            name="AwaitingRetry",
            message=proposed.message,
            data=proposed.data,
            scheduled_time=retry_time(ctx.now, delay),
        )
        ctx.reject(retry, "Retrying")


def retry_delay_seconds(policy: TaskRunPolicy, run_count: int) -> float:
    """The delay before retry number `run_count`: one entry per retry (the last one repeats),
    spread by +/- retry_jitter_factor so retrying tasks do not stampede together."""
    delay = effective_retry_delay(policy) or 0
    if isinstance(delay, list):
        delay = delay[max(0, min(run_count - 1, len(delay) - 1))] if delay else 0
    factor = policy.retry_jitter_factor
    if factor:
        factor = min(factor, MAX_RETRY_JITTER_FACTOR)  # a stored row may hold more
        delay = max(0.0, delay * (1 + random.uniform(-factor, factor)))
    return delay


class RenameReruns(Rule):
    """A task entering RUNNING again says why: Retrying after AwaitingRetry, else Rerunning."""

    TO = frozenset({S.RUNNING})

    def before(self, ctx: TaskContext) -> None:
        if ctx.initial is None or ctx.run.run_count == 0:
            return
        ctx.rename("Retrying" if ctx.initial.name == "AwaitingRetry" else "Rerunning")


class UpdateFlowRunTrackerOnTasks(Rule):
    """Remember which flow attempt ran the task (HandleTaskTerminalStateTransitions reads it)."""

    TO = frozenset({S.RUNNING})

    def after(self, ctx: TaskContext) -> None:
        if ctx.flow_run is not None:
            ctx.run.flow_run_run_count = ctx.flow_run.run_count


class CacheInsertion(Rule):
    """A completed state with a cache key becomes the cache entry for that key."""

    TO = frozenset({S.COMPLETED})

    def after(self, ctx: TaskContext) -> None:
        details = ctx.proposed.details
        if details.cache_key:
            ctx.cache_insert = (details.cache_key, details.cache_expiration)


POLICIES: dict[TaskPolicy, tuple[type[Rule], ...]] = {
    TaskPolicy.CORE: (
        CacheRetrieval,
        HandleTaskTerminalStateTransitions,
        PreventRunningTasksFromStoppedFlows,
        CopyScheduledTime,
        WaitForScheduledTime,
        RetryFailedTasks,
        RenameReruns,
        UpdateFlowRunTrackerOnTasks,
        CacheInsertion,
    ),
    TaskPolicy.MINIMAL: (),
}


def orchestrate_task_run(
    task_run: TaskRunRecord,
    initial: State | None,
    proposed: State,
    *,
    policy: TaskPolicy,
    now: int,
    flow_run: FlowRunRecord | None,
    cached_state: State | None,
) -> Decision:
    """Decide `initial -> proposed` for `task_run`; it receives all bookkeeping in place.

    `flow_run` is the enclosing flow run (None for autonomous tasks); `cached_state` a valid,
    unexpired COMPLETED state for the proposal's cache key, if storage found one.
    """
    ctx = Context(
        run=task_run,
        initial=initial,
        proposed=private_copy(proposed),
        now=now,
        flow_run=flow_run,
        cached_state=cached_state,
    )
    return run_policy(ctx, POLICIES[policy], TASK_TRANSFORMS)
