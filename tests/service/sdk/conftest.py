"""Fixtures for the workflow SDK's tests: a real server (SQLite, and PostgreSQL when configured)
whose address is in FLOWRPC_API_URL, and the SDK's shared client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowrpc import get_client
from flowrpc.client import SyncFlowRPCClient
from flowrpc.engine.client import reset_sdk_client


@pytest.fixture(autouse=True)
def api_url(flowrpc_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FLOWRPC_API_URL", flowrpc_server)
    monkeypatch.delenv("FLOWRPC_API_KEY", raising=False)
    monkeypatch.delenv("FLOWRPC_RESULT_STORAGE_PATH", raising=False)
    reset_sdk_client()
    yield flowrpc_server
    reset_sdk_client()


@pytest.fixture
def client(api_url: str) -> Iterator[SyncFlowRPCClient]:
    """A sync client of the test server, for reading what the SDK recorded."""
    with get_client(sync_client=True, api_url=api_url) as client:
        yield client
