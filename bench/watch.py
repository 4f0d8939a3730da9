"""The `watch` section: WatchFlowRuns delivery latency and what watchers cost writers.

On one flowrpc server (SQLite, background services off):
1. the write rate with no watchers: `--writers` tasks force state changes on `--runs` runs as fast
   as they go, for `--seconds`;
2. `--watchers` watchers (raw stubs, no filter, no snapshot) in `--processes` processes, while
   the writers make `--rate` changes/s: each watcher records, for every change it receives, the
   time from the state's timestamp (minted by the server before its commit, so this bounds
   commit-to-watcher from above) to its arrival;
3. the write rate again, with the watchers connected.

    python -m bench.watch [--seconds 10] [--rate 1000] [--watchers 100] [--processes 4]

Also a section of `python -m bench --sections watch`. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402

STATES = (2, 3)  # STATE_TYPE_PENDING, STATE_TYPE_RUNNING: forced, each change is accepted


# ---- the child processes ----


async def write(url: str, runs: list[str], seconds: float, rate: float, tasks: int) -> dict:
    """Forced state changes, `rate` per second in all (0: as fast as they go)."""
    import grpc

    from flowrpc.v1 import flow_run_service_pb2 as fr
    from flowrpc.v1 import flow_run_service_pb2_grpc, state_pb2

    done = 0
    async with grpc.aio.insecure_channel(url) as channel:
        stub = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        started = time.perf_counter()

        async def writer(number: int) -> None:
            nonlocal done
            i = number
            while (now := time.perf_counter() - started) < seconds:
                if rate:
                    due = i / rate
                    if due > now:
                        await asyncio.sleep(due - now)
                state = state_pb2.State(type=STATES[(i // len(runs)) % 2])
                request = fr.SetFlowRunStateRequest(
                    flow_run_id=runs[i % len(runs)], state=state, force=True
                )
                await stub.SetFlowRunState(request)
                done += 1
                i += tasks

        await asyncio.gather(*(writer(n) for n in range(tasks)))
        elapsed = time.perf_counter() - started
    return {"changes": done, "seconds": elapsed, "changes_per_s": done / elapsed}


async def watch(url: str, count: int) -> None:
    """`count` watchers; prints "ready" once every marker came, then, when stdin closes, the
    latencies (ms) of every change received, as JSON."""
    import grpc

    from flowrpc.v1 import flow_run_service_pb2 as fr
    from flowrpc.v1 import flow_run_service_pb2_grpc

    latencies: list[float] = []
    ready = 0
    async with grpc.aio.insecure_channel(url) as channel:
        stub = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        all_ready = asyncio.Event()

        async def watcher() -> None:
            nonlocal ready
            call = stub.WatchFlowRuns(fr.WatchFlowRunsRequest(skip_snapshot=True))
            async for message in call:
                if message.HasField("marker"):
                    ready += 1
                    if ready == count:
                        all_ready.set()
                    continue
                arrived = time.time()
                for change in message.changes.changes:
                    stamp = change.state.timestamp
                    latencies.append((arrived - stamp.seconds - stamp.nanos / 1e9) * 1000)

        tasks = [asyncio.create_task(watcher()) for _ in range(count)]
        await all_ready.wait()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(latencies), flush=True)


# ---- the driver ----


def _python(*args: str, stdin: Any = None) -> subprocess.Popen[str]:
    command = [str(servers.FLOWRPC_PYTHON), "-m", "bench.watch", *args]
    return subprocess.Popen(command, cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE, text=True)


def _write_phase(
    server: servers.Process, runs: list[str], args: argparse.Namespace, rate: float
) -> dict:
    cpu = server.cpu_seconds()
    child = _python(
        "write",
        server.address,
        "--seconds",
        str(args.seconds),
        "--rate",
        str(rate),
        "--writers",
        str(args.writers),
        "--run-ids",
        ",".join(runs),
    )
    out, _ = child.communicate()
    result = json.loads(out.strip().splitlines()[-1])
    result["server_cpu_ms_per_change"] = (server.cpu_seconds() - cpu) * 1000 / result["changes"]
    return result


class _Watchers:
    def __init__(self, url: str, args: argparse.Namespace) -> None:
        share = [args.watchers // args.processes] * args.processes
        share[0] += args.watchers - sum(share)
        self.children = [
            _python("watchers", url, "--count", str(n), stdin=subprocess.PIPE) for n in share
        ]
        for child in self.children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"

    def stop(self) -> list[float]:
        latencies: list[float] = []
        for child in self.children:
            out, _ = child.communicate("")
            latencies += json.loads(out.strip().splitlines()[-1])
        return latencies


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as home:
        server = servers.start_flowrpc(Path(home))
        try:
            runs = asyncio.run(_create_runs(server.address, args.runs))
            alone = _write_phase(server, runs, args, 0)
            watchers = _Watchers(server.address, args)
            paced = _write_phase(server, runs, args, args.rate)
            latencies = watchers.stop()
            watchers = _Watchers(server.address, args)
            watched = _write_phase(server, runs, args, 0)
            watchers.stop()
        finally:
            server.stop()
    return {
        "section": "watch",
        "watchers": args.watchers,
        "target_rate": args.rate,
        "paced_changes_per_s": paced["changes_per_s"],
        "deliveries": len(latencies),
        "expected_deliveries": paced["changes"] * args.watchers,
        "latency_p50_ms": _percentile(latencies, 0.5),
        "latency_p99_ms": _percentile(latencies, 0.99),
        "latency_mean_ms": statistics.fmean(latencies) if latencies else None,
        "writes_per_s_alone": alone["changes_per_s"],
        "writes_per_s_watched": watched["changes_per_s"],
        "write_slowdown": 1 - watched["changes_per_s"] / alone["changes_per_s"],
        "server_cpu_ms_per_change_alone": alone["server_cpu_ms_per_change"],
        "server_cpu_ms_per_change_watched": watched["server_cpu_ms_per_change"],
    }


async def _create_runs(url: str, count: int) -> list[str]:
    import grpc

    from flowrpc.v1 import flow_run_service_pb2 as fr
    from flowrpc.v1 import flow_run_service_pb2_grpc, flow_service_pb2, flow_service_pb2_grpc

    async with grpc.aio.insecure_channel(url) as channel:
        flows = flow_service_pb2_grpc.FlowServiceStub(channel)
        flow = (await flows.CreateFlow(flow_service_pb2.CreateFlowRequest(name="watch"))).flow
        stub = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)
        made = await asyncio.gather(
            *(stub.CreateFlowRun(fr.CreateFlowRunRequest(flow_id=flow.id)) for _ in range(count))
        )
    return [response.flow_run.id for response in made]


def summary(result: dict) -> str:
    """The watch figures as a few lines of Markdown."""
    return "\n".join(
        [
            "| watchers | changes/s (target) | delivered | latency p50 / p99 ms |"
            " writes/s alone / watched | server CPU ms per change alone / watched |",
            "|---|---|---|---|---|---|",
            f"| {result['watchers']} | {result['paced_changes_per_s']:,.0f}"
            f" ({result['target_rate']:,.0f}) |"
            f" {result['deliveries']:,} of {result['expected_deliveries']:,} |"
            f" {result['latency_p50_ms']:.1f} / {result['latency_p99_ms']:.1f} |"
            f" {result['writes_per_s_alone']:,.0f} / {result['writes_per_s_watched']:,.0f} |"
            f" {result['server_cpu_ms_per_change_alone']:.2f} /"
            f" {result['server_cpu_ms_per_change_watched']:.2f} |",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="changes/s while watched")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4, help="processes the watchers share")
    parser.add_argument("--writers", type=int, default=16, help="writes in flight")
    parser.add_argument("--runs", type=int, default=500, help="runs the writers cycle over")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "write":
        parser = argparse.ArgumentParser()
        parser.add_argument("url")
        parser.add_argument("--seconds", type=float)
        parser.add_argument("--rate", type=float)
        parser.add_argument("--writers", type=int)
        parser.add_argument("--run-ids")
        a = parser.parse_args(sys.argv[2:])
        runs = a.run_ids.split(",")
        print(json.dumps(asyncio.run(write(a.url, runs, a.seconds, a.rate, a.writers))))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "watchers":
        parser = argparse.ArgumentParser()
        parser.add_argument("url")
        parser.add_argument("--count", type=int)
        a = parser.parse_args(sys.argv[2:])
        asyncio.run(watch(a.url, a.count))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.watch")
    add_arguments(parser)
    result = measure(parser.parse_args())
    print(json.dumps(result, indent=2))
    print(summary(result))


if __name__ == "__main__":
    main()
