"""Task-run rules (§5.5) and the global task bookkeeping."""

import pytest

from flowrpc.server.orchestration import TaskPolicy, orchestrate_task_run
from flowrpc.server.orchestration import tasks as task_module
from flowrpc.server.orchestration.records import (
    MAX_RETRY_DELAY_SECONDS,
    SetStateStatus,
    StateType,
)

S = StateType
ACCEPT, REJECT, WAIT, ABORT = (
    SetStateStatus.ACCEPT,
    SetStateStatus.REJECT,
    SetStateStatus.WAIT,
    SetStateStatus.ABORT,
)
PERSISTED = {"type": "reference", "storage_key": "/results/abc"}


@pytest.fixture
def flow(build):
    """A running flow run on its first attempt."""
    return build.flow_run(build.state(S.RUNNING), run_count=1)


def task_in(build, flow, initial=None, **fields):
    fields.setdefault("flow_run_run_count", flow.run_count)
    return build.task_run(initial, flow_run_id=flow.id, **fields)


def set_state(build, task_run, initial, proposed, flow=None, cached=None, policy=TaskPolicy.CORE):
    return orchestrate_task_run(
        task_run,
        initial,
        proposed,
        policy=policy,
        now=build.now,
        flow_run=flow,
        cached_state=cached,
    )


# ---- CacheRetrieval


def test_cache_hit_completes_from_the_cache(build, flow):
    initial = build.state(S.PENDING)
    task = task_in(build, flow, initial)
    cached = build.state(S.COMPLETED, data=PERSISTED, message="from before", cache_key="k")
    decision = set_state(
        build, task, initial, build.proposal(S.RUNNING, cache_key="k"), flow, cached
    )
    assert (decision.status, decision.reason) == (REJECT, "Retrieved state from cache")
    state = decision.state
    assert (state.type, state.name, state.data, state.message) == (
        S.COMPLETED,
        "Cached",
        PERSISTED,
        "from before",
    )
    assert state.id != cached.id and state.timestamp == build.now
    assert (state.details.task_run_id, state.details.flow_run_id) == (task.id, flow.id)
    assert (task.state_name, task.run_count) == ("Cached", 0)
    assert decision.cache_insert is None  # a cache hit is not inserted again


def test_refresh_cache_ignores_the_cache(build, flow):
    initial = build.state(S.PENDING)
    task = task_in(build, flow, initial)
    cached = build.state(S.COMPLETED, cache_key="k")
    proposed = build.proposal(S.RUNNING, cache_key="k", refresh_cache=True)
    decision = set_state(build, task, initial, proposed, flow, cached)
    assert (decision.status, decision.state.type) == (ACCEPT, S.RUNNING)


def test_no_cache_key_no_cache_lookup(build, flow):
    initial = build.state(S.PENDING)
    task = task_in(build, flow, initial)
    decision = set_state(
        build, task, initial, build.proposal(S.RUNNING), flow, build.state(S.COMPLETED)
    )
    assert (decision.status, decision.state.type) == (ACCEPT, S.RUNNING)


# ---- HandleTaskTerminalStateTransitions


@pytest.mark.parametrize("terminal", [S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED])
@pytest.mark.parametrize("proposed_type", [S.CANCELLING, S.PAUSED, S.CRASHED])
def test_finished_tasks_are_not_cancelled_paused_or_crashed(build, flow, terminal, proposed_type):
    initial = build.state(terminal)
    task = task_in(build, flow, initial)
    decision = set_state(build, task, initial, build.proposal(proposed_type), flow)
    assert (decision.status, decision.state) == (ABORT, None)
    assert decision.reason == f"Run is already {terminal.value}."


@pytest.mark.parametrize("proposed_type", [S.RUNNING, S.COMPLETED, S.FAILED])
def test_completed_task_with_persisted_result_stays_completed(build, flow, proposed_type):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    task = task_in(build, flow, initial, run_count=1)
    decision = set_state(build, task, initial, build.proposal(proposed_type), flow)
    assert (decision.status, decision.state) == (REJECT, None)
    assert decision.reason == "This run is already completed."
    assert task.run_count == 1


