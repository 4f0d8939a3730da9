"""Reschedule late flow runs: delete a deployment's late runs and re-create the most recent ones
six hours later. Prefect's "reschedule late runs" recipe, unchanged apart from its imports.

    FLOWRPC_API_URL=127.0.0.1:4250 python examples/reschedule_late_runs.py
"""

import asyncio
from datetime import datetime, timedelta, timezone

from flowrpc import get_client
from flowrpc.schemas.filters import DeploymentFilter, FlowRunFilter
from flowrpc.schemas.objects import FlowRun
from flowrpc.schemas.sorting import FlowRunSort
from flowrpc.states import Scheduled


async def reschedule_late_flow_runs(
    deployment_name: str,
    delay: timedelta,
    most_recent_n: int,
    delete_remaining: bool = True,
    states: list[str] | None = None,
) -> list[FlowRun]:
    states = states or ["Late"]

    async with get_client() as client:
        flow_runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=dict(name=dict(any_=states)),
                expected_start_time=dict(before_=datetime.now(timezone.utc)),  # noqa: UP017
            ),
            deployment_filter=DeploymentFilter(name={"like_": deployment_name}),
            sort=FlowRunSort.START_TIME_DESC,
            limit=most_recent_n if not delete_remaining else None,
        )

        if not flow_runs:
            print(f"No flow runs found in states: {states!r}")
            return []

        rescheduled_flow_runs: list[FlowRun] = []
        for i, run in enumerate(flow_runs):
            await client.delete_flow_run(flow_run_id=run.id)
            if i < most_recent_n:
                new_run = await client.create_flow_run_from_deployment(
                    deployment_id=run.deployment_id,
                    state=Scheduled(scheduled_time=run.expected_start_time + delay),
                )
                rescheduled_flow_runs.append(new_run)

        return rescheduled_flow_runs


def reschedule_late_flow_runs_sync(
    deployment_name: str,
    delay: timedelta,
    most_recent_n: int,
    delete_remaining: bool = True,
    states: list[str] | None = None,
) -> list[FlowRun]:
    """The same with the sync client."""
    states = states or ["Late"]

    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=dict(name=dict(any_=states)),
                expected_start_time=dict(before_=datetime.now(timezone.utc)),  # noqa: UP017
            ),
            deployment_filter=DeploymentFilter(name={"like_": deployment_name}),
            sort=FlowRunSort.START_TIME_DESC,
            limit=most_recent_n if not delete_remaining else None,
        )

        if not flow_runs:
            print(f"No flow runs found in states: {states!r}")
            return []

        rescheduled_flow_runs: list[FlowRun] = []
        for i, run in enumerate(flow_runs):
            client.delete_flow_run(flow_run_id=run.id)
            if i < most_recent_n:
                new_run = client.create_flow_run_from_deployment(
                    deployment_id=run.deployment_id,
                    state=Scheduled(scheduled_time=run.expected_start_time + delay),
                )
                rescheduled_flow_runs.append(new_run)

        return rescheduled_flow_runs


def _check(rescheduled_flow_runs: list[FlowRun]) -> list[FlowRun]:
    if not rescheduled_flow_runs:
        raise SystemExit(
            "Nothing to reschedule: run `python examples/seed.py` first (its runs scheduled in the"
            " past turn Late once the server's late-runs service sees them)."
        )
    print(f"Rescheduled {len(rescheduled_flow_runs)} flow runs")
    assert all(run.state.is_scheduled() for run in rescheduled_flow_runs)
    assert all(
        run.expected_start_time > datetime.now(timezone.utc)  # noqa: UP017
        for run in rescheduled_flow_runs
    )
    return rescheduled_flow_runs


async def main() -> list[FlowRun]:
    return _check(
        await reschedule_late_flow_runs(
            deployment_name="healthcheck-storage-test",
            delay=timedelta(hours=6),
            most_recent_n=3,
        )
    )


def main_sync() -> list[FlowRun]:
    return _check(
        reschedule_late_flow_runs_sync(
            deployment_name="healthcheck-storage-test",
            delay=timedelta(hours=6),
            most_recent_n=3,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
    # or, blocking: main_sync()
