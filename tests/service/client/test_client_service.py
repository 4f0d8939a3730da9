"""Every client method through a real server, with the async and the sync client (the `client`
fixture runs each test once with each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import UUID, uuid4

import grpc
import pytest
from client_support import DEPLOYMENT_NAME, FLOW_NAME, Seed, collect

from flowrpc.client import (
    InvalidRequest,
    ObjectAlreadyExists,
    ObjectNotFound,
    ResourceExhausted,
)
from flowrpc.schemas.actions import WorkPoolCreate
from flowrpc.schemas.filters import (
    DeploymentFilter,
    FlowFilter,
    FlowRunFilter,
    TaskRunFilter,
    WorkPoolFilter,
)
from flowrpc.schemas.objects import StateType, TaskRunResult
from flowrpc.schemas.responses import SetStateStatus
from flowrpc.schemas.sorting import FlowRunSort
from flowrpc.states import (
    Cancelled,
    Completed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
)


def flow(name: str = "etl", **attrs):
    """A stand-in for a Prefect Flow: the client reads .name and, if present, .version,
    .retries and .retry_delay_seconds."""
    return SimpleNamespace(name=name, **attrs)


def task(name: str = "extract", **attrs):
    return SimpleNamespace(name=name, task_key=f"{name}-key", **attrs)


# ---- health and flows ----


async def test_hello(client):
    assert await client.hello() == "SERVING"


async def test_create_and_read_flows(client):
    flow_id = await client.create_flow(flow("etl"))
    assert isinstance(flow_id, UUID)
    assert await client.create_flow(flow("etl")) == flow_id  # same name, same flow
    other_id = await client.create_flow_from_name("reports")
    assert other_id != flow_id

    read = await client.read_flow(flow_id)
    assert read.id == flow_id
    assert read.name == "etl"
    assert read.created.tzinfo is not None
    assert (await client.read_flow_by_name("reports")).id == other_id

    flows = await client.read_flows()
    assert [f.name for f in flows] == ["etl", "reports"]  # ordered by name
    only = await client.read_flows(flow_filter=FlowFilter(name={"any_": ["reports"]}))
    assert [f.id for f in only] == [other_id]
    assert len(await client.read_flows(limit=1)) == 1
    assert [f.name for f in await client.read_flows(offset=1)] == ["reports"]


async def test_read_missing_flow_is_object_not_found(client):
    with pytest.raises(ObjectNotFound) as caught:
        await client.read_flow(uuid4())
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "FLOW_NOT_FOUND"


async def test_a_request_over_max_request_bytes_names_the_setting(client):
    with pytest.raises(ResourceExhausted) as caught:
        await client.create_flow_from_name("n" * 5_000_000)
    assert "Received message larger than max" in caught.value.message
    assert "FLOWRPC_MAX_REQUEST_BYTES" in caught.value.message


# ---- deployments and work pools ----


async def test_create_and_read_deployments(client):
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(
        flow_id,
        "nightly",
        version="1.2",
        parameters={"day": "mon", "n": 2},
        tags=["prod"],
        description="every night",
        entrypoint="flows.py:etl",
    )
    assert isinstance(deployment_id, UUID)
    deployment = await client.read_deployment(deployment_id)
    assert deployment.name == "nightly"
    assert deployment.flow_id == flow_id
    assert deployment.version == "1.2"
    assert deployment.parameters == {"day": "mon", "n": 2}
    assert deployment.tags == ["prod"]
    assert deployment.description == "every night"
    assert deployment.entrypoint == "flows.py:etl"
    assert deployment.paused is False

    by_name = await client.read_deployment_by_name("etl/nightly")
    assert by_name.id == deployment_id
    await client.create_deployment(flow_id, "hourly")
    matching = await client.read_deployments(
        deployment_filter=DeploymentFilter(name={"like_": "ight"})
    )
    assert [d.id for d in matching] == [deployment_id]
    assert {d.name for d in await client.read_deployments()} == {"nightly", "hourly"}
    with pytest.raises(ObjectNotFound):
        await client.read_deployment_by_name("etl/missing")
    with pytest.raises(ValueError, match="flow name"):
        await client.read_deployment_by_name("no-slash")


async def test_work_pools(client):
    pool = await client.create_work_pool(WorkPoolCreate(name="pool-a", concurrency_limit=2))
    assert pool.name == "pool-a"
    assert pool.type == "process"
    assert pool.concurrency_limit == 2
    assert pool.default_queue_id is not None
    await client.create_work_pool(WorkPoolCreate(name="pool-b", type="docker"))
    assert (await client.read_work_pool("pool-a")).id == pool.id
    assert [p.name for p in await client.read_work_pools()] == ["pool-a", "pool-b"]
    only_b = await client.read_work_pools(
        work_pool_filter=WorkPoolFilter(type={"any_": ["docker"]})
    )
    assert [p.name for p in only_b] == ["pool-b"]
    with pytest.raises(ObjectAlreadyExists) as caught:
        await client.create_work_pool(WorkPoolCreate(name="pool-a"))
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS


# ---- flow runs ----


async def test_create_flow_run_like_prefect(client):
    run = await client.create_flow_run(
        flow("etl", version="v7", retries=2, retry_delay_seconds=15.0),
        name="first",
        parameters={"x": 1, "when": "today"},
        context={"k": "v"},
        tags=["a", "b"],
    )
    assert run.name == "first"
    assert run.flow_id == await client.create_flow_from_name("etl")
    assert run.flow_version == "v7"
    assert run.parameters == {"x": 1, "when": "today"}
    assert run.context == {"k": "v"}
    assert sorted(run.tags) == ["a", "b"]
    assert run.empirical_policy.retries == 2
    assert run.empirical_policy.retry_delay == 15
    assert run.state.is_pending()  # Prefect's default initial state
    assert run.state_type is StateType.PENDING
    assert run.state.state_details.flow_run_id == run.id
    assert run.expected_start_time is not None

    unnamed = await client.create_flow_run(flow("etl"), state=Running())
    assert unnamed.name  # a generated slug
    assert unnamed.state.is_running()
    assert unnamed.run_count == 1
    # Empty Structs travel unset and read back empty, not None.
    assert unnamed.parameters == unnamed.context == unnamed.job_variables == {}
    assert (await client.read_flow_run(unnamed.id)).job_variables == {}


async def test_create_flow_run_in_a_work_pool(client):
    await client.create_work_pool(WorkPoolCreate(name="pool"))
    run = await client.create_flow_run(flow("etl"), work_pool_name="pool")
    assert run.work_pool_name == "pool"
    assert run.work_queue_name == "default"
    assert run.work_queue_id is not None


async def test_create_flow_run_from_deployment(client):
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(
        flow_id, "nightly", parameters={"a": 1, "b": 2}, tags=["dep"]
    )
    run = await client.create_flow_run_from_deployment(
        deployment_id, parameters={"b": 3}, tags=["mine"], idempotency_key="k1"
    )
    assert run.deployment_id == deployment_id
    assert run.flow_id == flow_id
    assert run.parameters == {"a": 1, "b": 3}
    assert sorted(run.tags) == ["dep", "mine"]
    assert run.state.is_scheduled()  # the default for deployment runs
    assert run.state.name == "Scheduled"
    assert run.idempotency_key == "k1"
    again = await client.create_flow_run_from_deployment(deployment_id, idempotency_key="k1")
    assert again.id == run.id

    later = datetime.now(UTC) + timedelta(days=1)
    scheduled = await client.create_flow_run_from_deployment(
        deployment_id, state=Scheduled(scheduled_time=later), name="tomorrow"
    )
    assert scheduled.name == "tomorrow"
    assert scheduled.expected_start_time == later
    assert scheduled.next_scheduled_start_time == later
    with pytest.raises(ObjectNotFound):
        await client.create_flow_run_from_deployment(uuid4())


async def test_read_flow_run_and_errors(client):
    run = await client.create_flow_run(flow("etl"))
    read = await client.read_flow_run(run.id)
    assert read == run
    assert (await client.read_flow_run(str(run.id))).id == run.id
    with pytest.raises(ObjectNotFound) as caught:
        await client.read_flow_run(uuid4())
    assert caught.value.reason == "FLOW_RUN_NOT_FOUND"
    assert caught.value.domain == "flowrpc"
    with pytest.raises(InvalidRequest) as caught:
        await client.read_flow_run("not-a-uuid")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field_violations


async def test_read_flow_runs_filters_sort_limit_offset(client, seeded: Seed):
    late = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state=dict(name=dict(any_=["Late"]))),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )
    assert [r.id for r in late] == [r.id for r in reversed(seeded.late)]  # 4 h late first
    assert all(r.state.name == "Late" and r.state.is_scheduled() for r in late)

    completed = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}),
        sort=FlowRunSort.END_TIME_DESC,
        limit=2,
    )
    assert [r.id for r in completed] == [seeded.completed[3].id, seeded.completed[2].id]
    skipped = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}),
        sort=FlowRunSort.END_TIME_DESC,
        limit=2,
        offset=2,
    )
    assert [r.id for r in skipped] == [seeded.completed[1].id, seeded.completed[0].id]

    newest_first = await client.read_flow_runs()
    assert [r.id for r in newest_first] == sorted((r.id for r in seeded.all_runs), reverse=True)

    by_deployment = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(name={"like_": DEPLOYMENT_NAME}),
        flow_filter=FlowFilter(name={"any_": [FLOW_NAME]}),
        flow_run_filter=FlowRunFilter(state={"type": {"not_any_": ["SCHEDULED"]}}),
    )
    assert len(by_deployment) == len(seeded.all_runs) - 6
    none = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id={"any_": []}))
    assert none == []
    assert await client.read_flow_runs(limit=0) == []


async def test_count_flow_runs(client, seeded: Seed):
    assert await client.count_flow_runs() == len(seeded.all_runs)
    assert (
        await client.count_flow_runs(
            flow_run_filter=FlowRunFilter(state={"name": {"any_": ["Late"]}})
        )
        == 4
    )
    running_or_failed = FlowRunFilter(state={"type": {"any_": ["RUNNING", "FAILED"]}})
    assert await client.count_flow_runs(flow_run_filter=running_or_failed) == 3
    assert (
        await client.count_flow_runs(deployment_filter=DeploymentFilter(name={"any_": ["x"]})) == 0
    )


async def test_update_flow_run(client):
    run = await client.create_flow_run(flow("etl"), name="old", tags=["t"], parameters={"a": 1})
    updated = await client.update_flow_run(
        run.id, name="new", tags=["x", "y"], parameters={"b": 2}, infrastructure_pid="4242"
    )
    assert updated.name == "new"
    assert sorted(updated.tags) == ["x", "y"]
    assert updated.parameters == {"b": 2}
    assert updated.infrastructure_pid == "4242"
    read = await client.read_flow_run(run.id)
    assert read.name == "new"
    assert read.flow_version is None  # not given, not touched
    cleared = await client.update_flow_run(run.id, tags=[])
    assert cleared.tags == []
    assert cleared.name == "new"
    with pytest.raises(ObjectNotFound):
        await client.update_flow_run(uuid4(), name="x")


async def test_delete_flow_run(client):
    run = await client.create_flow_run(flow("etl"))
    assert await client.delete_flow_run(run.id) is None
    with pytest.raises(ObjectNotFound):
        await client.read_flow_run(run.id)
    with pytest.raises(ObjectNotFound):
        await client.delete_flow_run(run.id)


async def test_set_flow_run_state_outcomes(client):
    run = await client.create_flow_run(flow("etl", retries=1))
    result = await client.set_flow_run_state(run.id, Running())
    assert result.status is SetStateStatus.ACCEPT
    assert result.details.type == "accept_details"
    assert result.state.is_running()
    assert result.state.state_details.flow_run_id == run.id
    assert result.state.state_details.transition_id is not None
    assert (await client.read_flow_run(run.id)).run_count == 1

    # A retryable failure is rejected in favour of AwaitingRetry.
    result = await client.set_flow_run_state(run.id, Failed(message="boom"))
    assert result.status is SetStateStatus.REJECT
    assert result.state.is_scheduled()
    assert result.state.name == "AwaitingRetry"
    assert result.details.reason == "Retrying"

    # Pending -> Pending with the same name is aborted.
    fresh = await client.create_flow_run(flow("etl"))
    result = await client.set_flow_run_state(fresh.id, Pending())
    assert result.status is SetStateStatus.ABORT
    assert result.details.type == "abort_details"
    assert "PENDING" in result.details.reason

    # A scheduled time in the future makes Running wait.
    waiting = await client.create_flow_run(
        flow("etl"), state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(minutes=5))
    )
    result = await client.set_flow_run_state(waiting.id, Running())
    assert result.status is SetStateStatus.WAIT
    assert 250 <= result.details.delay_seconds <= 300

    # force=True skips the rules.
    result = await client.set_flow_run_state(waiting.id, Completed(), force=True)
    assert result.status is SetStateStatus.ACCEPT
    done = await client.read_flow_run(waiting.id)
    assert done.state.is_completed()
    assert done.end_time is not None

    with pytest.raises(ObjectNotFound):
        await client.set_flow_run_state(uuid4(), Running())


async def test_pause_and_resume(client):
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(flow_id, "dep")
    run = await client.create_flow_run_from_deployment(deployment_id, state=Pending())
    await client.set_flow_run_state(run.id, Running())
    paused = await client.set_flow_run_state(run.id, Paused(timeout_seconds=300, pause_key="p1"))
    assert paused.status is SetStateStatus.ACCEPT
    assert paused.state.is_paused()
    assert paused.state.state_details.pause_key == "p1"

    resumed = await client.resume_flow_run(run.id)
    assert resumed.status is SetStateStatus.ACCEPT
    assert resumed.state.is_running()

    again = await client.resume_flow_run(run.id)
    assert again.status is SetStateStatus.ABORT
    assert again.details.reason == "Cannot resume a flow run that is not paused."


async def test_read_flow_run_states(client):
    run = await client.create_flow_run(flow("etl"))
    await client.set_flow_run_state(run.id, Running())
    await client.set_flow_run_state(run.id, Completed(message="ok"))
    history = await client.read_flow_run_states(run.id)
    assert [s.type for s in history] == [StateType.PENDING, StateType.RUNNING, StateType.COMPLETED]
    assert [s.timestamp for s in history] == sorted(s.timestamp for s in history)
    assert history[-1].message == "ok"
    assert history[-1].id == (await client.read_flow_run(run.id)).state_id


# ---- task runs and the graph ----


async def test_task_runs(client):
    run = await client.create_flow_run(flow("etl"), state=Running())
    first = await client.create_task_run(
        task("extract", version="3", tags=["io"], retries=2, retry_delay_seconds=[1, 10]),
        run.id,
        dynamic_key="0",
        extra_tags=["x"],
    )
    assert first.flow_run_id == run.id
    assert first.task_key == "extract-key"
    assert first.dynamic_key == "0"
    assert first.task_version == "3"
    assert sorted(first.tags) == ["io", "x"]
    assert first.empirical_policy.retries == 2
    assert first.empirical_policy.retry_delay == [1, 10]
    assert first.state.is_pending()

    second = await client.create_task_run(
        task("load"),
        run.id,
        dynamic_key="0",
        name="load-0",
        task_inputs={"rows": [TaskRunResult(id=first.id)]},
    )
    assert second.name == "load-0"
    assert second.task_inputs == {"rows": [TaskRunResult(id=first.id)]}

    result = await client.set_task_run_state(first.id, Running())
    assert result.status is SetStateStatus.ACCEPT
    assert result.state.state_details.task_run_id == first.id
    result = await client.set_task_run_state(first.id, Completed())
    assert result.state.is_completed()

    read = await client.read_task_run(first.id)
    assert read.state.is_completed()
    assert read.run_count == 1
    listed = await client.read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id={"any_": [run.id]})
    )
    assert {t.id for t in listed} == {first.id, second.id}
    completed = await client.read_task_runs(
        flow_run_filter=FlowRunFilter(id={"any_": [run.id]}),
        task_run_filter=TaskRunFilter(state={"type": {"any_": ["COMPLETED"]}}),
    )
    assert [t.id for t in completed] == [first.id]

    graph = await client.read_flow_run_graph(run.id)
    nodes = {node.id: node for node in graph}
    assert set(nodes) == {first.id, second.id}
    assert nodes[second.id].upstream_dependencies == [TaskRunResult(id=first.id)]
    assert nodes[first.id].upstream_dependencies == []
    assert nodes[first.id].state.is_completed()


# ---- beyond Prefect: paging, history and bulk streams ----


async def test_iter_flow_runs_pages_through_everything(client):
    created = [await client.create_flow_run(flow("etl"), name=f"run-{i:02d}") for i in range(7)]
    seen = await collect(client.iter_flow_runs(sort=FlowRunSort.NAME_ASC, page_size=3))
    assert [r.name for r in seen] == [r.name for r in created]
    newest = await collect(
        client.iter_flow_runs(flow_run_filter=FlowRunFilter(name={"like_": "run-0"}), page_size=2)
    )
    assert [r.id for r in newest] == sorted((r.id for r in created), reverse=True)


async def test_iter_task_runs_pages_through_everything_newest_first(client):
    run = await client.create_flow_run(flow("etl"))
    created = [
        await client.create_task_run(task("t"), run.id, dynamic_key=str(i)) for i in range(5)
    ]
    mine = TaskRunFilter(flow_run_id={"any_": [run.id]})
    seen = await collect(client.iter_task_runs(task_run_filter=mine, page_size=2))
    assert [t.id for t in seen] == [t.id for t in reversed(created)]


async def test_read_flow_run_states_reads_every_page(client):
    run = await client.create_flow_run(flow("etl"))  # its first state: Pending
    for i in range(10):  # 5 MB of state data: more than one page of 4 MiB
        state = (Running if i % 2 == 0 else Pending)(data=f"{i}" + "x" * 500_000)
        await client.set_flow_run_state(run.id, state, force=True)
    states = await client.read_flow_run_states(run.id)
    assert [s.data[:1] for s in states[1:]] == [str(i) for i in range(10)]


async def test_stream_flow_run_history(client, seeded: Seed):
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=5), now + timedelta(hours=3)
    intervals = await collect(
        client.stream_flow_run_history(
            history_start=start, history_end=end, history_interval=timedelta(hours=1)
        )
    )
    assert len(intervals) == 8
    assert intervals[0].interval_start == start
    assert all(
        b.interval_start == a.interval_end for a, b in zip(intervals, intervals[1:], strict=False)
    )
    counted = sum(s.count_runs for i in intervals for s in i.states)
    assert counted == len(seeded.all_runs)
    late = [s for i in intervals for s in i.states if s.state_name == "Late"]
    assert sum(s.count_runs for s in late) == 4
    assert all(s.state_type is StateType.SCHEDULED for s in late)

    filtered = await collect(
        client.stream_flow_run_history(
            start,
            end,
            3600.0,
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}),
        )
    )
    assert sum(s.count_runs for i in filtered for s in i.states) == 4
    with pytest.raises(InvalidRequest):
        await collect(client.stream_flow_run_history(start, end, timedelta(milliseconds=10)))


async def test_read_flow_run_history_is_the_stream_in_one_list(client, seeded: Seed):
    now = datetime.now(UTC)
    window = (now - timedelta(hours=5), now + timedelta(hours=3), timedelta(hours=1))
    completed = FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}})
    read = await client.read_flow_run_history(*window, flow_run_filter=completed)
    streamed = await collect(client.stream_flow_run_history(*window, flow_run_filter=completed))
    assert [(i.interval_start, i.interval_end) for i in read] == [
        (i.interval_start, i.interval_end) for i in streamed
    ]
    assert [[(s.state_name, s.count_runs) for s in i.states] for i in read] == [
        [(s.state_name, s.count_runs) for s in i.states] for i in streamed
    ]
    assert sum(s.count_runs for i in read for s in i.states) == 4


async def test_bulk_set_flow_run_state(client, seeded: Seed):
    targets = FlowRunFilter(state={"name": {"any_": ["Late", "Scheduled"]}})
    results = await collect(
        client.bulk_set_flow_run_state(
            Cancelled(message="bulk"), force=True, flow_run_filter=targets
        )
    )
    expected = {r.id for r in [*seeded.late, *seeded.scheduled]}
    assert {r.flow_run_id for r in results} == expected
    assert len(results) == len(expected)
    assert all(r.status is SetStateStatus.ACCEPT and r.state.is_cancelled() for r in results)
    assert await client.count_flow_runs(flow_run_filter=targets) == 0

    # Not forced: the orchestration rules still apply to each run (terminal runs abort).
    results = await collect(
        client.bulk_set_flow_run_state(
            Running(),
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["FAILED"]}}),
        )
    )
    assert [r.flow_run_id for r in results] == [seeded.failed[0].id]

    limited = await collect(
        client.bulk_set_flow_run_state(
            Cancelled(),
            force=True,
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["PENDING"]}}),
            limit=1,
        )
    )
    assert len(limited) == 1


async def test_bulk_delete_flow_runs(client, seeded: Seed):
    deleted = await collect(
        client.bulk_delete_flow_runs(
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}}), limit=3
        )
    )
    assert len(deleted) == 3
    assert set(deleted) <= {r.id for r in seeded.completed}
    assert all(isinstance(run_id, UUID) for run_id in deleted)
    deleted += await collect(
        client.bulk_delete_flow_runs(
            deployment_filter=DeploymentFilter(id={"any_": [seeded.deployment_id]})
        )
    )
    assert set(deleted) == {r.id for r in seeded.all_runs}
    assert await client.count_flow_runs() == 0
    assert await collect(client.bulk_delete_flow_runs()) == []
