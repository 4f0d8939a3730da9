"""CreateFlowRun, GetFlowRun, UpdateFlowRun, DeleteFlowRun; idempotency; work pool resolution."""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from helpers import (
    COMPLETED,
    FUTURE,
    PENDING,
    RUNNING,
    SCHEDULED,
    T0,
    at,
    close_to_now,
    error_info,
    field_violations,
    get_run,
    list_runs,
    make_flow,
    make_run,
    scheduled,
    state,
)

from flowrpc.v1 import flow_run_pb2
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import work_pool_service_pb2 as wp

SLUG = re.compile(r"^[a-z]+-[a-z]+$")


def struct(**values: object) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


# ---- create ----


async def test_create_defaults_to_pending(stubs):
    flow = await make_flow(stubs)
    response = await stubs.flow_runs.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow.id))
    run = response.flow_run
    assert response.created is True
    assert run.flow_id == flow.id
    assert run.state.type == PENDING and run.state.name == "Pending"
    assert run.state_type == PENDING and run.state_name == "Pending"
    assert run.state_id == run.state.id
    assert run.state.state_details.flow_run_id == run.id
    assert run.run_count == 0
    # The first state sets expected_start_time to its timestamp; a run that never ran has none.
    assert at(run, "expected_start_time") == at(run.state, "timestamp")
    assert close_to_now(at(run, "expected_start_time"))
    assert not run.HasField("start_time") and not run.HasField("end_time")
    assert not run.HasField("next_scheduled_start_time")
    assert close_to_now(at(run, "created"))


async def test_create_with_scheduled_state_in_the_past(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=scheduled(T0))
    assert run.state.type == SCHEDULED and run.state.name == "Scheduled"
    assert at(run.state.state_details, "scheduled_time") == T0
    assert at(run, "expected_start_time") == T0
    assert at(run, "next_scheduled_start_time") == T0
    assert not run.HasField("start_time")
    # Lateness grows from the scheduled time while the run has not started.
    assert run.estimated_start_time_delta.seconds > 3600 * 24 * 300


async def test_create_with_scheduled_state_in_the_future(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=scheduled(FUTURE, name="Custom"))
    assert run.state.name == "Custom"
    assert at(run, "expected_start_time") == FUTURE
    assert at(run, "next_scheduled_start_time") == FUTURE
    assert run.estimated_start_time_delta.ToTimedelta().total_seconds() == 0


async def test_create_scheduled_without_time_defaults_to_now(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(SCHEDULED))
    assert close_to_now(at(run.state.state_details, "scheduled_time"))
    assert at(run, "expected_start_time") == at(run.state.state_details, "scheduled_time")


async def test_create_completed_sets_start_and_end_time(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(COMPLETED, message="done"))
    stamp = at(run.state, "timestamp")
    assert run.state.type == COMPLETED and run.state.message == "done"
    assert at(run, "start_time") == stamp
    assert at(run, "end_time") == stamp
    assert at(run, "expected_start_time") == stamp
    assert run.run_count == 0


