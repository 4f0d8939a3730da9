"""Seed a server with the data the other examples use: the `healthcheck` flow, its
`healthcheck-storage-test` deployment, and runs of it in several states. Run it first:

    FLOWRPC_API_URL=127.0.0.1:4250 python examples/seed.py

Runs made: 4 Scheduled one to four hours in the past (the server's late-runs service names them
Late within FLOWRPC_LATE_RUNS_LOOP_SECONDS, as they are more than FLOWRPC_LATE_RUNS_AFTER_SECONDS
overdue), 2 Scheduled in the future, 2 Pending, 2 Running, 4 Completed and 1 Failed. Running it
again only tops each kind back up (say after reschedule_late_runs.py or bulk_cancel.py used them),
so it never piles up runs. Only the public client is used.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flowrpc import get_client
from flowrpc.client import SyncFlowRPCClient
from flowrpc.schemas.filters import FlowRunFilter
from flowrpc.schemas.objects import FlowRun
from flowrpc.states import Completed, Failed, Pending, Running, Scheduled

FLOW_NAME = "healthcheck"
DEPLOYMENT_NAME = "healthcheck-storage-test"
WAIT_FOR_LATE_SECONDS = 30.0


def kinds(now: datetime) -> dict[str, tuple[int, dict[str, Any], Callable[[int], list[Any]]]]:
    """For each kind of run: how many to keep, the filter that counts them, and the states
    that make the i-th one (created with the first, then proposed in turn)."""

    def state_type(name: str) -> dict[str, Any]:
        return {"state": {"type": {"any_": [name]}}}

    return {
        "overdue": (
            4,
            {**state_type("SCHEDULED"), "expected_start_time": {"before_": now}},
            lambda i: [Scheduled(scheduled_time=now - timedelta(hours=i + 1))],
        ),
        "future": (
            2,
            {**state_type("SCHEDULED"), "expected_start_time": {"after_": now}},
            lambda i: [Scheduled(scheduled_time=now + timedelta(hours=i + 1))],
        ),
        "pending": (2, state_type("PENDING"), lambda i: [Pending()]),
        "running": (2, state_type("RUNNING"), lambda i: [Pending(), Running()]),
        "completed": (4, state_type("COMPLETED"), lambda i: [Pending(), Running(), Completed()]),
        "failed": (
            1,
            state_type("FAILED"),
            lambda i: [Pending(), Running(), Failed(message="disk full")],
        ),
    }


def make_run(client: SyncFlowRPCClient, deployment_id: Any, states: list[Any]) -> FlowRun:
    """A run of the deployment created in states[0], then moved through the others as a worker
    would; each move must be accepted."""
    run = client.create_flow_run_from_deployment(deployment_id, state=states[0], tags=["seed"])
    for state in states[1:]:
        result = client.set_flow_run_state(run.id, state)
        if result.status != "ACCEPT":
            raise SystemExit(f"The server answered {result.status} to {state.name}: {result}")
    return run


def count(client: SyncFlowRPCClient, deployment_id: Any, **filters: Any) -> int:
    run_filter = FlowRunFilter.model_validate(
        {"deployment_id": {"any_": [deployment_id]}, **filters}
    )
    return client.count_flow_runs(flow_run_filter=run_filter)


def wait_for_late(client: SyncFlowRPCClient, deployment_id: Any, overdue: int) -> None:
    """Waits (a few seconds) until the late-runs service has named the overdue runs Late."""
    late = {"state": {"name": {"any_": ["Late"]}}}
    deadline = time.monotonic() + WAIT_FOR_LATE_SECONDS
    if count(client, deployment_id, **late) < overdue:
        print(f"  waiting for the server's late-runs service to mark {overdue} overdue runs Late")
    while (marked := count(client, deployment_id, **late)) < overdue:
        if time.monotonic() > deadline:
            print(
                f"  only {marked} of {overdue} overdue runs are Late after"
                f" {WAIT_FOR_LATE_SECONDS:g} s: is the server's late-runs service off"
                " (FLOWRPC_LATE_RUNS_ENABLED=false), or FLOWRPC_LATE_RUNS_AFTER_SECONDS over an"
                " hour? reschedule_late_runs.py reschedules Late runs only."
            )
            return
        time.sleep(0.5)


def main() -> dict[str, int]:
    """Seeds the server; returns how many runs of each kind were created."""
    now = datetime.now(UTC)
    created: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(FLOW_NAME)
        # Creating an existing deployment replaces it in place (same id), so this is repeatable.
        deployment_id = client.create_deployment(
            flow_id, DEPLOYMENT_NAME, tags=["seed"], parameters={"bucket": "b1"}
        )
        for kind, (wanted, filters, states) in kinds(now).items():
            have = count(client, deployment_id, **filters)
            created[kind] = max(wanted - have, 0)
            for i in range(have, wanted):
                make_run(client, deployment_id, states(i))
        overdue = count(client, deployment_id, **kinds(now)["overdue"][1])
        print(f"Seeded deployment '{FLOW_NAME}/{DEPLOYMENT_NAME}' ({deployment_id}):")
        made = ", ".join(f"{n} {kind}" for kind, n in created.items())
        print(f"  created {sum(created.values())} runs ({made})")
        wait_for_late(client, deployment_id, overdue)
        for name in ["Late", "Scheduled", "Pending", "Running", "Completed", "Failed"]:
            by_name = {"state": {"name": {"any_": [name]}}}
            print(f"  {name}: {count(client, deployment_id, **by_name)}")
    return created


if __name__ == "__main__":
    main()
