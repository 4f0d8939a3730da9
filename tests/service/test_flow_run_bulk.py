"""BulkSetFlowRunState, BulkDeleteFlowRuns: selection by filter, per-run orchestration, limits."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from helpers import (
    CANCELLED,
    FUTURE,
    PENDING,
    RUNNING,
    SCHEDULED,
    T0,
    count,
    field_violations,
    get_run,
    list_runs,
    make_flow,
    make_run,
    scheduled,
    state,
    strings,
    types,
)

from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import orchestration_pb2 as orc
from flowrpc.v1 import task_run_service_pb2 as tr

ACCEPT = orc.SET_STATE_STATUS_ACCEPT
WAIT = orc.SET_STATE_STATUS_WAIT
ABORT = orc.SET_STATE_STATUS_ABORT


def by_ids(*ids):
    return f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=strings(*ids))))


SCHEDULED_ONLY = f.FlowRunFilterSet(
    flow_runs=f.FlowRunFilter(
        state=f.FlowRunFilterState(type=f.FlowRunFilterStateType(any_of=types(SCHEDULED)))
    )
)


async def bulk_set(stubs, filter_set, proposed, **fields):
    """(number of messages, {run id: OrchestrationResult})."""
    request = fr.BulkSetFlowRunStateRequest(filter=filter_set, state=proposed, **fields)
    messages = [m async for m in stubs.flow_runs.BulkSetFlowRunState(request)]
    results = {r.flow_run_id: r.result for m in messages for r in m.results}
    assert len(results) == sum(len(m.results) for m in messages)  # each run once
    return len(messages), results


async def bulk_delete(stubs, filter_set, **fields):
    request = fr.BulkDeleteFlowRunsRequest(filter=filter_set, **fields)
    messages = [m async for m in stubs.flow_runs.BulkDeleteFlowRuns(request)]
    return [run_id for m in messages for run_id in m.deleted_flow_run_ids]


async def setup(stubs):
    flow = await make_flow(stubs)
    future = [(await make_run(stubs, flow.id, state=scheduled(FUTURE))).id for _ in range(3)]
    past = (await make_run(stubs, flow.id, state=scheduled(T0))).id
    running = (await make_run(stubs, flow.id, state=state(RUNNING))).id
    return future, past, running


async def test_each_selected_run_is_orchestrated_on_its_own(stubs):
    future, past, running = await setup(stubs)
    _, results = await bulk_set(stubs, SCHEDULED_ONLY, state(RUNNING))
    assert set(results) == {*future, past}
    assert {results[run_id].status for run_id in future} == {WAIT}
    assert results[past].status == ACCEPT and results[past].state.type == RUNNING
    for run_id in future:
        assert (await get_run(stubs, run_id)).state_type == SCHEDULED
    assert (await get_run(stubs, past)).run_count == 1
    assert (await get_run(stubs, running)).run_count == 1  # not selected


async def test_a_mixed_selection_gets_mixed_outcomes(stubs):
    future, past, running = await setup(stubs)
    _, results = await bulk_set(stubs, f.FlowRunFilterSet(), state(PENDING))
    assert set(results) == {*future, past, running}
    assert results[running].status == ABORT  # RUNNING -> PENDING
    assert {results[run_id].status for run_id in [*future, past]} == {ACCEPT}
    # Each accepted state belongs to its own run.
    for run_id in [*future, past]:
        assert results[run_id].state.state_details.flow_run_id == run_id
    assert len({results[run_id].state.id for run_id in [*future, past]}) == 4


async def test_force_accepts_every_run_and_keeps_the_books(stubs):
    future, past, _ = await setup(stubs)
    _, results = await bulk_set(stubs, SCHEDULED_ONLY, state(RUNNING), force=True)
    assert set(results) == {*future, past}
    assert {result.status for result in results.values()} == {ACCEPT}
    for run_id in future:
        run = await get_run(stubs, run_id)
        assert run.state_type == RUNNING and run.run_count == 1
        assert run.HasField("start_time") and not run.HasField("next_scheduled_start_time")


async def test_limit_caps_the_runs_touched(stubs):
    future, past, _ = await setup(stubs)
    _, results = await bulk_set(stubs, SCHEDULED_ONLY, state(PENDING), limit=2)
    assert len(results) == 2
    assert set(results) == set(sorted([*future, past])[:2])  # in id order
    assert await count(stubs, flow_runs=SCHEDULED_ONLY.flow_runs) == 2


async def test_an_empty_id_list_touches_nothing(stubs):
    future, past, running = await setup(stubs)
    messages, results = await bulk_set(stubs, by_ids(), state(RUNNING), force=True)
    assert results == {}
    assert await count(stubs, flow_runs=SCHEDULED_ONLY.flow_runs) == 4
    assert await bulk_delete(stubs, by_ids()) == []
    assert len(await list_runs(stubs)) == 5


async def test_bulk_limit_below_one_is_invalid(stubs):
    await setup(stubs)
    for limit in (0, -1):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await bulk_set(stubs, SCHEDULED_ONLY, state(PENDING), limit=limit)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "limit" in field_violations(raised.value)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await bulk_delete(stubs, SCHEDULED_ONLY, limit=limit)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count(stubs, flow_runs=SCHEDULED_ONLY.flow_runs) == 4


async def test_bulk_delete_by_filter(stubs):
    future, past, running = await setup(stubs)
    deleted = await bulk_delete(stubs, SCHEDULED_ONLY)
    assert sorted(deleted) == sorted([*future, past])
    assert [run.id for run in await list_runs(stubs)] == [running]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get_run(stubs, past)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert await bulk_delete(stubs, SCHEDULED_ONLY) == []


async def test_bulk_delete_with_limit(stubs):
    future, past, running = await setup(stubs)
    deleted = await bulk_delete(stubs, f.FlowRunFilterSet(), limit=3)
    assert deleted == sorted([*future, past, running])[:3]
    assert await count(stubs) == 2


async def test_many_runs_stream_back_in_several_messages(stubs):
    flow = await make_flow(stubs)
    created = await asyncio.gather(
        *(make_run(stubs, flow.id, state=scheduled(T0)) for _ in range(520))
    )
    messages, results = await bulk_set(stubs, f.FlowRunFilterSet(), state(PENDING))
    assert messages >= 2
    assert set(results) == {run.id for run in created}
    assert {result.status for result in results.values()} == {ACCEPT}
    assert await count(stubs, flow_runs=SCHEDULED_ONLY.flow_runs) == 0
    deleted = await bulk_delete(stubs, f.FlowRunFilterSet())
    assert sorted(deleted) == sorted(run.id for run in created)


async def test_a_subflows_parent_task_run_follows_it_in_bulk(stubs):
    flow = await make_flow(stubs)
    parent = await make_run(stubs, flow.id, state=state(RUNNING))
    request = tr.CreateTaskRunRequest(flow_run_id=parent.id, task_key="child-flow")
    task = (await stubs.task_runs.CreateTaskRun(request)).task_run
    child = await make_run(stubs, flow.id, parent_task_run_id=task.id, state=scheduled(T0))
    _, results = await bulk_set(stubs, by_ids(child.id, parent.id), state(CANCELLED), force=True)
    assert {result.status for result in results.values()} == {ACCEPT}
    got = (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task.id))).task_run
    assert got.state_type == CANCELLED
    assert got.state.state_details.child_flow_run_id == child.id