def test_rerunning_a_finished_task_resets_its_run_count(build, flow):
    initial = build.state(S.FAILED)
    task = task_in(build, flow, initial, run_count=3, end_time=build.earlier)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert (decision.status, decision.state.name) == (ACCEPT, "Running")
    assert (task.run_count, task.end_time) == (1, None)


def test_task_rerun_because_its_flow_retries_is_named_retrying(build):
    flow = build.flow_run(build.state(S.RUNNING), run_count=2)
    initial = build.state(S.FAILED)
    task = build.task_run(initial, flow_run_id=flow.id, run_count=2, flow_run_run_count=1)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert (decision.status, decision.state.name) == (ACCEPT, "Retrying")
    assert (task.run_count, task.flow_run_run_count) == (1, 2)


def test_run_count_reset_is_undone_when_the_transition_is_aborted(build):
    paused_flow = build.flow_run(build.state(S.SCHEDULED))
    initial = build.state(S.FAILED)
    task = build.task_run(initial, flow_run_id=paused_flow.id, run_count=3)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), paused_flow)
    assert decision.status is ABORT
    assert task.run_count == 3


# ---- PreventRunningTasksFromStoppedFlows


def test_task_of_a_flow_without_state_cannot_run(build):
    flow = build.flow_run()
    task = build.task_run(flow_run_id=flow.id)
    decision = set_state(build, task, None, build.proposal(S.RUNNING), flow)
    assert (decision.status, decision.state) == (ABORT, None)
    assert decision.reason == "The enclosing flow must be running to begin task execution."


@pytest.mark.parametrize("flow_type", [S.PENDING, S.SCHEDULED, S.COMPLETED, S.CANCELLING])
def test_task_of_a_stopped_flow_cannot_run(build, flow_type):
    flow = build.flow_run(build.state(flow_type))
    initial = build.state(S.PENDING)
    task = build.task_run(initial, flow_run_id=flow.id)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert (decision.status, decision.reason) == (
        ABORT,
        "The enclosing flow must be running to begin task execution.",
    )


def test_task_of_a_paused_flow_is_not_ready(build):
    flow = build.flow_run(build.state(S.PAUSED))
    initial = build.state(S.PENDING)
    task = build.task_run(initial, flow_run_id=flow.id)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert decision.status is REJECT
    assert (decision.state.type, decision.state.name) == (S.PAUSED, "NotReady")
    assert decision.reason == (
        f"The flow is paused, new tasks can execute after resuming flow run: {flow.id}."
    )
    assert (task.state_name, task.run_count) == ("NotReady", 0)


def test_task_without_flow_run_may_run(build):
    task = build.task_run(flow_run_id=None)
    decision = set_state(build, task, None, build.proposal(S.RUNNING))
    assert (decision.status, decision.state.details.flow_run_id) == (ACCEPT, None)
    assert task.run_count == 1


# ---- CopyScheduledTime / WaitForScheduledTime


def test_task_waits_for_its_scheduled_time(build, flow):
    initial = build.state(S.SCHEDULED, scheduled_time=build.now + 12 * build.second)
    task = task_in(build, flow, initial)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert (decision.status, decision.delay_seconds) == (WAIT, 12)
    assert decision.reason == "Scheduled time is in the future"


def test_pending_task_inherits_its_scheduled_time(build, flow):
    initial = build.state(S.SCHEDULED, scheduled_time=build.earlier)
    task = task_in(build, flow, initial)
    decision = set_state(build, task, initial, build.proposal(S.PENDING), flow)
    assert decision.state.details.scheduled_time == build.earlier


# ---- RetryFailedTasks


def _fail(build, flow, policy, run_count=1, **proposal_details):
    initial = build.state(S.RUNNING)
    task = task_in(build, flow, initial, run_count=run_count, policy=policy)
    proposed = build.proposal(S.FAILED, message="boom", **proposal_details)
    return task, set_state(build, task, initial, proposed, flow)


