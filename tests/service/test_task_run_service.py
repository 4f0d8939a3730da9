"""TaskRunService: create (idempotent), get, list with filters, set state."""

from __future__ import annotations

import grpc
import pytest
from helpers import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    at,
    error_info,
    make_flow,
    make_run,
    state,
    strings,
    types,
)

from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import orchestration_pb2 as orc
from flowrpc.v1 import task_run_service_pb2 as tr


async def create_task(stubs, flow_run_id, key, **fields):
    request = tr.CreateTaskRunRequest(flow_run_id=flow_run_id, task_key=key, **fields)
    return await stubs.task_runs.CreateTaskRun(request)


async def set_task_state(stubs, task_run_id, proposed, force=False):
    request = tr.SetTaskRunStateRequest(task_run_id=task_run_id, state=proposed, force=force)
    return (await stubs.task_runs.SetTaskRunState(request)).result


async def list_tasks(stubs, **request):
    return list((await stubs.task_runs.ListTaskRuns(tr.ListTaskRunsRequest(**request))).task_runs)


async def test_create_and_get_a_task_run(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    response = await create_task(stubs, run.id, "extract", name="extract-1", tags=["io"])
    task = response.task_run
    assert response.created is True
    assert task.flow_run_id == run.id and task.task_key == "extract"
    assert task.state.type == PENDING and task.state_type == PENDING
    assert task.state.state_details.task_run_id == task.id
    assert task.state.state_details.flow_run_id == run.id
    got = (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task.id))).task_run
    assert got.name == "extract-1" and list(got.tags) == ["io"]
    assert got.state.id == task.state.id


async def test_create_is_idempotent_on_flow_run_task_key_and_dynamic_key(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    first = await create_task(stubs, run.id, "k", dynamic_key="0", name="first")
    again = await create_task(stubs, run.id, "k", dynamic_key="0", name="second")
    other = await create_task(stubs, run.id, "k", dynamic_key="1")
    assert first.created and not again.created and other.created
    assert again.task_run.id == first.task_run.id and again.task_run.name == "first"
    assert other.task_run.id != first.task_run.id


async def test_set_task_run_state(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    task = (await create_task(stubs, run.id, "t")).task_run
    running = await set_task_state(stubs, task.id, state(RUNNING))
    assert running.status == orc.SET_STATE_STATUS_ACCEPT
    done = await set_task_state(stubs, task.id, state(COMPLETED))
    assert done.status == orc.SET_STATE_STATUS_ACCEPT
    got = (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task.id))).task_run
    assert got.state_type == COMPLETED and got.run_count == 1
    assert got.flow_run_run_count == 1
    assert at(got, "start_time") == at(running.state, "timestamp")
    assert at(got, "end_time") == at(done.state, "timestamp")


async def test_task_cannot_run_unless_its_flow_runs(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)  # Pending
    task = (await create_task(stubs, run.id, "t")).task_run
    result = await set_task_state(stubs, task.id, state(RUNNING))
    assert result.status == orc.SET_STATE_STATUS_ABORT
    assert result.abort.reason == "The enclosing flow must be running to begin task execution."
    forced = await set_task_state(stubs, task.id, state(RUNNING), force=True)
    assert forced.status == orc.SET_STATE_STATUS_ACCEPT


async def test_list_task_runs_with_filters(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, name="one", state=state(RUNNING))
    other = await make_run(stubs, flow.id, name="two", state=state(RUNNING))
    a = (await create_task(stubs, run.id, "a", name="a", state=state(COMPLETED))).task_run
    b = (await create_task(stubs, run.id, "b", name="b", state=state(FAILED))).task_run
    c = (await create_task(stubs, other.id, "c", name="c")).task_run
    assert [t.id for t in await list_tasks(stubs)] == [c.id, b.id, a.id]  # newest first
    done = f.TaskRunFilter(
        state=f.TaskRunFilterState(type=f.TaskRunFilterStateType(any_of=types(COMPLETED, FAILED)))
    )
    assert [t.id for t in await list_tasks(stubs, task_runs=done)] == [b.id, a.id]
    of_run = f.FlowRunFilter(name=f.FlowRunFilterName(any_of=strings("two")))
    assert [t.id for t in await list_tasks(stubs, flow_runs=of_run)] == [c.id]
    by_flow_run = f.TaskRunFilter(flow_run_id=f.TaskRunFilterFlowRunId(any_of=strings(run.id)))
    assert {t.id for t in await list_tasks(stubs, task_runs=by_flow_run)} == {a.id, b.id}
    assert len(await list_tasks(stubs, limit=1)) == 1
    assert [t.id for t in await list_tasks(stubs, offset=2)] == [a.id]


