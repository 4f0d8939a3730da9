"""Error mapping, call metadata and channel behaviour, over a real gRPC connection.

No flowrpc server is involved: a small in-process grpc server implements GetFlowRun and
DeleteFlowRun to answer with chosen statuses, so both clients' real error paths (sync: rpc_status,
aio: the trailing metadata) and the client's retry policy are exercised on the wire.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from flowrpc import get_client
from flowrpc.client import errors
from flowrpc.client.channel import ChannelConfig, resolve_target
from flowrpc.v1 import flow_run_pb2, flow_run_service_pb2, flow_run_service_pb2_grpc

FLOW_ID = "01970000-0000-7000-8000-0000000000bb"
RUN_ID = "01970000-0000-7000-8000-0000000000aa"


def _rich(code: int, message: str, *details) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


class _Servicer(flow_run_service_pb2_grpc.FlowRunServiceServicer):
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def GetFlowRun(self, request, context):  # noqa: N802 - generated name
        with self.lock:
            self.attempts[request.id] += 1
        if request.id == "missing":
            context.abort_with_status(
                _rich(
                    code_pb2.NOT_FOUND,
                    "Flow run 'missing' not found.",
                    error_details_pb2.ErrorInfo(reason="FLOW_RUN_NOT_FOUND", domain="flowrpc"),
                )
            )
        if request.id == "bad":
            context.abort_with_status(
                _rich(
                    code_pb2.INVALID_ARGUMENT,
                    "id: not a UUID",
                    error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="flowrpc"),
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field="id", description="not a UUID"
                            )
                        ]
                    ),
                )
            )
        if request.id == "down":
            context.abort(grpc.StatusCode.UNAVAILABLE, "try later")
        if request.id == "denied":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        # Echo the authorization header in the name, to check what the client sends.
        auth = dict(context.invocation_metadata()).get("authorization", "")
        return flow_run_service_pb2.GetFlowRunResponse(
            flow_run=flow_run_pb2.FlowRun(id=RUN_ID, flow_id=FLOW_ID, name=auth or "anonymous")
        )

    def DeleteFlowRun(self, request, context):  # noqa: N802
        with self.lock:
            self.attempts["delete:" + request.id] += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "try later")


@pytest.fixture(scope="module")
def fake_server():
    servicer = _Servicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    flow_run_service_pb2_grpc.add_FlowRunServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


@pytest.fixture(params=["async", "sync"])
def call(request, fake_server):
    """Runs one client method with either client; returns its result."""
    address, _ = fake_server

    async def run(method: str, *args, api_key: str | None = None):
        if request.param == "async":
            async with get_client(api_url=address, api_key=api_key) as client:
                return await getattr(client, method)(*args)
        with get_client(sync_client=True, api_url=address, api_key=api_key) as client:
            return getattr(client, method)(*args)

    return run


async def test_not_found_keeps_code_reason_and_message(call):
    with pytest.raises(errors.ObjectNotFound) as caught:
        await call("read_flow_run", "missing")
    error = caught.value
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "FLOW_RUN_NOT_FOUND"
    assert error.domain == "flowrpc"
    assert error.message == "Flow run 'missing' not found."
    assert str(error) == "Flow run 'missing' not found."  # one line; the code is an attribute
    assert isinstance(error, errors.FlowRPCError)


async def test_invalid_argument_carries_field_violations(call):
    with pytest.raises(errors.InvalidRequest) as caught:
        await call("read_flow_run", "bad")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field_violations == [("id", "not a UUID")]
    assert caught.value.field_violations[0].field == "id"


async def test_plain_status_without_details(call):
    with pytest.raises(errors.PermissionDenied) as caught:
        await call("read_flow_run", "denied")
    assert caught.value.reason is None
    assert caught.value.message == "no"


async def test_reads_are_retried_on_unavailable_and_writes_are_not(call, fake_server, monkeypatch):
    monkeypatch.setenv("FLOWRPC_RETRY_BACKOFF_SECONDS", "0.05")
    _, servicer = fake_server
    before_read = servicer.attempts["down"]
    before_delete = servicer.attempts["delete:down"]
    with pytest.raises(errors.ServiceUnavailable):
        await call("read_flow_run", "down")
    with pytest.raises(errors.ServiceUnavailable):
        await call("delete_flow_run", "down")
    assert servicer.attempts["down"] - before_read == 5  # RetryPolicy.attempts
    assert servicer.attempts["delete:down"] - before_delete == 1


async def test_api_key_is_sent_as_bearer_metadata(call, monkeypatch):
    run = await call("read_flow_run", "ok", api_key="s3cret")
    assert run.name == "Bearer s3cret"
    monkeypatch.setenv("FLOWRPC_API_KEY", "from-env")
    run = await call("read_flow_run", "ok")
    assert run.name == "Bearer from-env"
    monkeypatch.delenv("FLOWRPC_API_KEY")
    run = await call("read_flow_run", "ok")
    assert run.name == "anonymous"


async def test_unreachable_server_is_service_unavailable(monkeypatch):
    monkeypatch.setenv("FLOWRPC_RETRY_BACKOFF_SECONDS", "0.05")
    async with get_client(api_url="127.0.0.1:1", timeout=5) as client:
        with pytest.raises(errors.ServiceUnavailable):
            await client.read_flow_run(RUN_ID)


def test_code_to_exception_table():
    table = {
        grpc.StatusCode.NOT_FOUND: errors.ObjectNotFound,
        grpc.StatusCode.ALREADY_EXISTS: errors.ObjectAlreadyExists,
        grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequest,
        grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
        grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
        grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
        grpc.StatusCode.UNAVAILABLE: errors.ServiceUnavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
        grpc.StatusCode.INTERNAL: errors.InternalError,
    }
    for code, cls in table.items():
        assert errors._BY_CODE[code] is cls
    assert issubclass(errors.FailedPrecondition, errors.InvalidRequest)


def test_address_resolution(monkeypatch):
    monkeypatch.delenv("FLOWRPC_API_URL", raising=False)
    assert ChannelConfig.from_settings().target == "127.0.0.1:4250"
    monkeypatch.setenv("FLOWRPC_API_URL", "10.0.0.1:9000")
    assert ChannelConfig.from_settings().target == "10.0.0.1:9000"
    assert ChannelConfig.from_settings(api_url="10.0.0.2:1").target == "10.0.0.2:1"
    assert resolve_target("10.0.0.1:1, 10.0.0.2:2") == ("ipv4:10.0.0.1:1,10.0.0.2:2", True)
    assert resolve_target("localhost:7,127.0.0.1:8")[0].startswith("ipv4:127.0.0.1:7")
    assert resolve_target("[::1]:1,[::1]:2") == ("ipv6:[::1]:1,[::1]:2", True)
    assert resolve_target("dns:///flowrpc.internal:4250") == ("dns:///flowrpc.internal:4250", True)
    assert resolve_target("http://host:1/") == ("host:1", False)


def test_channel_options_balance_only_several_backends():
    single = dict(ChannelConfig.from_settings(api_url="h:1").options)
    several = dict(ChannelConfig.from_settings(api_url="dns:///h:1").options)
    assert "round_robin" not in single["grpc.service_config"]
    assert "round_robin" in several["grpc.service_config"]
    # Retries are the client's (see test_retry_policy), not grpc's service config.
    assert "retryPolicy" not in single["grpc.service_config"]
    assert single["grpc.max_reconnect_backoff_ms"] == 2_000
    assert single["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    assert single["grpc.keepalive_time_ms"] == 60_000


def test_str_adds_only_the_violations_the_message_does_not_say():
    error = errors.InvalidRequest(
        "id: not a UUID",
        code=grpc.StatusCode.INVALID_ARGUMENT,
        field_violations=[errors.FieldViolation("id", "not a UUID"), ("limit", "too big")],
    )
    assert str(error) == "id: not a UUID; limit: too big"
    assert str(errors.FlowRPCError("", code=grpc.StatusCode.UNAVAILABLE)) == "UNAVAILABLE"
