"""Every kind of JSON value round-trips through the JSON columns (state data, parameters, context,
job variables, labels) and the RPCs that read them.

On SQLite a JSON column has NUMERIC affinity: a document that is a bare number ("42") is stored
as an SQL number, which once made every read of the run fail (issue 14, defect 1)."""

from __future__ import annotations

import sqlite3
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from harness import running_server, sqlite_settings
from helpers import (
    COMPLETED,
    PENDING,
    RUNNING,
    get_run,
    list_runs,
    make_flow,
    make_run,
    set_state,
    state,
)

from flowrpc.v1 import deployment_pb2, flow_run_service_pb2_grpc, flow_service_pb2_grpc
from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import orchestration_pb2 as orc
from flowrpc.v1 import task_run_service_pb2 as tr

# One value of each JSON kind, and numbers SQLite's text-to-number conversion gets wrong.
VALUES = {
    "integer": 42,
    "negative float": -1.5,
    "zero": 0,
    "large": 1e300,
    "smallest": 5e-324,
    "inexact in SQLite": -2.0488198407975285e-302,
    "sum": 0.1 + 0.2,
    "string": "hello",
    "numeric string": "42",
    "empty string": "",
    "true": True,
    "false": False,
    "empty list": [],
    "list": [1, "a", None, True, [2.5]],
    "empty object": {},
    "nested": {"a": {"b": [1, {"c": None}], "n": 3.25, "s": "x"}},
}


def value(data: Any) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(data, struct_pb2.Struct())


def with_data(state_type: int, data: Any) -> Any:
    return state(state_type, data=value(data))


@pytest.fixture(params=list(VALUES.values()), ids=list(VALUES))
def data(request: pytest.FixtureRequest) -> Any:
    return request.param


async def test_flow_run_state_data_round_trips(stubs, data):
    flow = await make_flow(stubs)
    fields = {"v": data}
    run = await make_run(
        stubs,
        flow.id,
        state=with_data(PENDING, data),
        parameters=struct(fields),
        context=struct(fields),
        job_variables=struct(fields),
        labels=struct(fields),
    )
    other = await make_run(stubs, flow.id, state=with_data(PENDING, data))
    expected = value(data)
    assert run.state.data == expected

    running = await set_state(stubs, run.id, with_data(RUNNING, data))
    assert running.status == orc.SET_STATE_STATUS_ACCEPT and running.state.data == expected
    got = await get_run(stubs, run.id)
    assert got.state.data == expected
    assert got.parameters == got.context == got.job_variables == struct(fields)
    assert got.labels.fields["v"] == expected  # beside the labels the server adds
    listed = await list_runs(stubs)
    assert {r.id: r.state.data for r in listed} == {run.id: expected, other.id: expected}

    done = await set_state(stubs, run.id, with_data(COMPLETED, data))
    assert done.status == orc.SET_STATE_STATUS_ACCEPT and done.state.data == expected
    states = await stubs.flow_runs.ListFlowRunStates(
        fr.ListFlowRunStatesRequest(flow_run_id=run.id)
    )
    assert [s.data for s in states.states] == [expected] * 3

    # A bulk chunk holding both runs: the completed one refuses, the other moves on.
    bulk = fr.BulkSetFlowRunStateRequest(state=with_data(RUNNING, data))
    results = [
        r async for chunk in stubs.flow_runs.BulkSetFlowRunState(bulk) for r in chunk.results
    ]
    by_run = {r.flow_run_id: r.result for r in results}
    assert by_run[other.id].status == orc.SET_STATE_STATUS_ACCEPT
    assert by_run[other.id].state.data == expected
    assert (await get_run(stubs, other.id)).state.data == expected


