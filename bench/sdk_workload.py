"""The `sdk` section's workload: one script written against Prefect 3's workflow API that runs
under Prefect or flowrpc, the only difference being the imports (`--sdk`). Run by
`python -m bench` in each SDK's virtual environment, against that SDK's server (PREFECT_API_URL /
FLOWRPC_API_URL) or, with neither set, its ephemeral (Prefect) or embedded (flowrpc) server.

    python bench/sdk_workload.py --sdk prefect|flowrpc [--n 1000] [--calls 20] [--phases ...]

Prints one line `SDKBENCH {json}` per phase: its rate (ops/s), and for calls timed one by one
their p50/p99 latency. The harness then counts the runs and states on the server.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

PHASES = [
    "first-flow-call",
    "flow-call",
    "subflow-call",
    "sequential-tasks",
    "submitted-tasks",
    "mapped-tasks",
    "cached-calls",
    "retried-task",
]

parser = argparse.ArgumentParser()
parser.add_argument("--sdk", choices=["prefect", "flowrpc"], required=True)
parser.add_argument("--n", type=int, default=1000, help="tasks per task phase")
parser.add_argument("--calls", type=int, default=20, help="calls per flow/cached/retry phase")
parser.add_argument("--phases", type=lambda s: s.split(","), default=PHASES)
parser.add_argument("--workers", type=int, default=8, help="ThreadPoolTaskRunner max_workers")
args = parser.parse_args()

# The only SDK-specific lines: a Prefect script ports to flowrpc by changing these imports.
if args.sdk == "prefect":
    from prefect import flow, task, unmapped
    from prefect.cache_policies import INPUTS
    from prefect.futures import wait
    from prefect.task_runners import ThreadPoolTaskRunner
else:
    from flowrpc import flow, task, unmapped  # noqa: I001 (mirrors the Prefect lines)
    from flowrpc.cache_policies import INPUTS
    from flowrpc.futures import wait
    from flowrpc.task_runners import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=args.workers)
timings: dict[str, list[float]] = {}  # seconds per call, filled inside the flows
spans: dict[str, float] = {}  # seconds a whole phase took, measured inside its flow
attempts: Counter[int] = Counter()
cpu_at_start = 0.0  # the workload process's CPU seconds when the current phase began


def timed(phase: str, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = call()
    timings.setdefault(phase, []).append(time.perf_counter() - started)
    return result


@task
def noop(i: int) -> int:
    return i


@task
def add(i: int, j: int) -> int:
    return i + j


@task(cache_policy=INPUTS)
def cached(i: int) -> int:
    return i


@task(retries=3, retry_delay_seconds=0)
def flaky(i: int) -> int:
    """Fails its first three attempts, then succeeds."""
    attempts[i] += 1
    if attempts[i] <= 3:
        raise ValueError(f"attempt {attempts[i]} of call {i} fails")
    return i


@flow
def empty() -> None:
    return None


@flow
def child() -> int:
    return 1


@flow
def parent(calls: int) -> int:
    return sum(timed("subflow-call", child) for _ in range(calls))


@flow(task_runner=RUNNER)
def sequential(n: int) -> int:
    started = time.perf_counter()
    total = sum(timed("sequential-tasks", lambda i=i: noop(i)) for i in range(n))
    spans["sequential-tasks"] = time.perf_counter() - started
    return total


@flow(task_runner=RUNNER)
def submitted(n: int) -> int:
    started = time.perf_counter()
    futures = [noop.submit(i) for i in range(n)]
    wait(futures)
    spans["submitted-tasks"] = time.perf_counter() - started
    return sum(future.result() for future in futures)


@flow(task_runner=RUNNER)
def mapped(n: int) -> int:
    started = time.perf_counter()
    results = add.map(range(n), unmapped(1)).result()
    spans["mapped-tasks"] = time.perf_counter() - started
    return sum(results)


@flow
def cached_calls(calls: int) -> str:
    cached(7)  # computes and stores the result; the calls below find it
    for _ in range(calls):
        timed("cached-calls", lambda: cached(7))
    return cached(7, return_state=True).name  # one more, to check it is "Cached"


@flow
def retried(calls: int) -> int:
    return sum(timed("retried-task", lambda i=i: flaky(i)) for i in range(calls))


def report(phase: str, ops: int, seconds: float, **extra: Any) -> None:
    latencies = sorted(timings.get(phase, []))
    line = {
        "phase": phase,
        "ops": ops,
        "seconds": seconds,
        "ops_per_s": ops / seconds if seconds else None,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "client_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "client_cpu_s": time.process_time() - cpu_at_start,
        **extra,
    }
    print("SDKBENCH " + json.dumps(line), flush=True)


def run_phase(phase: str, n: int, calls: int) -> tuple[int, int]:
    """Runs one phase and reports it; returns the flow runs and task runs it makes."""
    global cpu_at_start
    cpu_at_start = time.process_time()
    started = time.perf_counter()
    if phase == "first-flow-call":  # pays the engine's imports and, locally, a server's start
        timed(phase, empty)
        report(phase, 1, time.perf_counter() - started)
        return 1, 0
    if phase == "flow-call":
        for _ in range(calls):
            timed(phase, empty)
        report(phase, calls, time.perf_counter() - started)
        return calls, 0
    if phase == "subflow-call":
        parent(calls)
        report(phase, calls, sum(timings[phase]))
        return 1 + calls, calls  # each subflow has a parent task run
    if phase in ("sequential-tasks", "submitted-tasks", "mapped-tasks"):
        body = {"sequential-tasks": sequential, "submitted-tasks": submitted}.get(phase, mapped)
        total = body(n)
        if total != sum(range(n)) + (n if phase == "mapped-tasks" else 0):
            raise AssertionError(f"{phase}: wrong sum {total}")
        # The rate is taken inside the flow; flow_s is the whole call, with the flow's own
        # start and end (Prefect's submitted-task flows spent seconds ending).
        report(phase, n, spans[phase], flow_s=time.perf_counter() - started)
        return 1, n
    if phase == "cached-calls":
        state_name = cached_calls(calls)
        report(phase, calls, sum(timings[phase]), last_state=state_name)
        return 1, calls + 2
    if phase == "retried-task":
        retried(calls)
        report(phase, calls, sum(timings[phase]), attempts=sum(attempts.values()))
        return 1, calls
    raise SystemExit(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")


def main() -> None:
    """Every phase in turn; a phase that fails is reported with its error and the next runs."""
    expected = Counter()  # flow runs and task runs this process makes
    for phase in args.phases:
        try:
            flow_runs, task_runs = run_phase(phase, args.n, args.calls)
        except Exception as error:  # Prefect's ephemeral server answers 503 under load
            line = {"phase": phase, "error": f"{type(error).__name__}: {str(error)[:300]}"}
            print("SDKBENCH " + json.dumps(line), flush=True)
            continue
        expected["flow_runs"] += flow_runs
        expected["task_runs"] += task_runs
    print("SDKBENCH " + json.dumps({"phase": "expected", **expected}), flush=True)


if __name__ == "__main__":
    main()
