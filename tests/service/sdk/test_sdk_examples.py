"""examples/sdk/ as a user runs them: each program in a child process against a real server,
then what the server recorded."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from sdk_support import task_runs_of

from flowrpc.schemas.filters import FlowFilter

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples" / "sdk"


def run(program: str, api_url: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / program)],
        env={**os.environ, "FLOWRPC_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def runs_of(client, flow_name):
    return client.read_flow_runs(flow_filter=FlowFilter(name={"any_": [flow_name]}))


def test_etl(client, api_url):
    assert run("etl.py", api_url).endswith("etl: Completed, result 110.0\n")
    [etl] = runs_of(client, "etl")
    assert (etl.state_name, etl.parameters) == (
        "Completed",
        {"n": 4, "factor": 10, "currency": "EUR"},
    )
    names = sorted(run.name.rsplit("-", 1)[0] for run in task_runs_of(client, etl.id))
    assert names == ["extract", "load", "lookup_rate"] + ["transform"] * 4
    [extract] = [r for r in task_runs_of(client, etl.id) if r.name.startswith("extract")]
    assert extract.run_count == 2  # failed once, retried
    [load] = runs_of(client, "load")
    assert load.parent_task_run_id is not None and load.state_name == "Completed"

    run("etl.py", api_url)  # a second process: the rate comes from the cache
    second = max(runs_of(client, "etl"), key=lambda r: r.id)
    [rate] = [r for r in task_runs_of(client, second.id) if r.name.startswith("lookup_rate")]
    assert rate.state_name == "Cached"


def test_methods_and_async(client, api_url):
    assert run("methods_and_async.py", api_url).split("\n") == [
        "weekly report by ada, 2 pages",
        "weekly template",
        "6",
        "fetched 6",
        "",
    ]
    for name in ("build", "template", "page-count", "fetch-all"):
        [flow_run] = runs_of(client, name)
        assert flow_run.state_name == "Completed", name


def test_validation_and_timeouts(client, api_url):
    output = run("validation_and_timeouts.py", api_url)
    assert "area 3000" in output
    assert "refused: - width: Input should be a valid integer" in output
    assert "too_slow: TimedOut: Flow run exceeded timeout of 0.5 second(s)" in output
    states = sorted(run.state_name for run in runs_of(client, "resize"))
    assert states == ["Completed", "Failed"]
