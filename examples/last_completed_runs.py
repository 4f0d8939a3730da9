"""Get the last N completed flow runs, most recently ended first. Prefect's recipe, unchanged
apart from its imports.

    FLOWRPC_API_URL=127.0.0.1:4250 python examples/last_completed_runs.py
"""

import asyncio

from flowrpc import get_client
from flowrpc.schemas.filters import FlowRunFilter
from flowrpc.schemas.objects import FlowRun
from flowrpc.schemas.sorting import FlowRunSort


async def get_most_recent_flow_runs(n: int = 3, states: list[str] | None = None) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state={"type": {"any_": states or ["COMPLETED"]}}),
            sort=FlowRunSort.END_TIME_DESC,
            limit=n,
        )


def get_most_recent_flow_runs_sync(n: int = 3, states: list[str] | None = None) -> list[FlowRun]:
    """The same with the sync client."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state={"type": {"any_": states or ["COMPLETED"]}}),
            sort=FlowRunSort.END_TIME_DESC,
            limit=n,
        )


def _check(flow_runs: list[FlowRun]) -> list[FlowRun]:
    if not flow_runs:
        raise SystemExit("No completed flow runs yet: run `python examples/seed.py` first.")
    assert all(run.state.is_completed() for run in flow_runs)
    assert (end_times := [run.end_time for run in flow_runs]) == sorted(end_times, reverse=True)
    for run in flow_runs:
        print(f"{run.name}: ended {run.end_time:%Y-%m-%d %H:%M:%S}")
    return flow_runs


async def main() -> list[FlowRun]:
    return _check(await get_most_recent_flow_runs())


def main_sync() -> list[FlowRun]:
    return _check(get_most_recent_flow_runs_sync())


if __name__ == "__main__":
    asyncio.run(main())
