"""Error statuses with rich details (ErrorInfo, BadRequest); the server serves on after each."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.duration_pb2 import Duration
from helpers import (
    RUNNING,
    T0,
    error_info,
    field_violations,
    get_run,
    make_flow,
    make_run,
    rich_status,
    state,
    strings,
    ts,
)

from flowrpc.v1 import deployment_service_pb2 as dp
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_pb2, state_pb2
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl
from flowrpc.v1 import task_run_service_pb2 as tr
from flowrpc.v1 import work_pool_service_pb2 as wp

MISSING = "00000000-0000-7000-8000-000000000000"


async def call(stubs, service, method, request):
    """Calls a unary or server-streaming method to the end."""
    result = getattr(getattr(stubs, service), method)(request)
    if hasattr(result, "__aiter__"):
        return [message async for message in result]
    return await result


async def fails(stubs, service, method, request, code):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(stubs, service, method, request)
    error = raised.value
    assert error.code() == code, error.details()
    status = rich_status(error)
    assert status.code == code.value[0]
    assert status.message == error.details()
    assert "Traceback" not in error.details()
    return error


async def still_serving(stubs, run_id):
    assert (await get_run(stubs, run_id)).id == run_id


NOT_FOUND_CALLS = [
    ("flow_runs", "GetFlowRun", fr.GetFlowRunRequest(id=MISSING), "FLOW_RUN_NOT_FOUND"),
    ("flow_runs", "DeleteFlowRun", fr.DeleteFlowRunRequest(id=MISSING), "FLOW_RUN_NOT_FOUND"),
    (
        "flow_runs",
        "SetFlowRunState",
        fr.SetFlowRunStateRequest(flow_run_id=MISSING, state=state(RUNNING)),
        "FLOW_RUN_NOT_FOUND",
    ),
    (
        "flow_runs",
        "ResumeFlowRun",
        fr.ResumeFlowRunRequest(flow_run_id=MISSING),
        "FLOW_RUN_NOT_FOUND",
    ),
    (
        "flow_runs",
        "ListFlowRunStates",
        fr.ListFlowRunStatesRequest(flow_run_id=MISSING),
        "FLOW_RUN_NOT_FOUND",
    ),
    (
        "flow_runs",
        "GetFlowRunGraph",
        fr.GetFlowRunGraphRequest(flow_run_id=MISSING),
        "FLOW_RUN_NOT_FOUND",
    ),
    (
        "flow_runs",
        "UpdateFlowRun",
        fr.UpdateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(id=MISSING, name="x"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        "FLOW_RUN_NOT_FOUND",
    ),
    ("flow_runs", "CreateFlowRun", fr.CreateFlowRunRequest(flow_id=MISSING), "FLOW_NOT_FOUND"),
    ("flows", "GetFlow", fl.GetFlowRequest(id=MISSING), "FLOW_NOT_FOUND"),
    ("flows", "DeleteFlow", fl.DeleteFlowRequest(id=MISSING), "FLOW_NOT_FOUND"),
    ("deployments", "GetDeployment", dp.GetDeploymentRequest(id=MISSING), "DEPLOYMENT_NOT_FOUND"),
    (
        "deployments",
        "DeleteDeployment",
        dp.DeleteDeploymentRequest(id=MISSING),
        "DEPLOYMENT_NOT_FOUND",
    ),
    ("task_runs", "GetTaskRun", tr.GetTaskRunRequest(id=MISSING), "TASK_RUN_NOT_FOUND"),
    (
        "task_runs",
        "SetTaskRunState",
        tr.SetTaskRunStateRequest(task_run_id=MISSING, state=state(RUNNING)),
        "TASK_RUN_NOT_FOUND",
    ),
    ("work_pools", "GetWorkPool", wp.GetWorkPoolRequest(name="nope"), "WORK_POOL_NOT_FOUND"),
    ("work_pools", "DeleteWorkPool", wp.DeleteWorkPoolRequest(name="nope"), "WORK_POOL_NOT_FOUND"),
]


@pytest.mark.parametrize(
    ("service", "method", "request_", "reason"),
    NOT_FOUND_CALLS,
    ids=[f"{c[1]}" for c in NOT_FOUND_CALLS],
)
async def test_missing_objects_are_not_found_with_error_info(
    stubs, service, method, request_, reason
):
    run = await make_run(stubs, (await make_flow(stubs)).id)
    error = await fails(stubs, service, method, request_, grpc.StatusCode.NOT_FOUND)
    info = error_info(error)
    assert info.reason == reason
    assert info.domain == "flowrpc"
    await still_serving(stubs, run.id)


def history(interval: timedelta) -> fr.StreamFlowRunHistoryRequest:
    span = Duration()
    span.FromTimedelta(interval)
    return fr.StreamFlowRunHistoryRequest(
        history_start=ts(T0), history_end=ts(T0 + timedelta(hours=1)), history_interval=span
    )


def state_filter(*state_types: int) -> f.FlowRunFilterSet:
    by_type = f.FlowRunFilterStateType(any_of=f.StateTypeList(values=list(state_types)))
    return f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(state=f.FlowRunFilterState(type=by_type)))


INVALID_CALLS = [
    # (id, service, method, request, the field a violation names)
    ("malformed-run-id", "flow_runs", "GetFlowRun", fr.GetFlowRunRequest(id="nope"), "id"),
    ("empty-run-id", "flow_runs", "GetFlowRun", fr.GetFlowRunRequest(), "id"),
    (
        "malformed-flow-id",
        "flow_runs",
        "CreateFlowRun",
        fr.CreateFlowRunRequest(flow_id="not-a-uuid"),
        "flow_id",
    ),
    (
        "malformed-set-state-id",
        "flow_runs",
        "SetFlowRunState",
        fr.SetFlowRunStateRequest(flow_run_id="x", state=state(RUNNING)),
        "flow_run_id",
    ),
    (
        "malformed-id-in-filter",
        "flow_runs",
        "ListFlowRuns",
        fr.ListFlowRunsRequest(
            filter=f.FlowRunFilterSet(
                flow_runs=f.FlowRunFilter(id=f.FlowRunFilterId(any_of=strings("zzz")))
            )
        ),
        "filter.flow_runs.id.any_of.values",
    ),
    ("limit-negative", "flow_runs", "ListFlowRuns", fr.ListFlowRunsRequest(limit=-1), "limit"),
    ("limit-201", "flow_runs", "ListFlowRuns", fr.ListFlowRunsRequest(limit=201), "limit"),
    ("offset-negative", "flow_runs", "ListFlowRuns", fr.ListFlowRunsRequest(offset=-1), "offset"),
    ("flows-limit-201", "flows", "ListFlows", fl.ListFlowsRequest(limit=201), "limit"),
    (
        "tasks-limit-negative",
        "task_runs",
        "ListTaskRuns",
        tr.ListTaskRunsRequest(limit=-1),
        "limit",
    ),
    (
        "deployments-limit-201",
        "deployments",
        "ListDeployments",
        dp.ListDeploymentsRequest(limit=201),
        "limit",
    ),
    (
        "pools-limit-negative",
        "work_pools",
        "ListWorkPools",
        wp.ListWorkPoolsRequest(limit=-1),
        "limit",
    ),
    (
        "history-interval-short",
        "flow_runs",
        "StreamFlowRunHistory",
        history(timedelta(milliseconds=500)),
        "history_interval",
    ),
    ("sort-99", "flow_runs", "ListFlowRuns", fr.ListFlowRunsRequest(sort=99), "sort"),
    (
        "state-type-42",
        "flow_runs",
        "SetFlowRunState",
        fr.SetFlowRunStateRequest(flow_run_id=MISSING, state=state_pb2.State(type=42)),
        "state.type",
    ),
    (
        "state-type-42-in-create",
        "flow_runs",
        "CreateFlowRun",
        fr.CreateFlowRunRequest(flow_id=MISSING, state=state_pb2.State(type=42)),
        "state.type",
    ),
    (
        "state-type-42-in-filter",
        "flow_runs",
        "CountFlowRuns",
        fr.CountFlowRunsRequest(filter=state_filter(42)),
        "filter.flow_runs.state.type.any_of.values",
    ),
    (
        "operator-7",
        "flow_runs",
        "ListFlowRuns",
        fr.ListFlowRunsRequest(filter=f.FlowRunFilterSet(flow_runs=f.FlowRunFilter(operator=7))),
        "filter.flow_runs.operator",
    ),
    (
        "bulk-state-type-42",
        "flow_runs",
        "BulkSetFlowRunState",
        fr.BulkSetFlowRunStateRequest(state=state_pb2.State(type=42)),
        "state.type",
    ),
    (
        "bulk-limit-0",
        "flow_runs",
        "BulkDeleteFlowRuns",
        fr.BulkDeleteFlowRunsRequest(limit=0),
        "limit",
    ),
]


@pytest.mark.parametrize(
    ("service", "method", "request_", "field"),
    [c[1:] for c in INVALID_CALLS],
    ids=[c[0] for c in INVALID_CALLS],
)
async def test_invalid_arguments_name_the_field(stubs, service, method, request_, field):
    run = await make_run(stubs, (await make_flow(stubs)).id)
    error = await fails(stubs, service, method, request_, grpc.StatusCode.INVALID_ARGUMENT)
    violations = field_violations(error)
    assert field in violations, violations
    assert violations[field]  # a description of what is wrong
    assert error_info(error).domain == "flowrpc"
    assert error_info(error).reason == "INVALID_ARGUMENT"
    await still_serving(stubs, run.id)
    assert (await get_run(stubs, run.id)).state.id == run.state.id  # nothing changed


async def test_a_malformed_id_is_reported_with_the_value(stubs):
    error = await fails(
        stubs,
        "flow_runs",
        "GetFlowRun",
        fr.GetFlowRunRequest(id="nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "nope" in field_violations(error)["id"]


async def test_limit_bounds_are_inclusive(stubs):
    flow = await make_flow(stubs)
    await make_run(stubs, flow.id)
    for limit in (0, 200):
        response = await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest(limit=limit))
        assert len(response.flow_runs) == min(limit, 1)


async def test_many_errors_in_a_row_leave_the_server_healthy(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id, state=state(RUNNING))
    for _ in range(20):
        await fails(
            stubs,
            "flow_runs",
            "GetFlowRun",
            fr.GetFlowRunRequest(id=MISSING),
            grpc.StatusCode.NOT_FOUND,
        )
        await fails(
            stubs,
            "flow_runs",
            "ListFlowRuns",
            fr.ListFlowRunsRequest(sort=99),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    await still_serving(stubs, run.id)
    assert len((await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest())).flow_runs) == 1
