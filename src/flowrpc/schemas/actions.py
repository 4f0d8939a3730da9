"""Request payloads PrefectClient methods take as objects (`prefect.client.schemas.actions`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flowrpc.schemas._base import ActionBaseModel


class WorkPoolCreate(ActionBaseModel):
    """The argument of `create_work_pool`."""

    name: str
    description: str | None = None
    type: str = "process"
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    is_paused: bool = False
    concurrency_limit: int | None = None
