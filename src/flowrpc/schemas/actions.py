"""Request payloads PrefectClient methods take as objects (`prefect.client.schemas.actions`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from flowrpc.schemas._base import ActionBaseModel, DateTime, now


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