async def test_task_run_state_data_round_trips(stubs, data):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    created = await stubs.task_runs.CreateTaskRun(
        tr.CreateTaskRunRequest(
            flow_run_id=run.id,
            task_key="t",
            state=with_data(PENDING, data),
            labels=struct({"v": data}),
        )
    )
    task = created.task_run
    expected = value(data)
    assert task.state.data == expected
    request = tr.SetTaskRunStateRequest(task_run_id=task.id, state=with_data(RUNNING, data))
    result = (await stubs.task_runs.SetTaskRunState(request)).result
    assert result.status == orc.SET_STATE_STATUS_ACCEPT and result.state.data == expected

    got = (await stubs.task_runs.GetTaskRun(tr.GetTaskRunRequest(id=task.id))).task_run
    assert got.state.data == expected and got.labels.fields["v"] == expected
    listed = (await stubs.task_runs.ListTaskRuns(tr.ListTaskRunsRequest())).task_runs
    assert [t.state.data for t in listed] == [expected]
    graph = await stubs.flow_runs.GetFlowRunGraph(fr.GetFlowRunGraphRequest(flow_run_id=run.id))
    assert [n.state.HasField("data") for n in graph.nodes] == [False]  # graphs leave data out
    request = tr.SetTaskRunStateRequest(task_run_id=task.id, state=with_data(COMPLETED, data))
    done = (await stubs.task_runs.SetTaskRunState(request)).result
    assert done.status == orc.SET_STATE_STATUS_ACCEPT and done.state.data == expected


async def test_deployment_json_fields_round_trip(stubs, data):
    flow = await make_flow(stubs)
    fields = struct({"v": data})
    deployment = deployment_pb2.Deployment(
        name="d", flow_id=flow.id, parameters=fields, job_variables=fields, labels=fields
    )
    created = await stubs.deployments.CreateDeployment(
        dp.CreateDeploymentRequest(deployment=deployment)
    )
    got = await stubs.deployments.GetDeployment(dp.GetDeploymentRequest(id=created.deployment.id))
    got = got.deployment
    assert got.parameters == got.job_variables == fields
    assert got.labels.fields["v"] == value(data)


async def test_null_state_data_reads_as_no_data(stubs):
    """Prefect's semantics: a state whose data is null has no data."""
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(PENDING, data=value(None)))
    assert not (await get_run(stubs, run.id)).state.HasField("data")


async def test_numbers_written_by_earlier_versions_read_back(tmp_path):
    """Earlier versions stored a number document as JSON text, which SQLite's NUMERIC affinity
    turned into an SQL number; such rows read back as that number."""
    settings = sqlite_settings(tmp_path, late_runs_enabled=False, pause_expirations_enabled=False)
    with (
        running_server(settings) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        flows = flow_service_pb2_grpc.FlowServiceStub(ch)
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(ch)
        flow = flows.CreateFlow(fl.CreateFlowRequest(name="old")).flow
        run_id = runs.CreateFlowRun(
            fr.CreateFlowRunRequest(flow_id=flow.id, state=with_data(PENDING, "x"))
        ).flow_run.id
    with sqlite3.connect(tmp_path / "flowrpc.db") as conn:
        # What the old encoding left: the text "42", converted by the column's affinity.
        conn.execute("UPDATE flow_run_state SET data = '42'")
        stored = conn.execute("SELECT typeof(data) FROM flow_run_state").fetchall()
        assert stored == [("integer",)]
    with (
        running_server(settings) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        runs = flow_run_service_pb2_grpc.FlowRunServiceStub(ch)
        got = runs.GetFlowRun(fr.GetFlowRunRequest(id=run_id)).flow_run
        assert got.state.data == value(42)
        listed = runs.ListFlowRuns(fr.ListFlowRunsRequest(filter=f.FlowRunFilterSet())).flow_runs
        assert [r.state.data for r in listed] == [value(42)]
        moved = runs.SetFlowRunState(
            fr.SetFlowRunStateRequest(flow_run_id=run_id, state=with_data(RUNNING, 7))
        ).result
        assert moved.status == orc.SET_STATE_STATUS_ACCEPT
        states = runs.ListFlowRunStates(fr.ListFlowRunStatesRequest(flow_run_id=run_id)).states
        assert [s.data for s in states] == [value(42), value(7)]