def test_failed_task_with_retries_left_awaits_retry(build, flow):
    task, decision = _fail(build, flow, {"retries": 2, "retry_delay": 4})
    assert (decision.status, decision.reason) == (REJECT, "Retrying")
    retry = decision.state
    assert (retry.type, retry.name, retry.message) == (S.SCHEDULED, "AwaitingRetry", "boom")
    assert retry.details.scheduled_time == build.now + 4 * build.second
    assert (task.state_name, task.next_scheduled_start_time) == (
        "AwaitingRetry",
        build.now + 4 * build.second,
    )


@pytest.mark.parametrize("run_count, seconds", [(1, 1), (2, 5), (3, 10), (7, 10)])
def test_retry_delay_list_is_indexed_by_attempt(build, flow, run_count, seconds):
    _, decision = _fail(build, flow, {"retries": 9, "retry_delay": [1, 5, 10]}, run_count)
    assert decision.state.details.scheduled_time == build.now + seconds * build.second


def test_retry_delay_jitter_spreads_the_delay(build, flow, monkeypatch):
    monkeypatch.setattr(task_module.random, "uniform", lambda low, high: high)
    _, decision = _fail(build, flow, {"retries": 1, "retry_delay": 10, "retry_jitter_factor": 0.5})
    assert decision.state.details.scheduled_time == build.now + 15 * build.second


def test_retry_delay_jitter_never_goes_negative(build, flow, monkeypatch):
    monkeypatch.setattr(task_module.random, "uniform", lambda low, high: low)
    _, decision = _fail(build, flow, {"retries": 1, "retry_delay": 10, "retry_jitter_factor": 3})
    assert decision.state.details.scheduled_time == build.now


def test_retry_delay_jitter_stays_within_bounds(build, flow):
    for _ in range(50):
        policy = {"retries": 1, "retry_delay": 10, "retry_jitter_factor": 0.2}
        _, decision = _fail(build, flow, policy)
        delay = decision.state.details.scheduled_time - build.now
        assert 8 * build.second <= delay <= 12 * build.second


@pytest.mark.parametrize(
    ("policy", "seconds"),
    [
        ({"retries": 1, "retry_delay_seconds": 1e300}, MAX_RETRY_DELAY_SECONDS),
        ({"retries": 1, "retry_delay_seconds": float("inf")}, MAX_RETRY_DELAY_SECONDS),
        ({"retries": 1, "retry_delay_seconds": float("nan")}, 0),
        ({"retries": 1, "retry_delay": [2**40]}, MAX_RETRY_DELAY_SECONDS),
        ({"retries": 1, "retry_delay": 10, "retry_jitter_factor": 1e308}, 10 * 11),
    ],
    ids=["huge", "infinite", "nan", "huge-list", "huge-jitter"],
)
def test_stored_policies_beyond_the_bounds_are_clamped(build, flow, monkeypatch, policy, seconds):
    monkeypatch.setattr(task_module.random, "uniform", lambda low, high: high)
    _, decision = _fail(build, flow, policy)
    assert decision.state.details.scheduled_time == build.now + seconds * build.second


def test_non_retriable_failure_is_accepted(build, flow):
    _, decision = _fail(build, flow, {"retries": 3}, retriable=False)
    assert (decision.status, decision.state.type) == (ACCEPT, S.FAILED)


def test_exhausted_task_retries_accept_the_failure(build, flow):
    _, decision = _fail(build, flow, {"retries": 2}, run_count=3)
    assert (decision.status, decision.state.type) == (ACCEPT, S.FAILED)


def test_deprecated_task_retry_fields_are_honoured(build, flow):
    _, decision = _fail(build, flow, {"max_retries": 1, "retry_delay_seconds": 3})
    assert decision.state.name == "AwaitingRetry"
    assert decision.state.details.scheduled_time == build.now + 3 * build.second


# ---- RenameReruns


