"""OpenTelemetry spans per RPC, switched on by the standard OTEL_* variables (a real server
process with the console exporter, which prints each span as JSON on the server's output)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from harness import free_port, server_process, start_cli_server

from flowrpc import get_client
from flowrpc.client.errors import ObjectNotFound
from flowrpc.server.tracing import exporter_names


def _spans(output: str) -> list[dict]:
    """The JSON objects the console exporter printed between the log lines."""
    decoder, spans, position = json.JSONDecoder(), [], output.find("\n{")
    while position != -1:
        span, end = decoder.raw_decode(output, position + 1)
        spans.append(span)
        position = output.find("\n{", end)
    return spans


def test_each_call_is_a_span_with_its_grpc_status(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "flowrpc-under-test")
    log = tmp_path / "server.log"
    with (
        server_process(f"sqlite:///{tmp_path / 'flowrpc.db'}", log=log) as (_, address),
        get_client(sync_client=True, api_url=address, retry_attempts=1) as client,
    ):
        assert client.count_flow_runs() == 0
        with pytest.raises(ObjectNotFound):
            client.read_flow_run(uuid.uuid4())
    # Stopping the server flushed the batch of spans.
    by_name = {span["name"]: span for span in _spans(log.read_text())}
    counted = by_name["/flowrpc.v1.FlowRunService/CountFlowRuns"]
    assert counted["kind"] == "SpanKind.SERVER"
    assert counted["attributes"]["rpc.grpc.status_code"] == 0
    assert counted["resource"]["attributes"]["service.name"] == "flowrpc-under-test"
    missing = by_name["/flowrpc.v1.FlowRunService/GetFlowRun"]
    assert missing["attributes"]["rpc.grpc.status_code"] == 5  # NOT_FOUND


def test_an_exporter_that_is_not_installed_stops_the_start_with_a_clear_error(tmp_path: Path):
    env = {
        **os.environ,
        "FLOWRPC_DATABASE_URL": f"sqlite:///{tmp_path / 'flowrpc.db'}",
        "FLOWRPC_PORT": str(free_port()),
        "OTEL_TRACES_EXPORTER": "zipkin-nowhere",
    }
    server = start_cli_server(env, subprocess.PIPE)
    try:
        _, output = server.communicate(timeout=30)  # stderr
    finally:
        server.kill()
    assert server.returncode == 1
    assert "OTEL_TRACES_EXPORTER names 'zipkin-nowhere', which is not installed" in output.decode()
    assert "Traceback" not in output.decode()


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, ["otlp"]),
    ],
)
def test_tracing_is_off_unless_the_environment_asks_for_it(environ, names):
    assert exporter_names(environ) == names
