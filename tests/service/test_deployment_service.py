"""DeploymentService: upsert, get, get by name, list, delete, runs created from a deployment."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from helpers import (
    FUTURE,
    PENDING,
    SCHEDULED,
    at,
    close_to_now,
    error_info,
    get_run,
    list_runs,
    make_flow,
    scheduled,
    state,
    strings,
)

from flowrpc.v1 import deployment_pb2
from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import work_pool_service_pb2 as wp


def struct(**values):
    message = struct_pb2.Struct()
    message.update(values)
    return message


async def create(stubs, **fields):
    request = dp.CreateDeploymentRequest(deployment=deployment_pb2.Deployment(**fields))
    return await stubs.deployments.CreateDeployment(request)


async def from_deployment(stubs, deployment_id, **fields):
    request = dp.CreateFlowRunFromDeploymentRequest(deployment_id=deployment_id, **fields)
    return await stubs.deployments.CreateFlowRunFromDeployment(request)


async def test_create_deployment_upserts_by_flow_and_name(stubs):
    flow = await make_flow(stubs)
    first = await create(stubs, name="nightly", flow_id=flow.id, version="1", tags=["a"])
    again = await create(stubs, name="nightly", flow_id=flow.id, version="2", tags=["b"])
    assert first.created is True and again.created is False
    assert again.deployment.id == first.deployment.id
    assert again.deployment.version == "2" and list(again.deployment.tags) == ["b"]
    got = await stubs.deployments.GetDeployment(dp.GetDeploymentRequest(id=first.deployment.id))
    assert got.deployment.version == "2"
    other_flow = await make_flow(stubs, "other")
    separate = await create(stubs, name="nightly", flow_id=other_flow.id)
    assert separate.created is True and separate.deployment.id != first.deployment.id


async def test_get_deployment_by_name(stubs):
    flow = await make_flow(stubs, "etl")
    created = (await create(stubs, name="nightly", flow_id=flow.id)).deployment
    got = await stubs.deployments.GetDeploymentByName(
        dp.GetDeploymentByNameRequest(flow_name="etl", deployment_name="nightly")
    )
    assert got.deployment.id == created.id and got.deployment.flow_id == flow.id
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.deployments.GetDeploymentByName(
            dp.GetDeploymentByNameRequest(flow_name="etl", deployment_name="hourly")
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "DEPLOYMENT_NOT_FOUND"


async def test_deployment_on_a_work_pool_gets_its_queue(stubs):
    pool = (await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))).work_pool
    flow = await make_flow(stubs)
    deployment = (await create(stubs, name="d", flow_id=flow.id, work_pool_name="pool")).deployment
    assert deployment.work_pool_name == "pool"
    assert deployment.work_queue_name == "default"
    assert deployment.work_queue_id == pool.default_queue_id


async def test_list_deployments_with_filters(stubs):
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    flow = await make_flow(stubs)
    await create(stubs, name="b", flow_id=flow.id, work_pool_name="pool")
    await create(stubs, name="a", flow_id=flow.id, tags=["t"])
    listed = (await stubs.deployments.ListDeployments(dp.ListDeploymentsRequest())).deployments
    assert [d.name for d in listed] == ["a", "b"]
    tagged = f.DeploymentFilter(tags=f.DeploymentFilterTags(all_of=strings("t")))
    filtered = await stubs.deployments.ListDeployments(
        dp.ListDeploymentsRequest(deployments=tagged)
    )
    assert [d.name for d in filtered.deployments] == ["a"]
    on_pool = f.WorkPoolFilter(name=f.WorkPoolFilterName(any_of=strings("pool")))
    pooled = await stubs.deployments.ListDeployments(dp.ListDeploymentsRequest(work_pools=on_pool))
    assert [d.name for d in pooled.deployments] == ["b"]
    queued = await stubs.deployments.ListDeployments(
        dp.ListDeploymentsRequest(work_pool_queues=f.WorkQueueFilter())
    )
    assert [d.name for d in queued.deployments] == ["b"]


async def test_run_from_deployment_merges_parameters_and_unions_tags(stubs):
    flow = await make_flow(stubs)
    deployment = (
        await create(
            stubs,
            name="nightly",
            flow_id=flow.id,
            version="v7",
            tags=["dep", "shared"],
            parameters=struct(a=1, b=2),
            labels=struct(owner="ops"),
        )
    ).deployment
    response = await from_deployment(
        stubs, deployment.id, parameters=struct(b=3, c=4), tags=["shared", "mine"]
    )
    run = response.flow_run
    assert response.created is True
    assert dict(run.parameters) == {"a": 1.0, "b": 3.0, "c": 4.0}
    assert sorted(run.tags) == ["dep", "mine", "shared"]
    assert run.deployment_id == deployment.id and run.flow_id == flow.id
    assert run.deployment_version == "v7"
    assert run.labels["prefect.deployment.id"] == deployment.id
    assert run.labels["prefect.flow.id"] == flow.id
    assert run.labels["owner"] == "ops"
    # Default state: Scheduled now.
    assert run.state.type == SCHEDULED and run.state.name == "Scheduled"
    assert close_to_now(at(run.state.state_details, "scheduled_time"))
    assert at(run, "next_scheduled_start_time") == at(run.state.state_details, "scheduled_time")


async def test_run_from_deployment_with_a_state(stubs):
    flow = await make_flow(stubs)
    deployment = (await create(stubs, name="d", flow_id=flow.id)).deployment
    future = (await from_deployment(stubs, deployment.id, state=scheduled(FUTURE))).flow_run
    assert at(future, "expected_start_time") == FUTURE
    pending = (await from_deployment(stubs, deployment.id, state=state(PENDING))).flow_run
    assert pending.state.type == PENDING


async def test_run_from_deployment_is_idempotent(stubs):
    flow = await make_flow(stubs)
    deployment = (await create(stubs, name="d", flow_id=flow.id)).deployment
    first = await from_deployment(stubs, deployment.id, idempotency_key="once")
    again = await from_deployment(stubs, deployment.id, idempotency_key="once", name="other")
    assert first.created is True and again.created is False
    assert again.flow_run.id == first.flow_run.id
    assert again.flow_run.name == first.flow_run.name
    assert len(await list_runs(stubs)) == 1


async def test_run_from_deployment_puts_it_on_the_deployment_queue(stubs):
    await stubs.work_pools.CreateWorkPool(wp.CreateWorkPoolRequest(name="pool"))
    flow = await make_flow(stubs)
    deployment = (await create(stubs, name="d", flow_id=flow.id, work_pool_name="pool")).deployment
    run = (await from_deployment(stubs, deployment.id)).flow_run
    assert run.work_pool_name == "pool" and run.work_queue_name == "default"
    # A missing queue is created in the deployment's pool.
    other = (await from_deployment(stubs, deployment.id, work_queue_name="new")).flow_run
    assert other.work_queue_name == "new" and other.work_pool_name == "pool"
    queues = await stubs.work_pools.ListWorkQueues(wp.ListWorkQueuesRequest(work_pool_name="pool"))
    assert [q.name for q in queues.work_queues] == ["default", "new"]


async def test_delete_deployment_keeps_its_runs(stubs):
    flow = await make_flow(stubs)
    deployment = (await create(stubs, name="d", flow_id=flow.id)).deployment
    run = (await from_deployment(stubs, deployment.id)).flow_run
    await stubs.deployments.DeleteDeployment(dp.DeleteDeploymentRequest(id=deployment.id))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.deployments.GetDeployment(dp.GetDeploymentRequest(id=deployment.id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await get_run(stubs, run.id)).deployment_id == ""


async def test_run_from_a_missing_deployment_is_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await from_deployment(stubs, "00000000-0000-7000-8000-000000000000")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "DEPLOYMENT_NOT_FOUND"