def test_retry_after_awaiting_retry_is_named_retrying(build, flow):
    initial = build.state(S.SCHEDULED, "AwaitingRetry")
    task = task_in(build, flow, initial, run_count=1)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert (decision.state.name, task.run_count) == ("Retrying", 2)


def test_other_reruns_are_named_rerunning(build, flow):
    initial = build.state(S.PENDING)
    task = task_in(build, flow, initial, run_count=1)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert decision.state.name == "Rerunning"


def test_first_run_keeps_its_name(build, flow):
    initial = build.state(S.PENDING)
    task = task_in(build, flow, initial)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert (decision.state.name, task.run_count) == ("Running", 1)


# ---- UpdateFlowRunTrackerOnTasks


def test_running_task_remembers_its_flow_attempt(build):
    flow = build.flow_run(build.state(S.RUNNING), run_count=3)
    initial = build.state(S.PENDING)
    task = build.task_run(initial, flow_run_id=flow.id, flow_run_run_count=1)
    set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert task.flow_run_run_count == 3


# ---- CacheInsertion


def test_completed_state_with_cache_key_is_inserted(build, flow):
    initial = build.state(S.RUNNING)
    task = task_in(build, flow, initial)
    expiry = build.now + 3600 * build.second
    proposed = build.proposal(S.COMPLETED, cache_key="k", cache_expiration=expiry)
    decision = set_state(build, task, initial, proposed, flow)
    assert (decision.status, decision.cache_insert) == (ACCEPT, ("k", expiry))


def test_completed_state_without_cache_key_is_not_inserted(build, flow):
    initial = build.state(S.RUNNING)
    task = task_in(build, flow, initial)
    decision = set_state(build, task, initial, build.proposal(S.COMPLETED), flow)
    assert decision.cache_insert is None


# ---- global task bookkeeping and MinimalTaskPolicy


def test_every_running_counts_for_tasks(build, flow):
    initial = build.state(S.RUNNING)
    task = task_in(build, flow, initial, run_count=1)
    decision = set_state(build, task, initial, build.proposal(S.RUNNING), flow)
    assert (decision.status, decision.state.name, task.run_count) == (ACCEPT, "Rerunning", 2)


def test_task_bookkeeping(build, flow):
    initial = build.state(S.RUNNING, ts=build.now)
    task = task_in(build, flow, initial, run_count=1, start_time=build.now)
    decision = set_state(build, task, initial, build.proposal(S.COMPLETED), flow)
    state = decision.state
    assert state.timestamp == build.now + 1  # monotonic per run, as for flows
    assert (state.details.task_run_id, state.details.flow_run_id) == (task.id, flow.id)
    assert (task.state_id, task.state_type, task.state_timestamp) == (
        state.id,
        S.COMPLETED,
        build.now + 1,
    )
    assert (task.end_time, task.total_run_time) == (build.now + 1, 1)


def test_forced_parent_task_state_keeps_the_child_link(build, flow):
    """Storage force-sets a subflow's mirrored state on its parent task with MINIMAL."""
    initial = build.state(S.PENDING)
    task = task_in(build, flow, initial)
    mirror = build.proposal(S.RUNNING, child_flow_run_id="child", task_run_id=task.id)
    decision = set_state(build, task, initial, mirror, flow=None, policy=TaskPolicy.MINIMAL)
    assert decision.status is ACCEPT
    details = decision.state.details
    assert (details.child_flow_run_id, details.task_run_id, details.flow_run_id) == (
        "child",
        task.id,
        flow.id,
    )
    assert (task.run_count, task.start_time) == (1, build.now)


def test_forced_task_transition_skips_the_core_rules(build, flow):
    initial = build.state(S.COMPLETED, data=PERSISTED)
    task = task_in(build, flow, initial, run_count=1)
    decision = set_state(
        build, task, initial, build.proposal(S.CRASHED), flow, policy=TaskPolicy.MINIMAL
    )
    assert (decision.status, decision.state.type) == (ACCEPT, S.CRASHED)
