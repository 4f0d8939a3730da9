"""Prefect's client objects (`prefect.client.schemas.objects`) with the same field names and types.

Each model mirrors a flowrpc.v1 message field for field; `Model.from_proto(message)` and
`model.to_proto(MessageClass)` convert through the generic converter in `_proto`.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import Field, PrivateAttr, field_validator, model_validator

from flowrpc.schemas._base import DateTime, FlowRPCBaseModel, ProtoEnum, now

__all__ = [
    "Asset",
    "AssetMaterialization",
    "Constant",
    "CreatedBy",
    "Deployment",
    "Flow",
    "FlowRun",
    "FlowRunPolicy",
    "FlowRunResult",
    "Log",
    "Parameter",
    "State",
    "StateDetails",
    "StateType",
    "TERMINAL_STATES",
    "TaskRun",
    "TaskRunInput",
    "TaskRunPolicy",
    "TaskRunResult",
    "WorkPool",
    "WorkQueue",
]


class StateType(ProtoEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


TERMINAL_STATES = {
    StateType.COMPLETED,
    StateType.CANCELLED,
    StateType.FAILED,
    StateType.CRASHED,
}


class StateDetails(FlowRPCBaseModel):
    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None
    child_flow_run_id: UUID | None = None
    scheduled_time: DateTime | None = None
    cache_key: str | None = None
    cache_expiration: DateTime | None = None
    deferred: bool | None = None
    untrackable_result: bool = False
    pause_timeout: DateTime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    refresh_cache: bool | None = None
    retriable: bool | None = None
    transition_id: UUID | None = None
    task_parameters_id: UUID | None = None
    traceparent: str | None = None
    deployment_concurrency_lease_id: UUID | None = None


def _local_id() -> UUID:
    # A random version-4 UUID from Python's PRNG: a proposed state's id never leaves the process
    # (the server assigns ids), and os.urandom costs ~50 us a call on some VMs.
    return UUID(int=random.getrandbits(128), version=4)


class State(FlowRPCBaseModel):
    """A state of a flow run or task run.

    `id` and `timestamp` default like Prefect's client State, but a proposed state never sends
    them: the server assigns both.
    """

    id: UUID = Field(default_factory=_local_id)
    type: StateType
    name: str | None = None
    timestamp: DateTime = Field(default_factory=now)
    message: str | None = None
    data: Any = None
    state_details: StateDetails = Field(default_factory=StateDetails)

    # What the run that made this state holds in memory (the workflow SDK): its return value or
    # its exception, which state.result() gives back without reading the persisted record.
    _has_value: bool = PrivateAttr(default=False)
    _value: Any = PrivateAttr(default=None)
    _exception: BaseException | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _defaults_from_type(self) -> State:
        # Prefect: the name defaults to the type in title case, and a SCHEDULED state always has
        # a scheduled time (now when omitted).
        if not self.name:
            self.name = " ".join(part.capitalize() for part in self.type.value.split("_"))
        if self.type == StateType.SCHEDULED and self.state_details.scheduled_time is None:
            self.state_details.scheduled_time = now()
        return self

    def is_scheduled(self) -> bool:
        return self.type == StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type == StateType.PENDING

    def is_running(self) -> bool:
        return self.type == StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type == StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type == StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type == StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type == StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type == StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type == StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_STATES

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value (Completed), or its exception (raised unless
        raise_on_failure=False) for a Failed, Crashed or Cancelled state. A persisted result
        (flowrpc.results) is loaded from its record."""
        from flowrpc.results import state_result  # the SDK's module; schemas stay light

        return state_result(self, raise_on_failure)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> State:
        """A copy that could be proposed again: like Prefect's, it gets a fresh timestamp."""
        return super().model_copy(update={"timestamp": now(), **(update or {})}, deep=deep)

    def copy(self, *, update: dict[str, Any] | None = None, **_: Any) -> State:  # type: ignore[override]
        """Pydantic-v1 spelling that Prefect scripts still use (`state.copy(update={...})`).

        Unlike model_copy, the update is validated, so `{"type": "CANCELLED"}` becomes a
        StateType. The copy is deep and gets a fresh timestamp."""
        return type(self).model_validate(
            {**self.model_dump(), "timestamp": now(), **(update or {})}
        )

    def fresh_copy(self, **kwargs: Any) -> State:
        """A copy with a new id and timestamp."""
        return self.model_copy(update={"id": uuid4(), **kwargs}, deep=True)

    def __repr__(self) -> str:
        return f"{self.name}(type={self.type.value}, message={self.message!r})"

    __str__ = __repr__


class FlowRunPolicy(FlowRPCBaseModel):
    max_retries: int = 0
    retry_delay_seconds: float = 0
    retries: int | None = None
    retry_delay: int | None = None
    pause_keys: set[str] | None = Field(default_factory=set)
    resuming: bool | None = False
    retry_type: Literal["in_process", "reschedule"] | None = None

    @model_validator(mode="after")
    def _populate_deprecated_fields(self) -> FlowRunPolicy:
        # Prefect: retries/retry_delay fall back to the deprecated max_retries/retry_delay_seconds.
        if self.retries is None and self.max_retries:
            self.retries = self.max_retries
        if self.retry_delay is None and self.retry_delay_seconds:
            self.retry_delay = int(self.retry_delay_seconds)
        return self


class CreatedBy(FlowRPCBaseModel):
    id: UUID | None = None
    type: str | None = None
    display_value: str | None = None


