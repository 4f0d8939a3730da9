"""Small helpers for the service tests: times, states, creating flows and runs, rich status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from flowrpc.v1 import (
    asset_service_pb2_grpc,
    deployment_service_pb2_grpc,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    log_service_pb2_grpc,
    state_pb2,
    task_run_service_pb2_grpc,
    work_pool_service_pb2_grpc,
)
from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_service_pb2 as fl

# Fixed instants, so tests never depend on the wall clock unless they compare with "now".
T0 = datetime(2024, 1, 1, tzinfo=UTC)
FUTURE = datetime(2100, 1, 1, tzinfo=UTC)

SCHEDULED = state_pb2.STATE_TYPE_SCHEDULED
PENDING = state_pb2.STATE_TYPE_PENDING
RUNNING = state_pb2.STATE_TYPE_RUNNING
COMPLETED = state_pb2.STATE_TYPE_COMPLETED
FAILED = state_pb2.STATE_TYPE_FAILED
CANCELLED = state_pb2.STATE_TYPE_CANCELLED
CRASHED = state_pb2.STATE_TYPE_CRASHED
PAUSED = state_pb2.STATE_TYPE_PAUSED
CANCELLING = state_pb2.STATE_TYPE_CANCELLING


def service_stubs(channel: grpc.aio.Channel) -> SimpleNamespace:
    """A stub of each service on the channel (and the channel), named as the tests use them."""
    return SimpleNamespace(
        channel=channel,
        flow_runs=flow_run_service_pb2_grpc.FlowRunServiceStub(channel),
        flows=flow_service_pb2_grpc.FlowServiceStub(channel),
        deployments=deployment_service_pb2_grpc.DeploymentServiceStub(channel),
        work_pools=work_pool_service_pb2_grpc.WorkPoolServiceStub(channel),
        task_runs=task_run_service_pb2_grpc.TaskRunServiceStub(channel),
        logs=log_service_pb2_grpc.LogServiceStub(channel),
        assets=asset_service_pb2_grpc.AssetServiceStub(channel),
    )


# ---- times ----


def ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def at(message: Message, field: str) -> datetime | None:
    """A Timestamp field as an aware datetime; None when unset."""
    if not message.HasField(field):
        return None
    return getattr(message, field).ToDatetime(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def close_to_now(when: datetime | None, seconds: float = 10) -> bool:
    return when is not None and abs((now() - when).total_seconds()) < seconds


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# ---- states ----


def state(
    state_type: int, name: str = "", scheduled: datetime | None = None, **fields: Any
) -> state_pb2.State:
    details = state_pb2.StateDetails(scheduled_time=ts(scheduled) if scheduled else None)
    extra = fields.pop("details", None)
    if extra is not None:
        details.MergeFrom(extra)
    return state_pb2.State(type=state_type, name=name, state_details=details, **fields)


def scheduled(when: datetime, name: str = "") -> state_pb2.State:
    return state(SCHEDULED, name, scheduled=when)


# ---- objects ----


async def make_flow(stubs: Any, name: str = "etl", **fields: Any) -> Any:
    return (await stubs.flows.CreateFlow(fl.CreateFlowRequest(name=name, **fields))).flow


async def make_run(stubs: Any, flow_id: str, **fields: Any) -> Any:
    """Creates a run and returns it (the FlowRun message)."""
    request = fr.CreateFlowRunRequest(flow_id=flow_id, **fields)
    return (await stubs.flow_runs.CreateFlowRun(request)).flow_run


async def get_run(stubs: Any, run_id: str) -> Any:
    return (await stubs.flow_runs.GetFlowRun(fr.GetFlowRunRequest(id=run_id))).flow_run


async def set_state(stubs: Any, run_id: str, proposed: state_pb2.State, force: bool = False) -> Any:
    """The OrchestrationResult of proposing `proposed`."""
    request = fr.SetFlowRunStateRequest(flow_run_id=run_id, state=proposed, force=force)
    return (await stubs.flow_runs.SetFlowRunState(request)).result


async def list_runs(stubs: Any, **request: Any) -> list[Any]:
    return list((await stubs.flow_runs.ListFlowRuns(fr.ListFlowRunsRequest(**request))).flow_runs)


async def matching(stubs: Any, **filter_set: Any) -> set[str]:
    """Ids of the runs a FlowRunFilterSet (keyword arguments) selects."""
    runs = await list_runs(stubs, filter=f.FlowRunFilterSet(**filter_set))
    return {run.id for run in runs}


async def count(stubs: Any, **filter_set: Any) -> int:
    request = fr.CountFlowRunsRequest(filter=f.FlowRunFilterSet(**filter_set))
    return (await stubs.flow_runs.CountFlowRuns(request)).count


def strings(*values: str) -> f.StringList:
    return f.StringList(values=list(values))


def types(*values: int) -> f.StateTypeList:
    return f.StateTypeList(values=list(values))


# ---- errors ----


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status carried in the trailing metadata "grpc-status-details-bin"."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no rich status on {error.code()}: {error.details()}")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in rich_status(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo in the rich status")


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """BadRequest field violations: field -> description."""
    for detail in rich_status(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return {v.field: v.description for v in bad.field_violations}
    raise AssertionError("no BadRequest in the rich status")
