"""Generated stubs on an async channel to the test server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import grpc
import pytest
from helpers import service_stubs


@pytest.fixture
async def stubs(flowrpc_server: str) -> AsyncIterator[SimpleNamespace]:
    async with grpc.aio.insecure_channel(flowrpc_server) as channel:
        yield service_stubs(channel)
