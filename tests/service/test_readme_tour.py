"""The README's grpcurl tour, run as written in bash against a real server whose late-runs
service is on, with tests/grpcurl_standin.py in grpcurl's place: each command's JSON must parse
into its request message (json_format, as grpcurl's protojson) and be answered, so the README
cannot drift from the protos; the run it makes due an hour ago turns Late and the history of the
last day holds it."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

from harness import running_server, sqlite_settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "grpcurl_standin.py"


def tour() -> str:
    """The first sh block after the README's "A short tour" heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A short tour") :]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def run_tour(address: str, tmp_path: pathlib.Path) -> list[dict]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    grpcurl = bin_dir / "grpcurl"
    grpcurl.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    grpcurl.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GRPCURL_STANDIN_LOG": str(log),
    }
    script = tour().replace("127.0.0.1:4250", address)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_readme_tour_runs_and_shows_a_late_run_and_its_history(tmp_path):
    settings = sqlite_settings(
        tmp_path, late_runs_enabled=True, late_runs_loop_seconds=0.2, late_runs_after_seconds=1.0
    )
    with running_server(settings) as server:
        calls = run_tour(f"127.0.0.1:{server.port}", tmp_path)

    answers = {
        call["method"]: [json.loads(r) if r[0] == "{" else r for r in call["response"]]
        for call in calls
    }
    assert {"flowrpc.v1.FlowRunService", "grpc.health.v1.Health"} <= set(answers["list"])
    assert answers["grpc.health.v1.Health/Check"] == [{"status": "SERVING"}]
    [created] = answers["flowrpc.v1.FlowRunService/CreateFlowRun"]
    run_id = created["flowRun"]["id"]

    [listed] = answers["flowrpc.v1.FlowRunService/ListFlowRuns"]
    assert [run["id"] for run in listed["flowRuns"]] == [run_id]
    assert listed["flowRuns"][0]["state"]["name"] == "Late"

    [proposed] = answers["flowrpc.v1.FlowRunService/SetFlowRunState"]
    assert proposed["result"]["status"] == "SET_STATE_STATUS_ACCEPT"

    [history] = answers["flowrpc.v1.FlowRunService/ReadFlowRunHistory"]
    assert len(history["intervals"]) in (24, 25)  # 25 if the two `date`s straddle a second
    counted = [s for interval in history["intervals"] for s in interval.get("states", [])]
    assert [(s["stateName"], s["countRuns"]) for s in counted] == [("Running", "1")]
