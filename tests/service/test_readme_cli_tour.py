"""The README's tour with the `flowrpc` command, run as written in bash against a real server
whose late-runs service is on: seed, list, inspect, cancel, history and delete, each answering
as the README says."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from harness import running_server, sqlite_settings

from flowrpc import get_client

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tour() -> str:
    """The first sh block after the README's "The same tour with the `flowrpc` command"."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The same tour with the `flowrpc` command") :]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_cli_tour_runs_as_written(tmp_path):
    settings = sqlite_settings(
        tmp_path, late_runs_enabled=True, late_runs_loop_seconds=0.2, late_runs_after_seconds=1.0
    )
    # This test's own environment: its interpreter's bin for .venv/bin, wide tables.
    script = tour().replace(".venv/bin/", f"{pathlib.Path(sys.executable).parent}/")
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWRPC_")}
    env["COLUMNS"] = "200"
    with running_server(settings) as server:
        address = f"127.0.0.1:{server.port}"
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace("127.0.0.1:4250", address)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, (result.stdout, result.stderr)
        with get_client(sync_client=True, api_url=address) as client:
            late = client.count_flow_runs(flow_run_filter={"state": {"name": {"any_": ["Late"]}}})
            cancelled = client.count_flow_runs(
                flow_run_filter={"state": {"type": {"any_": ["CANCELLED"]}}}
            )
    out = result.stdout
    assert out.startswith("flowrpc ")
    assert f"{address}: SERVING\n" in out
    assert "Seeded deployment 'healthcheck/healthcheck-storage-test'" in out
    assert re.search(r"^ healthcheck/healthcheck-storage-test +\S{36} +no ", out, re.M)
    listed_late = re.findall(r"^ (\S{36}) +healthcheck +\S+ +Late ", out, re.M)
    assert len(listed_late) == 4
    assert "state            Late" in out and "State history" in out
    assert "cancelled 1 flow run (1 Cancelled)" in out
    chart = out[out.index("Flow runs by state") :].splitlines()
    assert "(24 intervals of 1h)" in chart[0]
    assert {line.split()[0] for line in chart[1:7]} >= {"Late", "Completed", "Cancelled"}
    assert "1 flow run would be deleted" in out
    assert out.rstrip().endswith("deleted 1 flow run")
    assert (late, cancelled) == (3, 0)
