"""The examples as a newcomer runs them (examples/README.md): each program in a child process
with FLOWRPC_API_URL pointing at a real server whose late-runs service is on. On an empty server
each says to run seed.py; after seed.py each does its job; seed.py twice makes no more runs."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest
from harness import running_server

from flowrpc import get_client
from flowrpc.settings import Settings

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
PROGRAMS = ["last_completed_runs", "reschedule_late_runs", "bulk_cancel"]


@pytest.fixture
def api_url(database: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    settings = database.model_copy(
        update={
            "late_runs_enabled": True,
            "late_runs_loop_seconds": 0.2,
            "late_runs_after_seconds": 1.0,
        }
    )
    with running_server(settings) as server:
        address = f"127.0.0.1:{server.port}"
        monkeypatch.setenv("FLOWRPC_API_URL", address)
        monkeypatch.delenv("FLOWRPC_API_KEY", raising=False)
        yield address


def run(program: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{program}.py")],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_each_example_without_data_says_to_seed(api_url: str):
    for program in PROGRAMS:
        result = run(program)
        assert result.returncode == 1, (program, result.stdout, result.stderr)
        assert "examples/seed.py" in result.stderr, (program, result.stderr)
        assert "Traceback" not in result.stderr, (program, result.stderr)


def test_seed_then_each_example(api_url: str):
    seeded = run("seed")
    assert seeded.returncode == 0, seeded.stderr
    assert "created 15 runs" in seeded.stdout
    for line in ["Late: 4", "Scheduled: 2", "Pending: 2", "Running: 2", "Completed: 4"]:
        assert f"  {line}\n" in seeded.stdout, seeded.stdout

    again = run("seed")
    assert again.returncode == 0, again.stderr
    assert "created 0 runs" in again.stdout
    with get_client(sync_client=True) as client:
        assert client.count_flow_runs() == 15

    outputs = {}
    for program in PROGRAMS:
        result = run(program)
        assert result.returncode == 0, (program, result.stdout, result.stderr)
        assert result.stderr == "", (program, result.stderr)
        outputs[program] = result.stdout
    assert outputs["last_completed_runs"].count(": ended ") == 3
    assert "Rescheduled 3 flow runs" in outputs["reschedule_late_runs"]
    # 3 rescheduled + 2 Scheduled + 2 Pending + 2 Running, cancelled one by one.
    assert outputs["bulk_cancel"].count("Cancelling flow run") == 9
    assert outputs["bulk_cancel"].endswith("Done!\n")

    # Used up, the runs come back with a third seed: 4 overdue (turning Late), 2 pending,
    # 2 running (the 3 rescheduled runs were cancelled, so 2 future ones as well).
    topped_up = run("seed")
    assert topped_up.returncode == 0, topped_up.stderr
    assert "created 10 runs" in topped_up.stdout
    assert "  Late: 4\n" in topped_up.stdout
