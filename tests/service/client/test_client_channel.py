"""Channel behaviour against real servers: API keys, several addresses, DNS targets."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from harness import running_server, sqlite_settings

from flowrpc import get_client
from flowrpc.client import Unauthenticated


@pytest.fixture
def keyed_server(tmp_path: Path):
    with running_server(sqlite_settings(tmp_path, api_key="s3cret")) as server:
        yield f"127.0.0.1:{server.port}"


async def test_api_key_from_argument_or_environment(keyed_server: str, monkeypatch):
    monkeypatch.delenv("FLOWRPC_API_KEY", raising=False)
    async with get_client(api_url=keyed_server) as client:
        with pytest.raises(Unauthenticated) as caught:
            await client.create_flow_from_name("etl")
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.reason
    async with get_client(api_url=keyed_server, api_key="wrong") as client:
        with pytest.raises(Unauthenticated):
            await client.read_flows()
    async with get_client(api_url=keyed_server, api_key="s3cret") as client:
        flow_id = await client.create_flow_from_name("etl")
    monkeypatch.setenv("FLOWRPC_API_URL", keyed_server)
    monkeypatch.setenv("FLOWRPC_API_KEY", "s3cret")
    with get_client(sync_client=True) as client:
        assert client.read_flow(flow_id).name == "etl"


def test_several_addresses_are_used_round_robin(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(sqlite_settings(tmp_path / "a")) as a,
        running_server(sqlite_settings(tmp_path / "b")) as b,
    ):
        first, second = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
        with get_client(sync_client=True, api_url=f"{first},{second}") as client:
            for i in range(20):
                client.create_flow_from_name(f"flow-{i}")
        # Each server has its own database: both got a share of the calls.
        with get_client(sync_client=True, api_url=first) as client_a:
            on_a = {f.name for f in client_a.read_flows()}
        with get_client(sync_client=True, api_url=second) as client_b:
            on_b = {f.name for f in client_b.read_flows()}
        assert on_a and on_b
        assert on_a | on_b == {f"flow-{i}" for i in range(20)}


async def test_dns_target(api_url: str):
    port = api_url.rsplit(":", 1)[1]
    async with get_client(api_url=f"dns:///localhost:{port}") as client:
        flow_id = await client.create_flow_from_name("etl")
        assert (await client.read_flow(flow_id)).name == "etl"
