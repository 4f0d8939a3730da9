"""One phase of the benchmark workload, against Prefect's server or flowrpc, through each one's own
Python client. The same code drives both: flowrpc's client keeps PrefectClient's names.

Run by bench/__main__.py with each target's interpreter; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

TAGS = ["etl", "ml", "nightly", "adhoc", "critical"]
DEPLOYMENT = "bench-deployment"


def api(target: str) -> SimpleNamespace:
    """get_client, states, filters and sorts from prefect or flowrpc."""
    if target == "prefect":
        package, schemas = "prefect", "prefect.client.schemas"
    else:
        package, schemas = "flowrpc", "flowrpc.schemas"
    filters = importlib.import_module(f"{schemas}.filters")
    return SimpleNamespace(
        get_client=importlib.import_module(package).get_client,
        states=importlib.import_module(f"{package}.states"),
        filters=filters,
        FlowRunSort=importlib.import_module(f"{schemas}.sorting").FlowRunSort,
    )


async def deployment_id(client: Any, target: str) -> Any:
    flow_id = await client.create_flow_from_name("bench")
    try:
        return (await client.read_deployment_by_name(f"bench/{DEPLOYMENT}")).id
    except Exception:  # noqa: BLE001 - not created yet
        return await client.create_deployment(flow_id=flow_id, name=DEPLOYMENT)


async def timed(stages: list[list[Any]], concurrency: int) -> tuple[list[float], float]:
    """Runs each stage's call factories with `concurrency` calls in flight, one stage after the
    other; returns per-call latencies and the wall time."""
    latencies: list[float] = []

    async def worker(queue: list[Any]) -> None:
        while queue:
            call = queue.pop()
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    for stage in stages:
        queue = list(reversed(stage))
        await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def initial_state(a: SimpleNamespace, i: int) -> Any:
    """60% Scheduled in the past, 20% Completed, 20% Failed."""
    kind = i % 5
    if kind < 3:
        return a.states.Scheduled(
            scheduled_time=datetime.now(UTC) - timedelta(minutes=random.randint(1, 600))
        )
    return a.states.Completed() if kind == 3 else a.states.Failed()


async def run_phase(args: argparse.Namespace) -> dict[str, Any]:
    a = api(args.target)
    async with a.get_client(**client_args(args)) as client:
        dep = await deployment_id(client, args.target)
        stages = await PHASES[args.phase](client, a, dep, args)
        latencies, seconds = await timed(stages, args.concurrency)
    latencies.sort()
    return {
        "phase": args.phase,
        "concurrency": args.concurrency,
        "ops": len(latencies),
        "seconds": seconds,
        "ops_per_s": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        if latencies
        else None,
    }


def client_args(args: argparse.Namespace) -> dict[str, Any]:
    return {} if args.target == "prefect" else {"api_url": args.url}


async def create(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    def op(i: int) -> Any:
        tags = random.sample(TAGS, 2)
        return lambda: client.create_flow_run_from_deployment(
            dep, state=initial_state(a, i), tags=tags
        )

    return [[op(i) for i in range(args.n)]]


async def transition(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    """Untimed: n/2 Pending runs. Timed: n transitions, each run Pending -> Running, then each
    Running -> Completed, not forced."""
    runs = [
        await client.create_flow_run_from_deployment(dep, state=a.states.Pending())
        for _ in range(args.n // 2)
    ]

    def op(run_id: Any, state: Any) -> Any:
        async def call() -> None:
            result = await client.set_flow_run_state(run_id, state)
            assert str(result.status.value).upper().endswith("ACCEPT"), result

        return call

    return [[op(run.id, new()) for run in runs] for new in (a.states.Running, a.states.Completed)]


async def read(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    f = a.filters
    flow_run_filter = f.FlowRunFilter(
        state=f.FlowRunFilterState(name=f.FlowRunFilterStateName(any_=["Scheduled", "Late"]))
    )
    sort = a.FlowRunSort.EXPECTED_START_TIME_DESC
    return [
        [
            lambda: client.read_flow_runs(flow_run_filter=flow_run_filter, sort=sort, limit=200)
            for _ in range(args.calls)
        ]
    ]


async def count(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    flow_run_filter = a.filters.FlowRunFilter(state={"type": {"any_": ["COMPLETED"]}})
    return [[lambda: client.count_flow_runs(flow_run_filter=flow_run_filter)] * args.calls]


async def history(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    end = datetime.now(UTC)
    start = end - timedelta(hours=24)

    if args.target == "prefect":  # PrefectClient has no history method: its route, via its client

        async def op() -> Any:
            body = {
                "history_start": start.isoformat(),
                "history_end": end.isoformat(),
                "history_interval_seconds": 3600,
            }
            response = await client.request("POST", "/flow_runs/history", json=body)
            response.raise_for_status()
            return response.json()

    else:

        async def op() -> Any:
            return await client.read_flow_run_history(start, end, timedelta(hours=1))

    return [[op] * args.calls]


async def delete(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    """Untimed: the ids of up to n runs. Timed: deleting each."""
    ids: list[Any] = []
    while len(ids) < args.n:
        page = await client.read_flow_runs(limit=200, offset=len(ids))
        if not page:
            break
        ids += [run.id for run in page]
    return [[lambda run_id=run_id: client.delete_flow_run(run_id) for run_id in ids[: args.n]]]


async def iterate(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    """Walks every Completed run tagged both critical and etl (a filtered scan of the table)."""
    f = a.filters
    flow_run_filter = f.FlowRunFilter(
        state=f.FlowRunFilterState(type=f.FlowRunFilterStateType(any_=["COMPLETED"])),
        tags=f.FlowRunFilterTags(all_=["critical", "etl"]),
    )

    async def walk() -> int:
        if args.target == "flowrpc":
            return sum([1 async for _ in client.iter_flow_runs(flow_run_filter=flow_run_filter)])
        seen = 0  # PrefectClient pages by offset
        while page := await client.read_flow_runs(
            flow_run_filter=flow_run_filter, limit=200, offset=seen
        ):
            seen += len(page)
        return seen

    return [[walk] * args.calls]


async def bulk(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    """Cancels n Scheduled runs: one server-side call (flowrpc), or Prefect's bulk_set_state
    route, 50 runs a call (its maximum)."""
    f = a.filters
    scheduled = f.FlowRunFilter(state={"type": {"any_": ["SCHEDULED"]}})

    async def flowrpc_cancel() -> None:
        async for _ in client.bulk_set_flow_run_state(
            a.states.Cancelled(), flow_run_filter=scheduled, limit=args.n
        ):
            pass

    async def prefect_cancel() -> None:
        body = {
            "flow_runs": scheduled.model_dump(mode="json", exclude_unset=True),
            "state": {"type": "CANCELLED", "name": "Cancelled"},
            "limit": 50,
        }
        response = await client.request("POST", "/flow_runs/bulk_set_state", json=body)
        response.raise_for_status()

    if args.target == "flowrpc":
        return [[flowrpc_cancel]]
    return [[prefect_cancel] * (args.n // 50)]


async def bulk_create(client: Any, a: SimpleNamespace, dep: Any, args: argparse.Namespace) -> list:
    """flowrpc only: n runs of the bench deployment in one create_flow_runs call, the create
    phase's mix of initial states and tags (the specs are built untimed), results in --view."""
    from flowrpc.schemas.actions import FlowRunCreate

    runs = [
        FlowRunCreate(deployment_id=dep, state=initial_state(a, i), tags=random.sample(TAGS, 2))
        for i in range(args.n)
    ]

    async def create_all() -> None:
        results = await client.create_flow_runs(runs, view=args.view)
        failed = [r.error for r in results if r.error is not None]
        assert len(results) == args.n and not failed, failed[:3]

    return [[create_all]]


PHASES = {
    "bulk-create": bulk_create,
    "iter": iterate,
    "bulk": bulk,
    "create": create,
    "transition": transition,
    "read": read,
    "count": count,
    "history": history,
    "delete": delete,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["prefect", "flowrpc"], required=True)
    parser.add_argument("--phase", choices=sorted(PHASES), required=True)
    parser.add_argument("--url", help="flowrpc address (Prefect reads PREFECT_API_URL)")
    parser.add_argument("--n", type=int, default=5000, help="runs for create/transition/delete")
    parser.add_argument("--calls", type=int, default=200, help="calls for read/count/history")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--view", choices=["basic", "full"], default="full", help="bulk-create")
    print(json.dumps(asyncio.run(run_phase(parser.parse_args()))))


if __name__ == "__main__":
    main()
