"""Global transforms: the run bookkeeping applied to every transition that still writes a state.

They run in the order listed in FLOW_TRANSFORMS / TASK_TRANSFORMS, forced or not, on the final
proposal (e.g. the AwaitingRetry state that replaced a FAILED proposal), and never when the
proposal was nullified (REJECT without a state, WAIT, ABORT).
"""

from __future__ import annotations

from .engine import Context
from .records import TERMINAL_STATES, FlowRunRecord, StateType, TaskRunRecord
from .states import fresh_copy


def ensure_unique_timestamp(ctx: Context) -> None:
    # Monotonic per run (not "unique among all states"): replicas with slightly different clocks
    # still produce strictly increasing timestamps for one run.
    last = ctx.run.state_timestamp
    if last is not None and ctx.proposed.timestamp <= last:
        ctx.proposed.timestamp = last + 1


def set_run_state(ctx: Context) -> None:
    """SetRunStateType / SetRunStateName / SetRunStateTimestamp (and the current state id)."""
    run, state = ctx.run, ctx.proposed
    run.state_id, run.state_type = state.id, state.type
    run.state_name, run.state_timestamp = state.name, state.timestamp


def set_start_time(ctx: Context) -> None:
    if ctx.proposed.type is StateType.RUNNING and ctx.run.start_time is None:
        ctx.run.start_time = ctx.proposed.timestamp


def set_end_time(ctx: Context) -> None:
    run, proposed = ctx.run, ctx.proposed
    leaving_terminal = ctx.initial is not None and ctx.initial.type in TERMINAL_STATES
    if proposed.type not in TERMINAL_STATES:
        if leaving_terminal:
            run.end_time = None
    elif run.end_time is None:  # terminal -> terminal keeps the first end time
        run.end_time = proposed.timestamp
        if run.start_time is None:  # never ran: it started and ended at once
            run.start_time = proposed.timestamp


def increment_run_time(ctx: Context) -> None:
    if ctx.initial is not None and ctx.initial.type is StateType.RUNNING:
        ctx.run.total_run_time += ctx.proposed.timestamp - ctx.initial.timestamp


def set_expected_start_time(ctx: Context) -> None:
    run, state = ctx.run, ctx.proposed
    if run.expected_start_time is None:
        scheduled = state.details.scheduled_time if state.type is StateType.SCHEDULED else None
        run.expected_start_time = scheduled if scheduled is not None else state.timestamp


def set_next_scheduled_start_time(ctx: Context) -> None:
    if ctx.initial is not None and ctx.initial.type is StateType.SCHEDULED:
        ctx.run.next_scheduled_start_time = None
    if ctx.proposed.type is StateType.SCHEDULED:
        ctx.run.next_scheduled_start_time = ctx.proposed.details.scheduled_time


COMMON_TRANSFORMS = (
    ensure_unique_timestamp,
    set_run_state,
    set_start_time,
    set_end_time,
    increment_run_time,
    set_expected_start_time,
    set_next_scheduled_start_time,
)


# ---- flow runs


def update_flow_state_details(ctx: Context[FlowRunRecord]) -> None:
    ctx.proposed.details.flow_run_id = ctx.run.id


def update_subflow_state_details(ctx: Context[FlowRunRecord]) -> None:
    if ctx.run.parent_task_run_id is not None:
        ctx.proposed.details.task_run_id = ctx.run.parent_task_run_id


def increment_flow_run_count(ctx: Context[FlowRunRecord]) -> None:
    # A run coming back from a pause re-enters RUNNING without starting a new attempt.
    if ctx.proposed.type is StateType.RUNNING and not ctx.run.empirical_policy.resuming:
        ctx.run.run_count += 1


def remove_resuming_indicator(ctx: Context[FlowRunRecord]) -> None:
    if ctx.proposed.type is StateType.RUNNING or ctx.proposed.type in TERMINAL_STATES:
        ctx.run.empirical_policy.resuming = False


def update_subflow_parent_task(ctx: Context[FlowRunRecord]) -> None:
    """A subflow's parent task mirrors the subflow's state (storage force-sets this copy).

    Prefect runs this as a global after-hook; no rule's after-hook changes the state, so running it
    last among the transforms yields the same copy.
    """
    run, state = ctx.run, ctx.proposed
    if run.parent_task_run_id is None:
        return
    copy = fresh_copy(state, state.timestamp)
    copy.details.child_flow_run_id = run.id
    copy.details.task_run_id = run.parent_task_run_id
    copy.details.flow_run_id = None  # the task run's own orchestration fills in its flow run
    ctx.parent_task_state = copy


FLOW_TRANSFORMS = (
    *COMMON_TRANSFORMS,
    update_flow_state_details,
    update_subflow_state_details,
    increment_flow_run_count,
    remove_resuming_indicator,
    update_subflow_parent_task,
)


# ---- task runs


def update_task_state_details(ctx: Context[TaskRunRecord]) -> None:
    ctx.proposed.details.task_run_id = ctx.run.id
    ctx.proposed.details.flow_run_id = ctx.run.flow_run_id


def increment_task_run_count(ctx: Context[TaskRunRecord]) -> None:
    if ctx.proposed.type is StateType.RUNNING:
        ctx.run.run_count += 1


TASK_TRANSFORMS = (*COMMON_TRANSFORMS, update_task_state_details, increment_task_run_count)
