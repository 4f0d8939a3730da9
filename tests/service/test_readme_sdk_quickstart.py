"""The README's quick start for a Python workflow, run as written: its flow file, run with nothing
else running (no FLOWRPC_API_URL, so the SDK embeds a server over FLOWRPC_HOME's database), then
the listing command against a server started afterwards on that same home."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from harness import running_server

from flowrpc import get_client
from flowrpc.schemas.filters import TaskRunFilter
from flowrpc.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECTION = "## Quick start: a Python workflow"


def quickstart() -> tuple[str, list[str]]:
    """The section's python block (flow.py) and the lines of its sh block, comments dropped."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    section = section[: section.index("\n## ")]
    flow_file = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    commands = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    lines = [line.split("#")[0].strip() for line in commands.splitlines()]
    return flow_file, [line for line in lines if line]


def run(command: str, cwd: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # This test's own environment: its interpreter's bin for .venv/bin.
    command = command.replace(".venv/bin/", f"{pathlib.Path(sys.executable).parent}/")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_readme_sdk_quickstart_runs_with_nothing_running_and_a_later_server_shows_it(
    tmp_path,
):
    flow_file, commands = quickstart()
    run_flow, start_server, list_runs = commands
    assert run_flow.endswith("python flow.py") and "server start" in start_server
    (tmp_path / "flow.py").write_text(flow_file)
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWRPC_")}
    env |= {"FLOWRPC_HOME": str(home), "COLUMNS": "200"}

    result = run(run_flow, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "total: 6" in result.stdout
    assert (home / "flowrpc.db").exists()

    # The README's server start, on a free port instead of 4250 (which may be taken here).
    settings = Settings(home=home, port=0, late_runs_enabled=False, pause_expirations_enabled=False)
    with running_server(settings) as server:
        address = f"127.0.0.1:{server.port}"
        listed = run(f"{list_runs} --api-url {address}", tmp_path, env)
        with get_client(sync_client=True, api_url=address) as client:
            (flow_run,) = client.read_flow_runs()
            flow = client.read_flow(flow_run.flow_id)
            task_runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id={"any_": [flow_run.id]})
            )
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^ {flow_run.id} +numbers +{flow_run.name} +Completed ", listed.stdout, re.M)
    assert flow.name == "numbers" and flow_run.state.is_completed()
    assert len(task_runs) == 3 and all(run.state.is_completed() for run in task_runs)
