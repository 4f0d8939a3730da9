"""The `flowrpc server start` process itself (its event loop, signals, shutdown), on SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import server_process, start_cli_server

from flowrpc import get_client

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_the_command_serves_and_stops_cleanly_on_sigterm(tmp_path: Path):
    database = f"sqlite:///{tmp_path / 'flowrpc.db'}"
    with server_process(database) as (process, address):
        async with get_client(api_url=address) as client:
            run = await client.create_flow_run(SimpleNamespace(name="etl"), name="kept")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    with server_process(database) as (_, address):
        async with get_client(api_url=address) as client:
            assert (await client.read_flow_run(run.id)).name == "kept"


def test_a_second_server_on_a_taken_port_refuses_to_start(tmp_path: Path):
    # Before: gRPC's SO_REUSEPORT let the second bind, serve its own database and take a share
    # of the connections.
    with server_process(f"sqlite:///{tmp_path / 'a.db'}") as (_, address):
        port = address.rsplit(":", 1)[1]
        env = {
            **os.environ,
            "FLOWRPC_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}",
            "FLOWRPC_PORT": port,
        }
        second = start_cli_server(env, subprocess.PIPE)
        try:
            _, output = second.communicate(timeout=30)
        finally:
            second.kill()
        log = output.decode()
        assert second.returncode == 1
        assert f"flowrpc: error: cannot listen on 127.0.0.1:{port}: the port is in use" in log
        assert "serving" not in log
        assert "Traceback" not in log
        with get_client(sync_client=True, api_url=address) as client:
            assert client.hello() == "SERVING"  # the first server is untouched


def _health(channel: grpc.Channel, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def _wait_for_not_serving(channel: grpc.Channel) -> None:
    deadline = time.monotonic() + 10
    while _health(channel) == SERVING:
        assert time.monotonic() < deadline, "health stayed SERVING after SIGTERM"
        time.sleep(0.05)


def test_sigterm_reports_not_serving_while_still_serving_for_the_drain(tmp_path: Path):
    log = tmp_path / "server.log"
    database = f"sqlite:///{tmp_path / 'flowrpc.db'}"
    with (
        server_process(database, log=log, drain_seconds=3) as (process, address),
        grpc.insecure_channel(address) as channel,
        get_client(sync_client=True, api_url=address, retry_attempts=1) as client,
    ):
        run = client.create_flow_run(SimpleNamespace(name="etl"))
        assert _health(channel) == SERVING
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _wait_for_not_serving(channel)
        # Every service reports NOT_SERVING, yet calls are still served during the drain.
        assert _health(channel, "flowrpc.v1.FlowRunService") == NOT_SERVING
        assert client.read_flow_run(run.id).id == run.id
        assert client.create_flow_run(SimpleNamespace(name="etl")).id != run.id
        assert time.monotonic() - signalled < 2.5
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - signalled >= 3
    lines = log.read_text().splitlines()
    assert any("draining: health NOT_SERVING, still serving for 3 s" in line for line in lines)
    assert lines[-1].endswith("flowrpc stopped")


def test_a_second_signal_during_the_drain_stops_at_once(tmp_path: Path):
    log = tmp_path / "server.log"
    database = f"sqlite:///{tmp_path / 'flowrpc.db'}"
    with (
        server_process(database, log=log, drain_seconds=60) as (process, address),
        grpc.insecure_channel(address) as channel,
    ):
        process.send_signal(signal.SIGTERM)
        _wait_for_not_serving(channel)
        process.send_signal(signal.SIGINT)  # Ctrl-C twice
        assert process.wait(timeout=10) == 0
    text = log.read_text()
    assert "second signal: stopping now" in text
    assert text.splitlines()[-1].endswith("flowrpc stopped")


def test_json_log_format_writes_one_object_a_line(tmp_path: Path):
    log = tmp_path / "server.log"
    with server_process(f"sqlite:///{tmp_path / 'flowrpc.db'}", log=log, log_format="json") as (
        process,
        address,
    ):
        with get_client(sync_client=True, api_url=address) as client:
            client.count_flow_runs()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {entry["logger"] for entry in entries} >= {"flowrpc", "alembic.runtime.migration"}
    messages = [entry["message"] for entry in entries if entry["logger"] == "flowrpc"]
    assert messages[0].startswith(f"flowrpc serving on {address}")
    assert messages[-1] == "flowrpc stopped"
    assert all(entry["level"] == "INFO" and entry["time"].endswith("+00:00") for entry in entries)


def test_an_unknown_log_format_is_a_usage_error(tmp_path: Path):
    env = {**os.environ, "FLOWRPC_DATABASE_URL": f"sqlite:///{tmp_path / 'flowrpc.db'}"}
    server = subprocess.run(
        [sys.executable, "-m", "flowrpc.cli", "server", "start", "--log-format", "xml"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert server.returncode == 2
    assert "xml" in server.stderr.decode()