async def test_create_running_counts_a_run(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    assert run.run_count == 1
    assert at(run, "start_time") == at(run.state, "timestamp")
    assert not run.HasField("end_time")


async def test_create_stores_the_given_fields(stubs):
    flow = await make_flow(stubs)
    run = await make_run(
        stubs,
        flow.id,
        name="my-run",
        flow_version="1.2",
        parameters=struct(x=1, y="two"),
        context=struct(c=True),
        tags=["a", "b"],
        empirical_policy=flow_run_pb2.FlowRunPolicy(retries=3, retry_delay=5),
        job_variables=struct(image="python"),
    )
    got = await get_run(stubs, run.id)
    assert got.name == "my-run"
    assert got.flow_version == "1.2"
    assert dict(got.parameters) == {"x": 1.0, "y": "two"}
    assert dict(got.context) == {"c": True}
    assert list(got.tags) == ["a", "b"]
    assert got.empirical_policy.retries == 3 and got.empirical_policy.retry_delay == 5
    assert dict(got.job_variables) == {"image": "python"}


async def test_create_without_name_generates_a_slug(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    assert SLUG.match(run.name), run.name


async def test_labels_include_the_flow_id_and_flow_labels(stubs):
    flow = await make_flow(stubs, labels=struct(team="data", env="flow"))
    run = await make_run(stubs, flow.id, labels=struct(env="prod", n=3))
    assert dict(run.labels) == {
        "team": "data",
        "env": "prod",  # the run's own labels win
        "n": 3.0,
        "prefect.flow.id": flow.id,
    }


async def test_get_accepts_an_upper_case_id(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    assert (await get_run(stubs, run.id.upper())).id == run.id


async def test_get_returns_the_created_run(stubs):
    flow = await make_flow(stubs)
    created = await make_run(stubs, flow.id, name="x", state=scheduled(T0))
    got = await get_run(stubs, created.id)
    assert got.id == created.id and got.name == "x"
    assert got.state.id == created.state.id
    assert at(got, "expected_start_time") == T0


# ---- idempotency ----


async def test_idempotent_create_returns_the_existing_run(stubs):
    flow = await make_flow(stubs)
    first = await stubs.flow_runs.CreateFlowRun(
        fr.CreateFlowRunRequest(flow_id=flow.id, idempotency_key="k", name="first")
    )
    again = await stubs.flow_runs.CreateFlowRun(
        fr.CreateFlowRunRequest(
            flow_id=flow.id, idempotency_key="k", name="second", state=state(RUNNING)
        )
    )
    assert first.created is True and again.created is False
    assert again.flow_run.id == first.flow_run.id
    assert again.flow_run.name == "first"
    assert again.flow_run.state.id == first.flow_run.state.id
    states = await stubs.flow_runs.ListFlowRunStates(
        fr.ListFlowRunStatesRequest(flow_run_id=first.flow_run.id)
    )
    assert [s.type for s in states.states] == [PENDING]  # no new state
    assert len(await list_runs(stubs)) == 1


async def test_same_idempotency_key_on_another_flow_creates_a_run(stubs):
    one, two = await make_flow(stubs, "one"), await make_flow(stubs, "two")
    a = await stubs.flow_runs.CreateFlowRun(
        fr.CreateFlowRunRequest(flow_id=one.id, idempotency_key="k")
    )
    b = await stubs.flow_runs.CreateFlowRun(
        fr.CreateFlowRunRequest(flow_id=two.id, idempotency_key="k")
    )
    assert a.created and b.created
    assert a.flow_run.id != b.flow_run.id


async def test_concurrent_creates_with_one_key_make_one_run(stubs):
    flow = await make_flow(stubs)
    request = fr.CreateFlowRunRequest(flow_id=flow.id, idempotency_key="race")
    responses = await asyncio.gather(*(stubs.flow_runs.CreateFlowRun(request) for _ in range(10)))
    assert sum(response.created for response in responses) == 1
    assert len({response.flow_run.id for response in responses}) == 1
    assert len(await list_runs(stubs)) == 1


async def test_concurrent_create_flow_with_one_name_makes_one_flow(stubs):
    responses = await asyncio.gather(
        *(stubs.flows.CreateFlow(fl.CreateFlowRequest(name="same")) for _ in range(10))
    )
    assert sum(response.created for response in responses) == 1
    assert len({response.flow.id for response in responses}) == 1


async def test_runs_without_a_key_are_never_deduplicated(stubs):
    flow = await make_flow(stubs)
    a = await make_run(stubs, flow.id, name="same")
    b = await make_run(stubs, flow.id, name="same")
    assert a.id != b.id


# ---- work pools and queues ----


async def test_work_pool_name_resolves_to_the_default_queue(stubs):
    pool = (await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))).work_pool
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, work_pool_name="pool")
    assert run.work_pool_name == "pool"
    assert run.work_pool_id == pool.id
    assert run.work_queue_name == "default"
    assert run.work_queue_id == pool.default_queue_id


async def test_work_pool_and_queue_name_resolve_to_that_queue(stubs):
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    queue = (
        await stubs.work_pools.CreateWorkQueue(
            wp.CreateWorkQueueRequest(work_pool_name="pool", name="fast")
        )
    ).work_queue
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, work_pool_name="pool", work_queue_name="fast")
    assert run.work_queue_id == queue.id
    assert run.work_queue_name == "fast"
    assert (await get_run(stubs, run.id)).work_pool_name == "pool"


async def test_work_queue_name_without_pool_is_stored_as_given(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, work_queue_name="loose")
    assert run.work_queue_name == "loose"
    assert run.work_queue_id == "" and not run.HasField("work_pool_name")


