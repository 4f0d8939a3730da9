"""GetFlowRunGraph: one node per task run, upstream dependencies from task_inputs."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from helpers import COMPLETED, PENDING, RUNNING, at, error_info, make_flow, make_run, state

from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import state_pb2
from flowrpc.v1 import task_run_pb2 as trp
from flowrpc.v1 import task_run_service_pb2 as tr

TASK_RUN = trp.TASK_RUN_INPUT_TYPE_TASK_RUN


def from_task(task_id):
    return trp.TaskRunInput(input_type=TASK_RUN, id=task_id)


def inputs(*items):
    return trp.TaskRunInputs(inputs=list(items))


async def make_task(stubs, flow_run_id, key, **fields):
    request = tr.CreateTaskRunRequest(flow_run_id=flow_run_id, task_key=key, name=key, **fields)
    return (await stubs.task_runs.CreateTaskRun(request)).task_run


async def graph(stubs, run_id):
    request = fr.GetFlowRunGraphRequest(flow_run_id=run_id)
    return {node.id: node for node in (await stubs.flow_runs.GetFlowRunGraph(request)).nodes}


async def test_graph_nodes_and_deduplicated_upstream_dependencies(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    a = await make_task(stubs, run.id, "a", state=state(COMPLETED))
    b = await make_task(
        stubs,
        run.id,
        "b",
        task_inputs={
            "x": inputs(from_task(a.id), from_task(a.id)),
            "y": inputs(
                from_task(a.id),
                trp.TaskRunInput(input_type=trp.TASK_RUN_INPUT_TYPE_PARAMETER, name="p"),
                trp.TaskRunInput(input_type=trp.TASK_RUN_INPUT_TYPE_CONSTANT, type="int"),
            ),
        },
        state=state(RUNNING),
    )
    c = await make_task(
        stubs, run.id, "c", task_inputs={"x": inputs(from_task(a.id)), "y": inputs(from_task(b.id))}
    )
    other_run = await make_run(stubs, flow.id, state=state(RUNNING))
    await make_task(stubs, other_run.id, "elsewhere", task_inputs={"x": inputs(from_task(a.id))})

    nodes = await graph(stubs, run.id)
    assert set(nodes) == {a.id, b.id, c.id}
    assert list(nodes[a.id].upstream_dependencies) == []
    assert [(d.input_type, d.id) for d in nodes[b.id].upstream_dependencies] == [(TASK_RUN, a.id)]
    assert {d.id for d in nodes[c.id].upstream_dependencies} == {a.id, b.id}
    assert len(nodes[c.id].upstream_dependencies) == 2

    assert nodes[a.id].name == "a"
    assert nodes[a.id].state.type == COMPLETED
    assert nodes[b.id].state.type == RUNNING and nodes[c.id].state.type == PENDING
    assert at(nodes[a.id], "end_time") == at(nodes[a.id].state, "timestamp")
    assert at(nodes[b.id], "start_time") == at(nodes[b.id].state, "timestamp")
    assert not nodes[c.id].HasField("start_time")
    assert at(nodes[c.id], "expected_start_time") == at(nodes[c.id].state, "timestamp")
    assert nodes[a.id].untrackable_result is False


async def test_untrackable_result_comes_from_the_current_state(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    details = state_pb2.StateDetails(untrackable_result=True)
    task = await make_task(stubs, run.id, "t", state=state(COMPLETED, details=details))
    nodes = await graph(stubs, run.id)
    assert nodes[task.id].untrackable_result is True


async def test_graph_of_a_run_without_task_runs_is_empty(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    assert await graph(stubs, run.id) == {}


async def test_graph_of_a_missing_run_is_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await graph(stubs, "00000000-0000-7000-8000-000000000000")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "FLOW_RUN_NOT_FOUND"


async def test_nodes_leave_out_state_data_so_large_results_still_fit(stubs):
    # Twelve results of 400 KB (each under max_json_bytes) weigh more than a 4 MiB response.
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    result = struct_pb2.Value(string_value="x" * 400_000)
    tasks = [
        await make_task(stubs, run.id, f"t{i}", state=state(COMPLETED, data=result))
        for i in range(12)
    ]
    nodes = await graph(stubs, run.id)
    assert set(nodes) == {task.id for task in tasks}
    assert all(node.state.type == COMPLETED for node in nodes.values())
    assert not any(node.state.HasField("data") for node in nodes.values())
    read = await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=tasks[0].id))
    assert read.task_run.state.data == result  # the task run itself keeps it
