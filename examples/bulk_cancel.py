"""Cancel every pending, running, scheduled or late flow run: first Prefect's recipe (list, cancel
one by one with force=True, repeat until none is left), unchanged apart from its imports; then the
same job as one server-side bulk call.

    FLOWRPC_API_URL=127.0.0.1:4250 python examples/bulk_cancel.py
"""

import asyncio

from flowrpc import get_client
from flowrpc.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName
from flowrpc.schemas.objects import FlowRun, StateType
from flowrpc.schemas.responses import BulkSetStateResult
from flowrpc.states import Cancelled

STATES = ["Pending", "Running", "Scheduled", "Late"]


async def list_flow_runs_with_states(states: list[str]) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=states))
            )
        )


async def cancel_flow_runs(flow_runs: list[FlowRun]) -> None:
    async with get_client() as client:
        for idx, flow_run in enumerate(flow_runs):
            print(f"[{idx + 1}] Cancelling flow run '{flow_run.name}' with ID '{flow_run.id}'")
            state_updates: dict[str, object] = {}
            state_updates.setdefault("name", "Cancelled")
            state_updates.setdefault("type", StateType.CANCELLED)
            state = flow_run.state.copy(update=state_updates)
            await client.set_flow_run_state(flow_run.id, state, force=True)


async def bulk_cancel_flow_runs() -> None:
    states = STATES
    flow_runs = await list_flow_runs_with_states(states)

    while len(flow_runs) > 0:
        print(f"Cancelling {len(flow_runs)} flow runs\n")
        await cancel_flow_runs(flow_runs)
        flow_runs = await list_flow_runs_with_states(states)
    print("Done!")


async def bulk_cancel_in_one_call() -> list[BulkSetStateResult]:
    """The same job in one call: the server selects the runs and streams back one result each."""
    async with get_client() as client:
        results = [
            result
            async for result in client.bulk_set_flow_run_state(
                Cancelled(),
                force=True,
                flow_run_filter=FlowRunFilter(state={"name": {"any_": STATES}}),
            )
        ]
    print(f"Cancelled {sum(r.status == 'ACCEPT' for r in results)} of {len(results)} flow runs")
    return results


# ---- the same with the sync client ----


def list_flow_runs_with_states_sync(states: list[str]) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=states))
            )
        )


def cancel_flow_runs_sync(flow_runs: list[FlowRun]) -> None:
    with get_client(sync_client=True) as client:
        for idx, flow_run in enumerate(flow_runs):
            print(f"[{idx + 1}] Cancelling flow run '{flow_run.name}' with ID '{flow_run.id}'")
            state = flow_run.state.copy(update={"name": "Cancelled", "type": StateType.CANCELLED})
            client.set_flow_run_state(flow_run.id, state, force=True)


def bulk_cancel_flow_runs_sync() -> None:
    flow_runs = list_flow_runs_with_states_sync(STATES)
    while len(flow_runs) > 0:
        print(f"Cancelling {len(flow_runs)} flow runs\n")
        cancel_flow_runs_sync(flow_runs)
        flow_runs = list_flow_runs_with_states_sync(STATES)
    print("Done!")


def bulk_cancel_in_one_call_sync() -> list[BulkSetStateResult]:
    with get_client(sync_client=True) as client:
        results = list(
            client.bulk_set_flow_run_state(
                Cancelled(),
                force=True,
                flow_run_filter=FlowRunFilter(state={"name": {"any_": STATES}}),
            )
        )
    print(f"Cancelled {sum(r.status == 'ACCEPT' for r in results)} of {len(results)} flow runs")
    return results


NOTHING_TO_CANCEL = (
    f"No flow runs in {', '.join(STATES)} to cancel: run `python examples/seed.py` first."
)


def _check_left(flow_runs: list[FlowRun]) -> None:
    if flow_runs:
        raise SystemExit(f"{len(flow_runs)} flow runs are still in {', '.join(STATES)}.")


async def main(one_call: bool = False) -> None:
    """Prefect's loop by default; one_call=True uses bulk_set_flow_run_state instead."""
    if not await list_flow_runs_with_states(STATES):
        raise SystemExit(NOTHING_TO_CANCEL)
    if one_call:
        await bulk_cancel_in_one_call()
    else:
        await bulk_cancel_flow_runs()
    _check_left(await list_flow_runs_with_states(STATES))


def main_sync(one_call: bool = False) -> None:
    if not list_flow_runs_with_states_sync(STATES):
        raise SystemExit(NOTHING_TO_CANCEL)
    if one_call:
        bulk_cancel_in_one_call_sync()
    else:
        bulk_cancel_flow_runs_sync()
    _check_left(list_flow_runs_with_states_sync(STATES))


if __name__ == "__main__":
    asyncio.run(main())
