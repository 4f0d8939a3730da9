"""Prometheus metrics, scraped over HTTP from a real server: calls by method and status, their
latency, the SQLite writer, background passes, the leader; and with metrics off, no port at all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from harness import free_port, running_server, sqlite_settings, wait_for_port
from prometheus_client.parser import text_string_to_metric_families

from flowrpc.server.app import PortUnavailable, Server
from flowrpc.settings import Settings
from flowrpc.v1 import flow_run_service_pb2 as fr
from flowrpc.v1 import flow_run_service_pb2_grpc, flow_service_pb2_grpc
from flowrpc.v1 import flow_service_pb2 as fl

CREATE = "flowrpc.v1.FlowService/CreateFlow"
GET = "flowrpc.v1.FlowService/GetFlow"
LIST_RUNS = "flowrpc.v1.FlowRunService/ListFlowRuns"
HISTORY = "flowrpc.v1.FlowRunService/StreamFlowRunHistory"
QUIET = {"late_runs_enabled": False, "pause_expirations_enabled": False}  # no background writes
MISSING_ID = "0191d3a4-0000-7000-8000-000000000000"


def scrape(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics, by name and labels."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def history() -> fr.StreamFlowRunHistoryRequest:
    """Six ten-minute intervals: a stream of six messages."""
    start, end, interval = Timestamp(), Timestamp(), Duration()
    start.FromSeconds(1_700_000_000)
    end.FromSeconds(1_700_000_000 + 3600)
    interval.FromSeconds(600)
    return fr.StreamFlowRunHistoryRequest(
        history_start=start, history_end=end, history_interval=interval
    )


@contextmanager
def metered(settings: Settings, **overrides: object) -> Iterator[Server]:
    with running_server(settings.model_copy(update={"metrics_port": 0, **overrides})) as server:
        assert server.metrics_port
        yield server


async def test_calls_are_counted_by_method_and_status_and_timed(database):
    with metered(database) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            runs = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
            for name in ("a", "b", "c"):
                await flows.CreateFlow(fl.CreateFlowRequest(name=name))
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await flows.GetFlow(fl.GetFlowRequest(id=MISSING_ID))
                assert error.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await flows.GetFlow(fl.GetFlowRequest(id="not-an-id"))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            await runs.ListFlowRuns(fr.ListFlowRunsRequest())
            intervals = [message async for message in runs.StreamFlowRunHistory(history())]
            assert len(intervals) == 6
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await channel.unary_unary("/flowrpc.v1.NoSuchService/Nothing")(b"")
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        samples = scrape(f"127.0.0.1:{server.metrics_port}")

    calls = {
        (dict(labels)["method"], dict(labels)["code"]): count
        for (name, labels), count in samples.items()
        if name == "flowrpc_calls_total"
    }
    assert calls == {
        (CREATE, "OK"): 3,
        (GET, "NOT_FOUND"): 2,
        (GET, "INVALID_ARGUMENT"): 1,
        (LIST_RUNS, "OK"): 1,
        (HISTORY, "OK"): 1,
        ("unknown", "UNIMPLEMENTED"): 1,  # any name a client sends: one series
    }
    for method, count in ((CREATE, 3), (GET, 3), (LIST_RUNS, 1), (HISTORY, 1)):
        assert value(samples, "flowrpc_call_duration_seconds_count", method=method) == count
        total = value(samples, "flowrpc_call_duration_seconds_sum", method=method)
        assert 0 < total < 30
        every = value(samples, "flowrpc_call_duration_seconds_bucket", method=method, le="+Inf")
        assert every == count
    assert value(samples, "flowrpc_calls_in_flight") == 0
    assert value(samples, "process_cpu_seconds_total") > 0


async def test_a_call_refused_for_its_key_is_counted(tmp_path):
    """The metrics interceptor comes first, so it sees what the key check refuses."""
    settings = sqlite_settings(tmp_path, api_key="admin-secret")
    with metered(settings) as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await flows.CreateFlow(fl.CreateFlowRequest(name="a"))
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            key = (("authorization", "Bearer admin-secret"),)
            await flows.CreateFlow(fl.CreateFlowRequest(name="a"), metadata=key)
        samples = scrape(f"127.0.0.1:{server.metrics_port}")
    assert value(samples, "flowrpc_calls_total", method=CREATE, code="UNAUTHENTICATED") == 1
    assert value(samples, "flowrpc_calls_total", method=CREATE, code="OK") == 1


async def test_sqlite_writer_queue_and_group_commit_sizes(tmp_path):
    writes = 40
    with metered(sqlite_settings(tmp_path, **QUIET)) as server:
        address = f"127.0.0.1:{server.metrics_port}"
        before = scrape(address)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            flows = flow_service_pb2_grpc.FlowServiceStub(channel)
            await asyncio.gather(
                *(flows.CreateFlow(fl.CreateFlowRequest(name=f"f{i}")) for i in range(writes))
            )
        after = scrape(address)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - (value(before, name, **labels) or 0)

    # Each CreateFlow is one write call; concurrent ones share groups.
    assert delta("flowrpc_sqlite_group_commit_size_sum") == writes
    groups = delta("flowrpc_sqlite_group_commit_size_count")
    assert 1 <= groups <= writes
    assert delta("flowrpc_sqlite_group_commit_size_bucket", le="256.0") == groups
    assert value(after, "flowrpc_sqlite_writer_queue_depth") == 0


async def test_writer_metrics_only_on_sqlite(database):
    with metered(database) as server:
        samples = scrape(f"127.0.0.1:{server.metrics_port}")
    on_sqlite = {name for name, _ in samples if name.startswith("flowrpc_sqlite_")}
    if database.resolved_database_url().startswith("sqlite"):
        assert "flowrpc_sqlite_writer_queue_depth" in on_sqlite
    else:
        assert on_sqlite == set()


async def test_background_passes_failures_and_leader(tmp_path):
    settings = sqlite_settings(
        tmp_path, late_runs_loop_seconds=0.05, pause_expirations_enabled=False
    )
    with metered(settings) as server:
        address = f"127.0.0.1:{server.metrics_port}"
        samples = wait_for(address, "flowrpc_background_passes_total", service="late_runs")
        assert value(samples, "flowrpc_background_failures_total", service="late_runs") == 0
        assert value(samples, "flowrpc_leader") == 1
        # A pass that cannot read its table fails; the service goes on and counts it.
        database = Path(settings.database_url.removeprefix("sqlite:///"))
        with sqlite3.connect(database) as conn:
            conn.execute("ALTER TABLE flow_run RENAME TO flow_run_away")
        try:
            samples = wait_for(address, "flowrpc_background_failures_total", service="late_runs")
        finally:
            with sqlite3.connect(database) as conn:
                conn.execute("ALTER TABLE flow_run_away RENAME TO flow_run")
    passes = value(samples, "flowrpc_background_passes_total", service="late_runs")
    assert passes >= value(samples, "flowrpc_background_failures_total", service="late_runs")
    assert value(samples, "flowrpc_background_passes_total", service="expired_pauses") is None


def wait_for(address: str, name: str, **labels: str) -> dict:
    """The first scrape, within 10 s, where the counter is above 0."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(address)
        if (value(samples, name, **labels) or 0) > 0:
            return samples
        assert time.monotonic() < deadline, f"{name} {labels} stayed at 0"
        time.sleep(0.05)


