"""Helpers shared by the client service tests and their fixtures."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flowrpc.client import SyncFlowRPCClient
from flowrpc.schemas.objects import FlowRun

DEPLOYMENT_NAME = "healthcheck-storage-test"
FLOW_NAME = "healthcheck"


class AwaitableSyncClient:
    """The sync client behind the async client's interface, so one test body checks both: each
    blocking call is made for real (the server runs in its own thread), then its result is
    handed back as an awaitable or an async iterator."""

    def __init__(self, client: SyncFlowRPCClient) -> None:
        self.sync = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.sync, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.isgenerator(result):
                return _aiter(result)
            return _done(result)

        return call


async def _done(value: Any) -> Any:
    return value


async def _aiter(items: Iterator[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


@dataclass
class Seed:
    flow_id: UUID
    deployment_id: UUID
    late: list[FlowRun]
    scheduled: list[FlowRun]
    pending: list[FlowRun]
    running: list[FlowRun]
    completed: list[FlowRun]
    failed: list[FlowRun]

    @property
    def all_runs(self) -> list[FlowRun]:
        return [
            *self.late,
            *self.scheduled,
            *self.pending,
            *self.running,
            *self.completed,
            *self.failed,
        ]


def advance(client: SyncFlowRPCClient, run: FlowRun, *states: Any) -> FlowRun:
    """Proposes each state in turn, checking each is accepted; returns the run as it ends up."""
    for state in states:
        result = client.set_flow_run_state(run.id, state)
        assert result.status == "ACCEPT", result
    return client.read_flow_run(run.id)
