"""Request payloads PrefectClient methods take as objects (`prefect.client.schemas.actions`)."""

from __future__ import annotations

from typing import Any, NamedTuple, Self
from uuid import UUID

from pydantic import Field, model_validator

from flowrpc.schemas._base import ActionBaseModel, DateTime, now
from flowrpc.schemas.objects import FlowRunPolicy, State, TaskRunInput


class WorkPoolCreate(ActionBaseModel):
    """The argument of `create_work_pool`."""

    name: str
    description: str | None = None
    type: str = "process"
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    is_paused: bool = False
    concurrency_limit: int | None = None


class LogCreate(ActionBaseModel):
    """One record for `create_logs` (Prefect's LogCreate; `worker_id` is not kept)."""

    name: str
    level: int
    message: str
    timestamp: DateTime = Field(default_factory=now)
    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None


# The fields only a run of a flow takes (a deployment's run gets them from the deployment).
_FLOW_RUN_ONLY = ("flow_version", "work_pool_name", "infrastructure_document_id")


class FlowRunCreate(ActionBaseModel):
    """One run for `create_flow_runs`: a run of `flow_id` (as `create_flow_run` makes it; the
    initial state defaults to Pending), or, given only `deployment_id`, a run of that deployment
    (as `create_flow_run_from_deployment` makes it: parameters merged over the deployment's, tags
    unioned; the initial state defaults to Scheduled now). A run of a flow may also name a
    deployment_id, as in Prefect's FlowRunCreate."""

    flow_id: UUID | None = None
    deployment_id: UUID | None = None
    name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] | None = None
    state: State | None = None
    idempotency_key: str | None = None
    parent_task_run_id: UUID | None = None
    work_queue_name: str | None = None
    job_variables: dict[str, Any] | None = None
    empirical_policy: FlowRunPolicy | None = None
    flow_version: str | None = None
    work_pool_name: str | None = None
    infrastructure_document_id: UUID | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.flow_id is None and self.deployment_id is None:
            raise ValueError("a FlowRunCreate needs a flow_id or a deployment_id")
        if self.flow_id is None:
            given = [name for name in _FLOW_RUN_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: only for a run of a flow (flow_id); a run of a "
                    "deployment takes them from the deployment"
                )
        return self


class TaskRunStart(NamedTuple):
    """One start for `start_task_runs`: the arguments of `start_task_run`. `id` is the new
    run's id when the client mints it (a UUID; UUIDv7 keeps task runs newest first by id).
    `then`: states proposed after `running`, in order, each decided as set_task_run_state
    would decide it, in the same call (a task that has already finished)."""

    task: Any
    flow_run_id: UUID | str | None
    dynamic_key: str
    running: State
    name: str | None = None
    task_inputs: dict[str, list[TaskRunInput | dict[str, Any]]] | None = None
    id: UUID | str | None = None
    then: tuple[State, ...] = ()
