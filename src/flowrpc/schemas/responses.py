"""Prefect's response schemas (`prefect.client.schemas.responses`) and flowrpc's stream items."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import Field, model_validator

from flowrpc.schemas._base import DateTime, FlowRPCBaseModel, ProtoEnum
from flowrpc.schemas.objects import (
    Deployment,
    FlowRun,
    State,
    StateType,
    TaskRunResult,
)

__all__ = [
    "BulkSetStateResult",
    "FlowRunCreateError",
    "FlowRunCreateResult",
    "FlowRunCreateSummary",
    "DependencyResult",
    "DeploymentResponse",
    "FlowRunResponse",
    "FlowRunWatchEvent",
    "HistoryResponse",
    "HistoryResponseState",
    "OrchestrationResult",
    "SetStateStatus",
    "StartedTaskRun",
    "StateAbortDetails",
    "StateAcceptDetails",
    "StateRejectDetails",
    "StateWaitDetails",
]

# Prefect's read methods return *Response models; here they are the objects themselves.
FlowRunResponse = FlowRun
DeploymentResponse = Deployment


class SetStateStatus(ProtoEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    ABORT = "ABORT"
    WAIT = "WAIT"


class StateAcceptDetails(FlowRPCBaseModel):
    type: Literal["accept_details"] = "accept_details"


class StateRejectDetails(FlowRPCBaseModel):
    type: Literal["reject_details"] = "reject_details"
    reason: str | None = None


class StateAbortDetails(FlowRPCBaseModel):
    type: Literal["abort_details"] = "abort_details"
    reason: str | None = None


class StateWaitDetails(FlowRPCBaseModel):
    type: Literal["wait_details"] = "wait_details"
    delay_seconds: int = 0
    reason: str | None = None


# The proto's `details` oneof arms, by field name.
_DETAILS = {
    "accept": "accept_details",
    "reject": "reject_details",
    "wait": "wait_details",
    "abort": "abort_details",
}


class OrchestrationResult(FlowRPCBaseModel):
    """What orchestration decided. REJECT, WAIT and ABORT are normal results, not errors."""

    state: State | None = None
    status: SetStateStatus
    details: StateAcceptDetails | StateWaitDetails | StateRejectDetails | StateAbortDetails = Field(
        default_factory=StateAcceptDetails, discriminator="type"
    )

    @model_validator(mode="before")
    @classmethod
    def _details_from_oneof(cls, data: Any) -> Any:
        # The wire carries details as a oneof (accept/reject/wait/abort); Prefect tags them by type.
        if isinstance(data, dict):
            for arm, tag in _DETAILS.items():
                if arm in data:
                    rest = {k: v for k, v in data.items() if k != arm}
                    return {**rest, "details": {**data[arm], "type": tag}}
        return data


class StartedTaskRun(FlowRPCBaseModel):
    """One start's outcome in `start_task_runs`: the run's id, whether this start created it
    (False: the run with its key existed), the decision on its Running proposal and one on each
    of its `then` states (the results' states carry no data and no message; read the run for
    them)."""

    task_run_id: UUID
    created: bool = False
    result: OrchestrationResult
    then: list[OrchestrationResult] = []


class BulkSetStateResult(OrchestrationResult):
    """One run's outcome in bulk_set_flow_run_state."""

    flow_run_id: UUID


class HistoryResponseState(FlowRPCBaseModel):
    state_type: StateType
    state_name: str
    count_runs: int = 0
    sum_estimated_run_time: timedelta = timedelta(0)
    sum_estimated_lateness: timedelta = timedelta(0)


class HistoryResponse(FlowRPCBaseModel):
    """Run counts per state among the runs expected to start in [interval_start, interval_end)."""

    interval_start: DateTime
    interval_end: DateTime
    states: list[HistoryResponseState] = Field(default_factory=list)


class DependencyResult(FlowRPCBaseModel):
    """One task run of a flow run's graph (Prefect's `read_flow_run_graph` v1 node)."""

    id: UUID
    name: str
    upstream_dependencies: list[TaskRunResult] = Field(default_factory=list)
    state: State | None = None
    expected_start_time: DateTime | None = None
    start_time: DateTime | None = None
    end_time: DateTime | None = None
    total_run_time: timedelta | None = None
    estimated_run_time: timedelta | None = None
    untrackable_result: bool = False


class FlowRunCreateError(FlowRPCBaseModel):
    """Why one run of `create_flow_runs` was not created: the error its single create would have
    raised. Nothing of the run was written."""

    code: str  # the gRPC status code's name: "NOT_FOUND", "INVALID_ARGUMENT", ...
    reason: str  # FLOW_NOT_FOUND, DEPLOYMENT_NOT_FOUND, INVALID_ARGUMENT, LIMIT_EXCEEDED, ...
    message: str
    # Field path (from the run's create request, e.g. "flow_run.state.type") -> what is wrong.
    field_violations: dict[str, str] = Field(default_factory=dict)


class FlowRunCreateResult(FlowRPCBaseModel):
    """One run's outcome in `create_flow_runs`: `flow_run` (created, or the run its idempotency
    key already named: `created` False), or `error`."""

    flow_run: FlowRun | None = None
    created: bool = False
    error: FlowRunCreateError | None = None


class FlowRunCreateSummary(FlowRPCBaseModel):
    """One run's outcome in `create_flow_runs(..., view="basic")`: the run's `id`, `name` and
    state (created, or the run its idempotency key already named: `created` False), or `error`.
    `read_flow_run(id)` reads the whole run."""

    id: UUID | None = None
    name: str | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    created: bool = False
    error: FlowRunCreateError | None = None


class FlowRunWatchEvent(FlowRPCBaseModel):
    """One item of `watch_flow_runs`, by `type`:

    * "snapshot": `flow_run` is a run the filters selected when the watch started;
    * "marker": the snapshot is complete; `cursor` is where the changes start;
    * "change": `flow_run` right after a committed state change, `state` its new state;
    * "progress": no matching change for a while; `cursor` moves on.

    Pass the last `cursor` seen as `since` to resume after it, nothing missed or repeated
    (within the server's retention window)."""

    type: Literal["snapshot", "marker", "change", "progress"]
    flow_run: FlowRun | None = None
    state: State | None = None
    cursor: str | None = None
