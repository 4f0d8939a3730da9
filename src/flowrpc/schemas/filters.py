"""Prefect's client filters (`prefect.client.schemas.filters`), one class per filter.proto message.

Field names are Prefect's (`any_`, `not_any_`, `like_`, `before_`, ...); nested filters accept
plain dicts (`FlowRunFilter(state=dict(name=dict(any_=["Late"])))`) and unknown keys raise a
ValidationError. Unset (None) criteria are ignored, so an empty filter matches everything; an empty
`any_` list matches nothing. `to_proto()` converts any filter with the generic rule of `_proto`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field

from flowrpc.schemas import _proto
from flowrpc.schemas._base import DateTime, ProtoEnum
from flowrpc.schemas.objects import StateType
from flowrpc.v1 import filter_pb2, log_pb2


class Operator(ProtoEnum):
    """How a filter object combines its own criteria."""

    and_ = "and_"
    or_ = "or_"


class PrefectFilterBaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_proto(self) -> Message:
        """The filter.proto message of the same name as this class."""
        return _proto.to_message(getattr(filter_pb2, type(self).__name__), self)


class PrefectOperatorFilterBaseModel(PrefectFilterBaseModel):
    operator: Operator = Field(default=Operator.and_)


# ---- flows ----


class FlowFilterId(PrefectFilterBaseModel):
    any_: list[UUID] | None = None
    not_any_: list[UUID] | None = None


class FlowFilterDeployment(PrefectFilterBaseModel):
    is_null_: bool | None = None


class FlowFilterName(PrefectFilterBaseModel):
    any_: list[str] | None = None
    like_: str | None = None


class FlowFilterTags(PrefectOperatorFilterBaseModel):
    all_: list[str] | None = None
    is_null_: bool | None = None


class FlowFilter(PrefectOperatorFilterBaseModel):
    id: FlowFilterId | None = None
    deployment: FlowFilterDeployment | None = None
    name: FlowFilterName | None = None
    tags: FlowFilterTags | None = None


# ---- flow runs ----


class FlowRunFilterId(PrefectFilterBaseModel):
    any_: list[UUID] | None = None
    not_any_: list[UUID] | None = None


class FlowRunFilterName(PrefectFilterBaseModel):
    any_: list[str] | None = None
    like_: str | None = None


class FlowRunFilterTags(PrefectOperatorFilterBaseModel):
    all_: list[str] | None = None
    any_: list[str] | None = None
    is_null_: bool | None = None


class FlowRunFilterDeploymentId(PrefectOperatorFilterBaseModel):
    any_: list[UUID] | None = None
    is_null_: bool | None = None


class FlowRunFilterWorkQueueName(PrefectOperatorFilterBaseModel):
    any_: list[str] | None = None
    is_null_: bool | None = None


class FlowRunFilterStateType(PrefectFilterBaseModel):
    any_: list[StateType] | None = None
    not_any_: list[StateType] | None = None


class FlowRunFilterStateName(PrefectFilterBaseModel):
    any_: list[str] | None = None
    not_any_: list[str] | None = None


class FlowRunFilterState(PrefectOperatorFilterBaseModel):
    type: FlowRunFilterStateType | None = None
    name: FlowRunFilterStateName | None = None


class FlowRunFilterFlowVersion(PrefectFilterBaseModel):
    any_: list[str] | None = None


class FlowRunFilterStartTime(PrefectFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None
    is_null_: bool | None = None


class FlowRunFilterEndTime(PrefectFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None
    is_null_: bool | None = None


class FlowRunFilterExpectedStartTime(PrefectFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None


class FlowRunFilterNextScheduledStartTime(PrefectFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None


class FlowRunFilterParentFlowRunId(PrefectOperatorFilterBaseModel):
    any_: list[UUID] | None = None


class FlowRunFilterParentTaskRunId(PrefectOperatorFilterBaseModel):
    any_: list[UUID] | None = None
    is_null_: bool | None = None


class FlowRunFilterIdempotencyKey(PrefectFilterBaseModel):
    any_: list[str] | None = None
    not_any_: list[str] | None = None


class FlowRunFilterCreatedBy(PrefectOperatorFilterBaseModel):
    id_: list[UUID] | None = None
    type_: list[str] | None = None
    is_null_: bool | None = None


class FlowRunFilter(PrefectOperatorFilterBaseModel):
    id: FlowRunFilterId | None = None
    name: FlowRunFilterName | None = None
    tags: FlowRunFilterTags | None = None
    deployment_id: FlowRunFilterDeploymentId | None = None
    work_queue_name: FlowRunFilterWorkQueueName | None = None
    state: FlowRunFilterState | None = None
    flow_version: FlowRunFilterFlowVersion | None = None
    start_time: FlowRunFilterStartTime | None = None
    end_time: FlowRunFilterEndTime | None = None
    expected_start_time: FlowRunFilterExpectedStartTime | None = None
    next_scheduled_start_time: FlowRunFilterNextScheduledStartTime | None = None
    parent_flow_run_id: FlowRunFilterParentFlowRunId | None = None
    parent_task_run_id: FlowRunFilterParentTaskRunId | None = None
    idempotency_key: FlowRunFilterIdempotencyKey | None = None
    created_by: FlowRunFilterCreatedBy | None = None


# ---- task runs ----


class TaskRunFilterId(PrefectFilterBaseModel):
    any_: list[UUID] | None = None


class TaskRunFilterName(PrefectFilterBaseModel):
    any_: list[str] | None = None
    like_: str | None = None


class TaskRunFilterTags(PrefectOperatorFilterBaseModel):
    all_: list[str] | None = None
    is_null_: bool | None = None


class TaskRunFilterStateType(PrefectFilterBaseModel):
    any_: list[StateType] | None = None


class TaskRunFilterStateName(PrefectFilterBaseModel):
    any_: list[str] | None = None


class TaskRunFilterState(PrefectOperatorFilterBaseModel):
    type: TaskRunFilterStateType | None = None
    name: TaskRunFilterStateName | None = None


class TaskRunFilterStartTime(PrefectFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None
    is_null_: bool | None = None


class TaskRunFilterEndTime(PrefectFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None
    is_null_: bool | None = None


class TaskRunFilterExpectedStartTime(PrefectFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None


class TaskRunFilterSubFlowRuns(PrefectFilterBaseModel):
    exists_: bool | None = None


class TaskRunFilterFlowRunId(PrefectOperatorFilterBaseModel):
    any_: list[UUID] | None = None
    # Prefect's default: giving this filter excludes task runs without a flow run.
    is_null_: bool = False


class TaskRunFilter(PrefectOperatorFilterBaseModel):
    id: TaskRunFilterId | None = None
    name: TaskRunFilterName | None = None
    tags: TaskRunFilterTags | None = None
    state: TaskRunFilterState | None = None
    start_time: TaskRunFilterStartTime | None = None
    end_time: TaskRunFilterEndTime | None = None
    expected_start_time: TaskRunFilterExpectedStartTime | None = None
    subflow_runs: TaskRunFilterSubFlowRuns | None = None
    flow_run_id: TaskRunFilterFlowRunId | None = None


# ---- deployments ----


class DeploymentFilterId(PrefectFilterBaseModel):
    any_: list[UUID] | None = None
    not_any_: list[UUID] | None = None


class DeploymentFilterName(PrefectFilterBaseModel):
    any_: list[str] | None = None
    like_: str | None = None


class DeploymentFilterFlowOrDeploymentName(PrefectFilterBaseModel):
    like_: str | None = None


class DeploymentFilterPaused(PrefectFilterBaseModel):
    eq_: bool | None = None


class DeploymentFilterTags(PrefectOperatorFilterBaseModel):
    all_: list[str] | None = None
    any_: list[str] | None = None
    is_null_: bool | None = None


class DeploymentFilterWorkQueueName(PrefectFilterBaseModel):
    any_: list[str] | None = None


class DeploymentFilterConcurrencyLimit(PrefectFilterBaseModel):
    """Deprecated and without effect, as in Prefect."""

    ge_: int | None = None
    le_: int | None = None
    is_null_: bool | None = None


class DeploymentFilter(PrefectOperatorFilterBaseModel):
    id: DeploymentFilterId | None = None
    name: DeploymentFilterName | None = None
    flow_or_deployment_name: DeploymentFilterFlowOrDeploymentName | None = None
    paused: DeploymentFilterPaused | None = None
    tags: DeploymentFilterTags | None = None
    work_queue_name: DeploymentFilterWorkQueueName | None = None
    concurrency_limit: DeploymentFilterConcurrencyLimit | None = None


# ---- work pools and queues ----


class WorkPoolFilterId(PrefectFilterBaseModel):
    any_: list[UUID] | None = None


class WorkPoolFilterName(PrefectFilterBaseModel):
    any_: list[str] | None = None


class WorkPoolFilterType(PrefectFilterBaseModel):
    any_: list[str] | None = None


class WorkPoolFilter(PrefectOperatorFilterBaseModel):
    id: WorkPoolFilterId | None = None
    name: WorkPoolFilterName | None = None
    type: WorkPoolFilterType | None = None


class WorkQueueFilterId(PrefectFilterBaseModel):
    any_: list[UUID] | None = None


class WorkQueueFilterName(PrefectFilterBaseModel):
    any_: list[str] | None = None
    startswith_: list[str] | None = None


class WorkQueueFilter(PrefectOperatorFilterBaseModel):
    id: WorkQueueFilterId | None = None
    name: WorkQueueFilterName | None = None


# ---- logs ----


class LogFilterBaseModel(PrefectFilterBaseModel):
    """Log filters live in log.proto."""

    def to_proto(self) -> Message:
        return _proto.to_message(getattr(log_pb2, type(self).__name__), self)


class LogFilterLevel(LogFilterBaseModel):
    """Levels within an inclusive range (Python's numbers: 20 is INFO)."""

    ge_: int | None = None
    le_: int | None = None


class LogFilterTimestamp(LogFilterBaseModel):
    before_: DateTime | None = None
    after_: DateTime | None = None


class LogFilterFlowRunId(LogFilterBaseModel):
    any_: list[UUID] | None = None


class LogFilterTaskRunId(LogFilterBaseModel):
    any_: list[UUID] | None = None
    is_null_: bool | None = None


class LogFilter(LogFilterBaseModel):
    """Prefect's LogFilter: `LogFilter(flow_run_id=dict(any_=[run_id]), level=dict(ge_=30))`."""

    operator: Operator = Field(default=Operator.and_)
    level: LogFilterLevel | None = None
    timestamp: LogFilterTimestamp | None = None
    flow_run_id: LogFilterFlowRunId | None = None
    task_run_id: LogFilterTaskRunId | None = None


def filter_set(
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
) -> dict[str, Any]:
    """PrefectClient's six filter keyword arguments as a FlowRunFilterSet, keyed by proto name.

    None filters stay unset: setting deployments/work_pools/work_pool_queues at all, even empty,
    excludes runs without one, as in Prefect."""
    return {
        "flows": flow_filter,
        "flow_runs": flow_run_filter,
        "task_runs": task_run_filter,
        "deployments": deployment_filter,
        "work_pools": work_pool_filter,
        "work_pool_queues": work_queue_filter,
    }