def listening_ports() -> set[int]:
    """TCP ports that sockets of this process listen on (Linux's /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads Linux's /proc")
def test_with_metrics_off_only_the_grpc_port_listens(tmp_path):
    before = listening_ports()
    with running_server(sqlite_settings(tmp_path)) as server:
        assert server.metrics is None and server.metrics_port is None
        assert listening_ports() - before == {server.port}
    with metered(sqlite_settings(tmp_path)) as server:  # the check sees the metrics port
        assert listening_ports() - before == {server.port, server.metrics_port}
    assert listening_ports() - before == set()


def test_a_taken_metrics_port_fails_the_start_by_name(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = pytest.raises(PortUnavailable, match=f"cannot serve metrics on 127.0.0.1:{port}")
        with refused, running_server(sqlite_settings(tmp_path, metrics_port=port)):
            pass


def test_cli_server_serves_metrics_on_the_port_given(tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "FLOWRPC_DATABASE_URL": f"sqlite:///{tmp_path / 'flowrpc.db'}",
        "FLOWRPC_DRAIN_SECONDS": "0",
    }
    command = ["server", "start", "--port", str(port), "--metrics-port", str(metrics_port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "flowrpc.cli", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(process, port)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            flow_service_pb2_grpc.FlowServiceStub(channel).CreateFlow(
                fl.CreateFlowRequest(name="a")
            )
        samples = scrape(f"127.0.0.1:{metrics_port}")
    finally:
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=15)
    assert value(samples, "flowrpc_calls_total", method=CREATE, code="OK") == 1
    assert f"metrics at http://127.0.0.1:{metrics_port}/metrics" in log.decode()