async def test_task_run_of_a_missing_flow_run_is_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create_task(stubs, "00000000-0000-7000-8000-000000000000", "k")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "FLOW_RUN_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.task_runs.GetTaskRun(
            tr.GetTaskRunRequest(id="00000000-0000-7000-8000-000000000000")
        )
    assert error_info(raised.value).reason == "TASK_RUN_NOT_FOUND"


async def test_flow_run_id_filter_excludes_task_runs_without_a_flow_run(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    inside = (await create_task(stubs, run.id, "inside")).task_run
    background = (await create_task(stubs, "", "background")).task_run
    assert background.flow_run_id == ""
    assert {t.id for t in await list_tasks(stubs)} == {inside.id, background.id}
    given = f.TaskRunFilter(flow_run_id=f.TaskRunFilterFlowRunId())
    assert [t.id for t in await list_tasks(stubs, task_runs=given)] == [inside.id]
    orphans = f.TaskRunFilter(flow_run_id=f.TaskRunFilterFlowRunId(is_null=True))
    assert [t.id for t in await list_tasks(stubs, task_runs=orphans)] == [background.id]


async def test_a_page_of_runs_with_large_states_holds_fewer_and_tokens_go_on(stubs):
    """Ten task runs whose Completed states carry 500 KB each (a persisted result under the
    default max_json_bytes) weigh 5 MB: a page holds what fits in 4 MiB, and its token
    continues after the last run it holds, newest first."""
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    ids = []
    for i in range(10):
        task = (await create_task(stubs, run.id, f"big-{i}")).task_run
        await set_task_state(stubs, task.id, state(RUNNING))
        done = state(COMPLETED)
        done.data.string_value = f"{i}" + "x" * 500_000
        await set_task_state(stubs, task.id, done)
        ids.append(task.id)
    mine = f.TaskRunFilter(flow_run_id=f.TaskRunFilterFlowRunId(any_of=strings(run.id)))
    first = await stubs.task_runs.ListTaskRuns(tr.ListTaskRunsRequest(task_runs=mine))
    assert 0 < len(first.task_runs) < 10 and first.next_page_token
    seen, token = [], ""
    while True:
        request = tr.ListTaskRunsRequest(task_runs=mine, page_token=token)
        page = await stubs.task_runs.ListTaskRuns(request)
        seen += [task.id for task in page.task_runs]
        assert all(len(task.state.data.string_value) == 500_001 for task in page.task_runs)
        if not (token := page.next_page_token):
            break
    assert seen == ids[::-1]


async def test_task_run_page_tokens_continue_only_their_own_query(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    for key in "abc":
        await create_task(stubs, run.id, key)
    mine = f.TaskRunFilter(flow_run_id=f.TaskRunFilterFlowRunId(any_of=strings(run.id)))
    first = await stubs.task_runs.ListTaskRuns(tr.ListTaskRunsRequest(task_runs=mine, limit=2))
    assert len(first.task_runs) == 2 and first.next_page_token
    token = first.next_page_token
    rest = await list_tasks(stubs, task_runs=mine, page_token=token)
    everything = await list_tasks(stubs, task_runs=mine)
    assert [t.id for t in first.task_runs] + [t.id for t in rest] == [t.id for t in everything]
    for request, field in (
        (tr.ListTaskRunsRequest(task_runs=mine, page_token=token, offset=1), "offset"),
        (tr.ListTaskRunsRequest(page_token=token), "page_token"),  # another filter
        (tr.ListTaskRunsRequest(task_runs=mine, page_token="forged"), "page_token"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stubs.task_runs.ListTaskRuns(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in raised.value.details()
