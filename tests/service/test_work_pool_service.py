"""WorkPoolService: pools with their default queue, queues, duplicates, lists, delete."""

from __future__ import annotations

import grpc
import pytest
from helpers import error_info, strings

from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import work_pool_service_pb2 as wp


async def create_pool(stubs, name, **fields):
    request = wp.CreateWorkPoolRequest(name=name, **fields)
    return (await stubs.work_pools.CreateWorkPool(request)).work_pool


async def queues(stubs, pool):
    request = wp.ListWorkQueuesRequest(work_pool_name=pool)
    return list((await stubs.work_pools.ListWorkQueues(request)).work_queues)


async def test_a_pool_has_a_default_queue(stubs):
    pool = await create_pool(stubs, "pool", description="d", concurrency_limit=3)
    assert pool.type == "process"  # the default type
    assert pool.description == "d" and pool.concurrency_limit == 3
    (default,) = await queues(stubs, "pool")
    assert default.name == "default"
    assert default.id == pool.default_queue_id
    assert default.work_pool_id == pool.id and default.work_pool_name == "pool"
    got = (await stubs.work_pools.GetWorkPool(wp.GetWorkPoolRequest(name="pool"))).work_pool
    assert got.id == pool.id and got.default_queue_id == pool.default_queue_id


async def test_create_and_list_work_queues_by_priority(stubs):
    await create_pool(stubs, "pool")
    create = stubs.work_pools.CreateWorkQueue
    low = (await create(wp.CreateWorkQueueRequest(work_pool_name="pool", name="low"))).work_queue
    urgent = (
        await create(wp.CreateWorkQueueRequest(work_pool_name="pool", name="urgent", priority=0))
    ).work_queue
    assert low.priority == 2  # after the default queue's 1
    assert low.work_pool_name == "pool"
    assert [q.name for q in await queues(stubs, "pool")] == ["urgent", "default", "low"]
    assert urgent.priority == 0


async def test_duplicate_pool_and_queue_already_exist(stubs):
    await create_pool(stubs, "pool")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create_pool(stubs, "pool")
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(raised.value).reason == "WORK_POOL_ALREADY_EXISTS"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.work_pools.CreateWorkQueue(
            wp.CreateWorkQueueRequest(work_pool_name="pool", name="default")
        )
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(raised.value).reason == "WORK_QUEUE_ALREADY_EXISTS"
    assert len(await queues(stubs, "pool")) == 1


async def test_list_pools_and_delete(stubs):
    await create_pool(stubs, "b", type="docker")
    await create_pool(stubs, "a")
    listed = (await stubs.work_pools.ListWorkPools(wp.ListWorkPoolsRequest())).work_pools
    assert [p.name for p in listed] == ["a", "b"]
    docker = f.WorkPoolFilter(type=f.WorkPoolFilterType(any_of=strings("docker")))
    filtered = await stubs.work_pools.ListWorkPools(wp.ListWorkPoolsRequest(work_pools=docker))
    assert [p.name for p in filtered.work_pools] == ["b"]
    await stubs.work_pools.DeleteWorkPool(wp.DeleteWorkPoolRequest(name="b"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.work_pools.GetWorkPool(wp.GetWorkPoolRequest(name="b"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "WORK_POOL_NOT_FOUND"


async def test_queues_of_a_missing_pool_are_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await queues(stubs, "nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.work_pools.CreateWorkQueue(
            wp.CreateWorkQueueRequest(work_pool_name="nope", name="q")
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
