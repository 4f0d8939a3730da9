"""API keys with roles, through real servers and the real clients; keys made with the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import grpc
import pytest
import sqlalchemy as sa
from client_support import collect
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness import running_server, sqlite_settings

from flowrpc import get_client
from flowrpc.cli import main
from flowrpc.client import PermissionDenied, ServiceUnavailable, Unauthenticated
from flowrpc.schemas.filters import FlowRunFilter
from flowrpc.settings import Settings
from flowrpc.states import Pending, Running
from flowrpc.v1 import flow_service_pb2, flow_service_pb2_grpc

ETL = SimpleNamespace(name="etl")


def flowrpc(settings: Settings, *args: str) -> str:
    """Runs the `flowrpc` command on the settings' database; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main([*args, "--database-url", settings.resolved_database_url()])
    return printed.getvalue()


def create_key(settings: Settings, name: str, role: str) -> str:
    return flowrpc(settings, "api-key", "create", "--name", name, "--role", role).strip()


@contextlib.contextmanager
def server(settings: Settings, **overrides) -> Iterator[str]:
    with running_server(settings.model_copy(update=overrides)) as running:
        yield f"127.0.0.1:{running.port}"


@pytest.fixture
def keys(database: Settings) -> dict[str, str]:
    return {role: create_key(database, f"{role}-key", role) for role in ("read", "write", "admin")}


@pytest.fixture
def address(database: Settings, keys: dict[str, str]) -> Iterator[str]:
    with server(database, api_keys_refresh_seconds=0.05) as address:
        yield address


def history_window() -> tuple[datetime, datetime, timedelta]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(hours=1), timedelta(minutes=30)


async def test_each_role_calls_what_it_may_and_no_more(address: str, keys: dict[str, str]):
    async with get_client(api_url=address, api_key=keys["write"]) as writer:
        flow_id = await writer.create_flow_from_name("etl")
        run = await writer.create_flow_run(ETL, name="r1", state=Pending())
        assert (await writer.set_flow_run_state(run.id, Running())).status == "ACCEPT"
        running = FlowRunFilter(state={"type": {"any_": ["RUNNING"]}})
        assert await collect(writer.bulk_set_flow_run_state(Running(), flow_run_filter=running))
        with pytest.raises(PermissionDenied) as denied:
            await writer.delete_flow_run(run.id)
        assert denied.value.reason == "PERMISSION_DENIED"
        assert "role admin" in denied.value.message and "'write-key'" in denied.value.message
        with pytest.raises(PermissionDenied):
            await collect(writer.bulk_delete_flow_runs())

    async with get_client(api_url=address, api_key=keys["read"]) as reader:
        assert [f.id for f in await reader.read_flows()] == [flow_id]
        assert (await reader.read_flow_run(run.id)).name == "r1"
        assert await reader.count_flow_runs() == 1
        assert (await reader.read_flow_run_states(run.id))[0].type == "PENDING"
        assert await reader.read_flow_run_graph(run.id) is not None
        assert len(await collect(reader.stream_flow_run_history(*history_window()))) == 4
        assert len(await reader.read_flow_run_history(*history_window())) == 4
        for attempt in (
            reader.create_flow_from_name("other"),
            reader.set_flow_run_state(run.id, Running()),
            collect(reader.bulk_set_flow_run_state(Pending())),
        ):
            with pytest.raises(PermissionDenied) as denied:
                await attempt
            assert "role write" in denied.value.message
        with pytest.raises(PermissionDenied, match="role admin"):
            await reader.delete_flow_run(run.id)

    with get_client(sync_client=True, api_url=address, api_key=keys["read"]) as sync_reader:
        assert sync_reader.read_flow_run(run.id).name == "r1"
        with pytest.raises(PermissionDenied) as denied:
            sync_reader.create_flow_from_name("other")
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED

    async with get_client(api_url=address, api_key=keys["admin"]) as admin:
        await admin.delete_flow_run(run.id)
        await admin.create_flow_run(ETL, name="r2")
        assert len(await collect(admin.bulk_delete_flow_runs())) == 1
    # Delete* of other services too: the raw stub, as any language's client would call it.
    async with grpc.aio.insecure_channel(address) as channel:
        stub = flow_service_pb2_grpc.FlowServiceStub(channel)
        request = flow_service_pb2.DeleteFlowRequest(id=str(flow_id))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.DeleteFlow(request, metadata=bearer(keys["write"]))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await stub.DeleteFlow(request, metadata=bearer(keys["admin"]))


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def test_a_missing_or_unknown_key_is_unauthenticated(address: str, monkeypatch):
    monkeypatch.delenv("FLOWRPC_API_KEY", raising=False)
    for key in (None, "frpc_not-a-key"):
        async with get_client(api_url=address, api_key=key) as client:
            with pytest.raises(Unauthenticated) as refused:
                await client.read_flows()
            assert refused.value.reason == "UNAUTHENTICATED"
            assert await client.hello() == "SERVING"  # health needs no key


