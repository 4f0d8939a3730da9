"""Helpers for the SDK tests: what the server recorded about a run."""

from __future__ import annotations

import threading
from typing import Any

from flowrpc.client import SyncFlowRPCClient
from flowrpc.schemas.filters import TaskRunFilter


def flow_state_names(client: SyncFlowRPCClient, flow_run_id: Any) -> list[str]:
    """The flow run's state names, oldest first."""
    return [state.name for state in client.read_flow_run_states(flow_run_id)]


def task_runs_of(client: SyncFlowRPCClient, flow_run_id: Any) -> list[Any]:
    """The flow run's task runs, oldest first."""
    runs = client.read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id={"any_": [flow_run_id]}), limit=200
    )
    return sorted(runs, key=lambda run: run.id)


def reporter_threads() -> set[threading.Thread]:
    """The live threads of background state reporters (engine/reporter.py)."""
    return {thread for thread in threading.enumerate() if thread.name == "flowrpc-states"}