class FlowRun(FlowRPCBaseModel):
    id: UUID
    created: DateTime | None = None
    updated: DateTime | None = None
    name: str
    flow_id: UUID
    state_id: UUID | None = None
    deployment_id: UUID | None = None
    deployment_version: str | None = None
    work_queue_name: str | None = None
    work_queue_id: UUID | None = None
    work_pool_id: UUID | None = None
    work_pool_name: str | None = None
    flow_version: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    empirical_policy: FlowRunPolicy = Field(default_factory=FlowRunPolicy)
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] = Field(default_factory=dict)
    parent_task_run_id: UUID | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    run_count: int = 0
    expected_start_time: DateTime | None = None
    next_scheduled_start_time: DateTime | None = None
    start_time: DateTime | None = None
    end_time: DateTime | None = None
    total_run_time: timedelta = timedelta(0)
    estimated_run_time: timedelta = timedelta(0)
    estimated_start_time_delta: timedelta = timedelta(0)
    auto_scheduled: bool = False
    infrastructure_document_id: UUID | None = None
    infrastructure_pid: str | None = None
    created_by: CreatedBy | None = None
    state: State | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # As in Prefect: the estimated_* fields roll with the clock, so equality ignores them.
        if not isinstance(other, FlowRun):
            return NotImplemented
        rolling = {"estimated_run_time", "estimated_start_time_delta"}
        return self.model_dump(exclude=rolling) == other.model_dump(exclude=rolling)

    __hash__ = None  # type: ignore[assignment]


class Flow(FlowRPCBaseModel):
    id: UUID
    created: DateTime | None = None
    updated: DateTime | None = None
    name: str
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] = Field(default_factory=dict)


class Deployment(FlowRPCBaseModel):
    id: UUID
    created: DateTime | None = None
    updated: DateTime | None = None
    name: str
    flow_id: UUID
    version: str | None = None
    description: str | None = None
    paused: bool = False
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    job_variables: dict[str, Any] = Field(default_factory=dict)
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    work_queue_id: UUID | None = None
    entrypoint: str | None = None
    path: str | None = None


class WorkPool(FlowRPCBaseModel):
    id: UUID
    created: DateTime | None = None
    updated: DateTime | None = None
    name: str
    description: str | None = None
    type: str
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    is_paused: bool = False
    concurrency_limit: int | None = None
    default_queue_id: UUID | None = None


class WorkQueue(FlowRPCBaseModel):
    id: UUID
    created: DateTime | None = None
    updated: DateTime | None = None
    name: str
    description: str | None = None
    is_paused: bool = False
    concurrency_limit: int | None = None
    priority: int = 1
    work_pool_id: UUID | None = None
    work_pool_name: str | None = None


class TaskRunPolicy(FlowRPCBaseModel):
    max_retries: int = 0
    retry_delay_seconds: float = 0
    retries: int | None = None
    retry_delay: int | list[int] | None = None
    retry_jitter_factor: float | None = None

    @field_validator("retry_delay", mode="before")
    @classmethod
    def _single_delay(cls, value: Any) -> Any:
        # The wire always carries a list; a list of one is the same as one delay for every retry.
        if isinstance(value, list) and len(value) == 1:
            return value[0]
        return value


class TaskRunInput(FlowRPCBaseModel):
    """Base of the task-input kinds. The wire spells input_type in upper case."""

    input_type: str

    @field_validator("input_type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class TaskRunResult(TaskRunInput):
    input_type: Literal["task_run"] = "task_run"
    id: UUID


class FlowRunResult(TaskRunInput):
    input_type: Literal["flow_run"] = "flow_run"
    id: UUID


class Parameter(TaskRunInput):
    input_type: Literal["parameter"] = "parameter"
    name: str


class Constant(TaskRunInput):
    input_type: Literal["constant"] = "constant"
    type: str


# Pydantic picks the member whose input_type literal matches.
AnyTaskRunInput = TaskRunResult | FlowRunResult | Parameter | Constant


class TaskRun(FlowRPCBaseModel):
    id: UUID
    created: DateTime | None = None
    updated: DateTime | None = None
    name: str
    flow_run_id: UUID | None = None
    task_key: str
    dynamic_key: str = ""
    cache_key: str | None = None
    cache_expiration: DateTime | None = None
    task_version: str | None = None
    empirical_policy: TaskRunPolicy = Field(default_factory=TaskRunPolicy)
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] = Field(default_factory=dict)
    state_id: UUID | None = None
    task_inputs: dict[str, list[AnyTaskRunInput]] = Field(default_factory=dict)
    state_type: StateType | None = None
    state_name: str | None = None
    run_count: int = 0
    flow_run_run_count: int = 0
    expected_start_time: DateTime | None = None
    next_scheduled_start_time: DateTime | None = None
    start_time: DateTime | None = None
    end_time: DateTime | None = None
    total_run_time: timedelta = timedelta(0)
    estimated_run_time: timedelta = timedelta(0)
    estimated_start_time_delta: timedelta = timedelta(0)
    state: State | None = None


class Log(FlowRPCBaseModel):
    """A log record of a flow run or task run (Prefect's Log)."""

    id: UUID
    created: DateTime | None = None
    updated: DateTime | None = None
    name: str = ""
    level: int = 0
    message: str = ""
    timestamp: DateTime
    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None

    @model_validator(mode="after")
    def _updated_is_created(self) -> Log:
        # Records never change: Prefect's `updated` is their creation time.
        if self.updated is None:
            self.updated = self.created
        return self


class AssetMaterialization(FlowRPCBaseModel):
    """One time a task run made an asset."""

    task_run_id: UUID
    flow_run_id: UUID | None = None
    timestamp: DateTime


class Asset(FlowRPCBaseModel):
    """An asset as the server knows it: its key, the keys it was made from, and its newest
    materializations (newest first; `materialization_count` counts them all)."""

    key: str
    created: DateTime | None = None
    upstream_keys: list[str] = Field(default_factory=list)
    materializations: list[AssetMaterialization] = Field(default_factory=list)
    materialization_count: int = 0