async def test_keys_created_and_revoked_while_serving_count_on_every_replica(database: Settings):
    """Two servers on one database, with the default refresh (1 s)."""
    with server(database) as first, server(database) as second:
        async with get_client(api_url=first) as anonymous:
            await anonymous.create_flow_from_name("open while no key exists")
        key = create_key(database, "ci", "write")
        create_key(database, "ops", "admin")  # with no key left the servers would be open
        for address in (first, second):
            async with get_client(api_url=address) as anonymous:
                await until_raises(Unauthenticated, anonymous.read_flows)
            async with get_client(api_url=address, api_key=key) as client:
                await until_works(client.create_flow_from_name, "etl")
        flowrpc(database, "api-key", "revoke", "ci")
        revoked = time.monotonic()
        for address in (first, second):
            async with get_client(api_url=address, api_key=key) as client:
                await until_raises(Unauthenticated, client.read_flows)
        assert time.monotonic() - revoked < 2.5


async def until_raises(error: type[Exception], call, *args, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await call(*args)
        except error:
            return
        assert time.monotonic() < deadline, f"{call.__name__} still answers"
        await asyncio.sleep(0.05)


async def until_works(call, *args, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await call(*args)
            return
        except Unauthenticated:
            assert time.monotonic() < deadline, f"{call.__name__} still refused"
            await asyncio.sleep(0.05)


async def test_flowrpc_api_key_is_an_admin_key(database: Settings, monkeypatch):
    monkeypatch.delenv("FLOWRPC_API_KEY", raising=False)
    create_key(database, "ci", "read")
    with server(database, api_key="s3cret") as address:
        async with get_client(api_url=address, api_key="s3cret") as admin:
            run = await admin.create_flow_run(ETL, name="r")
            await admin.delete_flow_run(run.id)
        async with get_client(api_url=address) as anonymous:
            with pytest.raises(Unauthenticated):
                await anonymous.read_flows()
    flowrpc(database, "api-key", "revoke", "ci")
    with server(database, api_key="s3cret") as address:  # alone, it still closes the server
        async with get_client(api_url=address) as anonymous:
            with pytest.raises(Unauthenticated):
                await anonymous.read_flows()


async def test_reflection_needs_a_key_unless_opened_and_health_never(
    database: Settings, keys: dict[str, str]
):
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    for open_reflection in (False, True):
        with server(database, open_reflection=open_reflection) as address:
            async with grpc.aio.insecure_channel(address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                response = await health.Check(health_pb2.HealthCheckRequest(service=""))
                assert response.status == health_pb2.HealthCheckResponse.SERVING
                reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
                call = reflect.ServerReflectionInfo(iter([listing]))
                if open_reflection:
                    assert [r async for r in call]
                    continue
                # Many times: a refusal racing the client's own send once showed as INTERNAL.
                for _ in range(40):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        _ = [r async for r in call]
                    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                    call = reflect.ServerReflectionInfo(iter([listing]))
                raw = channel.stream_stream(
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                    request_serializer=bytes,
                    response_deserializer=bytes,
                )
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    _ = [r async for r in raw(iter([b"\x0a\xff\xff\xff\xff\x0f\x78"]))]
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # bytes unread
                call = reflect.ServerReflectionInfo(iter([listing]), metadata=bearer(keys["read"]))
                (answer,) = [r async for r in call]
                names = {s.name for s in answer.list_services_response.service}
                assert "flowrpc.v1.FlowRunService" in names


async def test_an_unreadable_key_table_refuses_calls_instead_of_opening(tmp_path):
    settings = sqlite_settings(tmp_path, api_keys_refresh_seconds=0.05)
    key = create_key(settings, "ci", "admin")
    with server(settings) as address:
        async with get_client(api_url=address, api_key=key, timeout=5, retry_attempts=1) as client:
            await client.create_flow_from_name("etl")
            engine = sa.create_engine(settings.resolved_database_url())
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE api_key RENAME TO api_key_away")
            engine.dispose()
            await asyncio.sleep(0.1)
            with pytest.raises(ServiceUnavailable) as refused:
                await client.create_flow_from_name("etl")
            assert refused.value.reason == "API_KEYS_UNAVAILABLE"
            assert await client.hello() == "SERVING"