async def test_unknown_work_pool_is_not_found(stubs):
    flow = await make_flow(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await make_run(stubs, flow.id, work_pool_name="nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "WORK_POOL_NOT_FOUND"
    assert await list_runs(stubs) == []


async def test_unknown_work_queue_is_not_found(stubs):
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    flow = await make_flow(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await make_run(stubs, flow.id, work_pool_name="pool", work_queue_name="nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "WORK_QUEUE_NOT_FOUND"
    assert "pool/nope" in raised.value.details()


# ---- update ----


async def update(stubs, run, *paths):
    request = fr.UpdateFlowRunRequest(
        flow_run=run, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )
    return (await stubs.flow_runs.UpdateFlowRun(request)).flow_run


async def test_update_changes_only_the_masked_fields(stubs):
    flow = await make_flow(stubs)
    run = await make_run(
        stubs, flow.id, name="before", tags=["old"], flow_version="1", parameters=struct(a=1)
    )
    change = flow_run_pb2.FlowRun(
        id=run.id, name="after", tags=["new", "newer"], flow_version="2", parameters=struct(b=2)
    )
    updated = await update(stubs, change, "tags", "parameters")
    assert list(updated.tags) == ["new", "newer"]
    assert dict(updated.parameters) == {"b": 2.0}  # replaced whole, not merged
    assert updated.name == "before" and updated.flow_version == "1"
    got = await get_run(stubs, run.id)
    assert list(got.tags) == ["new", "newer"] and got.name == "before"
    assert at(got, "updated") >= at(run, "updated")


async def test_update_every_updatable_field(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, name="before")
    change = flow_run_pb2.FlowRun(
        id=run.id,
        name="after",
        flow_version="9",
        parameters=struct(p=1),
        empirical_policy=flow_run_pb2.FlowRunPolicy(retries=2),
        tags=["t"],
        infrastructure_pid="pid-1",
        job_variables=struct(j="v"),
    )
    paths = ["name", "flow_version", "parameters", "empirical_policy", "tags"]
    updated = await update(stubs, change, *paths, "infrastructure_pid", "job_variables")
    assert updated.name == "after" and updated.flow_version == "9"
    assert dict(updated.parameters) == {"p": 1.0}
    assert updated.empirical_policy.retries == 2
    assert list(updated.tags) == ["t"]
    assert updated.infrastructure_pid == "pid-1"
    assert dict(updated.job_variables) == {"j": "v"}
    assert updated.state.id == run.state.id  # no state change


async def test_update_with_empty_name_regenerates_a_slug(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, name="named")
    updated = await update(stubs, flow_run_pb2.FlowRun(id=run.id, name=""), "name")
    assert updated.name != "named" and SLUG.match(updated.name)


async def test_update_with_unknown_mask_path_is_invalid(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, name="kept")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await update(stubs, flow_run_pb2.FlowRun(id=run.id, name="x", run_count=5), "run_count")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "run_count" in field_violations(raised.value)["update_mask"]
    assert (await get_run(stubs, run.id)).name == "kept"


async def test_update_missing_run_is_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        missing = flow_run_pb2.FlowRun(id="00000000-0000-7000-8000-000000000000", name="x")
        await update(stubs, missing, "name")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "FLOW_RUN_NOT_FOUND"


# ---- delete ----


async def test_delete_then_get_is_not_found(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    other = await make_run(stubs, flow.id)
    await stubs.flow_runs.DeleteFlowRun(fr.DeleteFlowRunRequest(id=run.id))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get_run(stubs, run.id)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.flow_runs.DeleteFlowRun(fr.DeleteFlowRunRequest(id=run.id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.flow_runs.ListFlowRunStates(fr.ListFlowRunStatesRequest(flow_run_id=run.id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert [r.id for r in await list_runs(stubs)] == [other.id]


async def test_delete_takes_the_task_runs_and_states_along(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    task = (
        await stubs.task_runs.CreateTaskRun(
            tr.CreateTaskRunRequest(flow_run_id=run.id, task_key="t", name="t")
        )
    ).task_run
    await stubs.flow_runs.DeleteFlowRun(fr.DeleteFlowRunRequest(id=run.id))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task.id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stubs.task_runs.ListTaskRuns(tr.ListTaskRunsRequest())
    assert list(listed.task_runs) == []
