"""Fixtures for client service tests: the address in FLOWRPC_API_URL, a client of either kind,
and a server seeded (through the client itself) with a flow, the healthcheck-storage-test
deployment and runs in Late, Scheduled, Pending, Running, Completed and Failed states."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from client_support import DEPLOYMENT_NAME, FLOW_NAME, AwaitableSyncClient, Seed, advance

from flowrpc import get_client
from flowrpc.schemas.objects import FlowRun
from flowrpc.states import Completed, Failed, Late, Pending, Running, Scheduled


@pytest.fixture
def api_url(flowrpc_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The real server's address, also in FLOWRPC_API_URL for code that reads the environment
    (the examples)."""
    monkeypatch.setenv("FLOWRPC_API_URL", flowrpc_server)
    monkeypatch.delenv("FLOWRPC_API_KEY", raising=False)
    return flowrpc_server


@pytest.fixture(params=["async", "sync"])
async def client(request: pytest.FixtureRequest, api_url: str) -> AsyncIterator[Any]:
    if request.param == "async":
        async with get_client() as async_client:
            yield async_client
    else:
        with get_client(sync_client=True) as sync_client:
            yield AwaitableSyncClient(sync_client)


@pytest.fixture
def seeded(api_url: str) -> Seed:
    """Runs of the healthcheck-storage-test deployment, made the way a worker would: Late runs
    whose start is 1-4 hours overdue, future Scheduled runs, and runs driven through Pending,
    Running and on to Completed or Failed one after another (so end times are ordered)."""
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(FLOW_NAME)
        deployment_id = client.create_deployment(
            flow_id, DEPLOYMENT_NAME, tags=["seed"], parameters={"bucket": "b1"}
        )

        def create(state: Any) -> FlowRun:
            return client.create_flow_run_from_deployment(deployment_id, state=state)

        late = [create(Late(scheduled_time=now - timedelta(hours=h))) for h in (1, 2, 3, 4)]
        scheduled = [create(Scheduled(scheduled_time=now + timedelta(hours=h))) for h in (1, 2)]
        pending = [create(Pending()) for _ in range(2)]
        running = [advance(client, create(Pending()), Running()) for _ in range(2)]
        completed = [advance(client, create(Pending()), Running(), Completed()) for _ in range(4)]
        failed = [advance(client, create(Pending()), Running(), Failed(message="boom"))]
    return Seed(flow_id, deployment_id, late, scheduled, pending, running, completed, failed)
