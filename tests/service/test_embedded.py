"""The embedded default server (flowrpc.engine.embedded): a script with no FLOWRPC_API_URL gets
a real server of its own over FLOWRPC_HOME's SQLite file; several such scripts write the file at
once without "database is locked"; a server started later on that home shows their runs; at exit
calls in flight finish and nothing acknowledged is lost."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import running_server

from flowrpc import get_client
from flowrpc.client import SyncFlowRPCClient
from flowrpc.engine import embedded
from flowrpc.schemas.filters import FlowRunFilter, LogFilter, TaskRunFilter
from flowrpc.server.ids import now_micros
from flowrpc.server.storage import database, flows
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings

SCRIPT = Path(__file__).parent / "embedded_script.py"
RUNS, TASKS, CONCURRENCY = 300, 2, 16


def script_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWRPC_")}
    return {**env, "FLOWRPC_HOME": str(home)}


def run_script(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        env=script_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def later_client(home: Path) -> Iterator[SyncFlowRPCClient]:
    """A client of a server started afterwards on the same FLOWRPC_HOME (its default database)."""
    settings = Settings(home=home, port=0, late_runs_enabled=False, pause_expirations_enabled=False)
    with (
        running_server(settings) as server,
        get_client(sync_client=True, api_url=f"127.0.0.1:{server.port}") as client,
    ):
        yield client


def count_task_runs(client, task_run_filter: TaskRunFilter) -> int:
    """Task runs matching the filter, a page of 200 at a time (the client has no count)."""
    total = 0
    while page := client.read_task_runs(task_run_filter=task_run_filter, limit=200, offset=total):
        total += len(page)
    return total


def test_api_url_is_FLOWRPC_API_URL_when_set(monkeypatch):
    monkeypatch.setenv("FLOWRPC_API_URL", "127.0.0.1:1")
    assert embedded.api_url() == "127.0.0.1:1"
    assert not embedded.running()  # nothing started for it


def test_embedded_settings_serve_loopback_without_services(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWRPC_HOME", str(tmp_path))
    monkeypatch.setenv("FLOWRPC_PORT", "4250")
    monkeypatch.setenv("FLOWRPC_METRICS_PORT", "9100")
    settings = embedded.embedded_settings()
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 0, None)
    assert not settings.late_runs_enabled and not settings.pause_expirations_enabled
    assert not settings.tracing_enabled
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'flowrpc.db'}"


def test_two_scripts_write_one_home_at_once_and_a_later_server_shows_their_runs(tmp_path):
    scripts = [run_script(tmp_path, "write", str(RUNS), str(TASKS), str(CONCURRENCY))]
    scripts.append(run_script(tmp_path, "write", str(RUNS), str(TASKS), str(CONCURRENCY)))
    outcomes = [script.communicate(timeout=300) for script in scripts]
    for script, (out, err) in zip(scripts, outcomes, strict=True):
        assert script.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["errors"] == []
        assert "database is locked" not in err
    urls = {json.loads(out.splitlines()[-1])["url"] for out, _ in outcomes}
    assert len(urls) == 2  # each script had its own server

    with later_client(tmp_path) as client:
        assert client.count_flow_runs() == 2 * RUNS
        done = FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}})
        assert client.count_flow_runs(flow_run_filter=done) == 2 * RUNS
        done_tasks = TaskRunFilter(state={"type": {"any_": ["COMPLETED"]}})
        assert count_task_runs(client, done_tasks) == 2 * RUNS * TASKS


def test_exit_finishes_calls_in_flight_and_runs_before_stop_callbacks(tmp_path):
    acked_file = tmp_path / "acked.txt"
    script = run_script(tmp_path, "exit", str(acked_file))
    _, err = script.communicate(timeout=120)
    assert script.returncode == 0, err
    acked = set(acked_file.read_text().split())
    assert acked  # the daemon thread was writing when the interpreter exited

    with later_client(tmp_path) as client:
        stored = {str(run.id) for run in client.iter_flow_runs()}
        assert acked <= stored  # every acknowledged run was committed
        last = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags={"all_": ["before-stop"]}))
        assert len(last) == 1  # the callback ran while the server still served


def test_a_script_killed_outright_leaves_no_server_behind(tmp_path):
    script = subprocess.Popen(
        [sys.executable, "-c", START_AND_WAIT],
        env=script_env(tmp_path),
        stdout=subprocess.PIPE,
        text=True,
    )
    server_pid = int(script.stdout.readline())
    script.kill()  # SIGKILL: no exit handler runs; the pipe to the server closes with the script
    script.wait()
    deadline = time.monotonic() + 30
    while _alive(server_pid):
        assert time.monotonic() < deadline, "the embedded server outlived its script"
        time.sleep(0.1)


START_AND_WAIT = """
import time
from flowrpc.engine import embedded
embedded.api_url()
print(embedded._running.process.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not reaped by its parent, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_server_that_cannot_start_says_why(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("FLOWRPC_DATABASE_URL", f"sqlite:///{tmp_path / 'a-file' / 'flowrpc.db'}")
    with pytest.raises(embedded.EmbeddedServerError, match="could not start"):
        embedded._Embedded()


async def test_a_write_waits_out_another_process_holding_the_write_lock(
    tmp_path, monkeypatch, caplog
):
    """Past the busy timeout SQLite answers "database is locked"; the writer asks again."""
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "flowrpc.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_WRITE_LOCK, str(path), "1.0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline().strip() == "holding"
        with caplog.at_level(logging.WARNING, logger=database.__name__):
            flow, _ = await db.write(flows.create_flow, {"name": "after-the-lock"}, now_micros())
        assert holder.wait(timeout=30) == 0
        assert any("waited" in record.getMessage() for record in caplog.records)
        names = await db.read(lambda conn: set(conn.execute(sa.select(t.flow.c.name)).scalars()))
        assert names == {"after-the-lock"}
    finally:
        db.close()


HOLD_WRITE_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_two_sdk_scripts_without_a_server_both_run_and_a_later_server_shows_them(tmp_path):
    """The README's first step: `python flow.py` with nothing running, twice at once."""
    etl = Path(__file__).parents[2] / "examples" / "sdk" / "etl.py"
    scripts = [
        subprocess.Popen(
            [sys.executable, str(etl)],
            env=script_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for script in scripts:
        out, err = script.communicate(timeout=300)
        assert script.returncode == 0, err
        assert out.endswith("etl: Completed, result 110.0\n")
        assert "database is locked" not in err

    with later_client(tmp_path) as client:
        runs = client.read_flow_runs()
        etl_runs = [run for run in runs if run.parent_task_run_id is None]
        assert len(etl_runs) == 2 and len(runs) == 4  # two etl runs, each with its subflow
        assert {run.state_name for run in runs} == {"Completed"}
        for run in etl_runs:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
            assert len(tasks) == 7  # extract, 4 x transform, lookup_rate, the subflow's task
            logs = client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [run.id]}))
            assert any(log.message == "loaded 4 rows, total 110.0" for log in logs)


FLOW_USING_GET_CLIENT = """
from flowrpc import flow, get_client

@flow
def count_runs() -> int:
    with get_client(sync_client=True) as client:
        return client.count_flow_runs()

print(count_runs())
"""


def test_get_client_inside_a_flow_reaches_the_embedded_server_which_ignores_otel(tmp_path):
    # An exporter that is not installed would stop a server that honoured OTEL_* at its start.
    env = {**script_env(tmp_path), "OTEL_TRACES_EXPORTER": "not-installed"}
    script = subprocess.run(
        [sys.executable, "-c", FLOW_USING_GET_CLIENT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout == "1\n"  # its own run, on the embedded server
