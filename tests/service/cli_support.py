"""Running `flowrpc` in-process (typer's CliRunner) against a real server, and runs to act on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness import running_server, sqlite_settings
from typer.testing import CliRunner, Result

from flowrpc import get_client
from flowrpc.cli import app
from flowrpc.states import Completed, Failed, Pending, Running, Scheduled

QUIET = {"late_runs_enabled": False, "pause_expirations_enabled": False}


def serve(tmp_path: Path, **settings: Any) -> Iterator[str]:
    """For an `address` fixture: a real server on an empty SQLite database, its background
    services off unless `settings` say."""
    with running_server(sqlite_settings(tmp_path, **{**QUIET, **settings})) as server:
        yield f"127.0.0.1:{server.port}"


def flowrpc(address: str | None, *args: str, input: str | None = None, **env: str) -> Result:
    """`flowrpc ARGS` with FLOWRPC_API_URL=address (None: unset); wide, so tables keep one
    run a line. FLOWRPC_* variables of the test process do not leak in."""
    environment: dict[str, str | None] = {
        "COLUMNS": "200",
        "FLOWRPC_API_URL": address,
        "FLOWRPC_API_KEY": None,
        "FLOWRPC_API_TLS_CA": None,
        "FLOWRPC_API_TLS_CERT": None,
        "FLOWRPC_API_TLS_KEY": None,
        "FLOWRPC_RETRY_ATTEMPTS": "1",
        **env,
    }
    return CliRunner().invoke(app, list(args), input=input, env=environment, prog_name="flowrpc")


def seed(address: str) -> SimpleNamespace:
    """Runs of two flows: etl (deployment `nightly`: two overdue Scheduled, one due in an hour;
    one Completed and one Failed without deployment) and report (one Running, tagged a and b)."""
    now = datetime.now(UTC)
    etl, report = SimpleNamespace(name="etl"), SimpleNamespace(name="report")
    with get_client(sync_client=True, api_url=address) as client:
        deployment_id = client.create_deployment(client.create_flow(etl), "nightly")

        def scheduled(hours: float) -> Any:
            state = Scheduled(scheduled_time=now + timedelta(hours=hours))
            return client.create_flow_run_from_deployment(deployment_id, state=state)

        def moved(flow: Any, *states: Any, **options: Any) -> Any:
            run = client.create_flow_run(flow, state=Pending(), **options)
            for state in states:
                assert client.set_flow_run_state(run.id, state).status == "ACCEPT"
            return client.read_flow_run(run.id)

        return SimpleNamespace(
            deployment_id=deployment_id,
            overdue=[scheduled(-2), scheduled(-1)],
            future=scheduled(1),
            completed=moved(etl, Running(), Completed()),
            failed=moved(etl, Running(), Failed(message="disk full")),
            running=moved(report, Running(), tags=["a", "b"]),
        )
