"""The `watch` section: WatchFlowRuns delivery latency and what watchers cost writers.

On one flowrpc server (SQLite, background services off), writers force state changes on `--runs`
runs from `--writers` concurrent calls: BulkSetFlowRunState calls of `--bulk` runs each (one
transaction a call), or with `--bulk 0` one SetFlowRunState call per change. Four phases of
`--seconds` each:
1. the write rate with no watchers, writing as fast as they go;
2. `--rate` changes/s with no watchers (each write call's latency, the server's CPU);
3. the same with `--watchers` watchers (raw stubs, no filter, no snapshot) in `--processes`
   processes: each watcher records, for every change it receives, the time from the state's
   timestamp (minted by the server before the write, so this bounds commit-to-watcher from
   above, by the write call's own time) to its arrival; it decodes only that timestamp;
4. the write rate again, as fast as they go, with the watchers connected.
CPU comes from /proc: the server's and the watchers' (per process), the writer's (its own,
start-up excluded), and what the rest of the machine took meanwhile.

    python -m bench.watch [--seconds 10] [--rate 1000] [--watchers 100] [--processes 4]
                          [--bulk 50]

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


def _busy_seconds() -> float:
    """CPU time the whole machine has spent (every process, every core) since boot."""
    user, nice, system, idle, iowait, *rest = Path("/proc/stat").read_text().split()[1:9]
    return (int(user) + int(nice) + int(system) + sum(map(int, rest))) / servers.TICKS


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def write(
    url: str, runs: list[str], seconds: float, rate: float, tasks: int, bulk: int
) -> dict:
    """Forced state changes, `rate` per second in all (0: as fast as they go): `bulk` runs per
    BulkSetFlowRunState call (each call one transaction), or with `bulk` 0 one SetFlowRunState
    call per change."""
    import grpc

    from flowrpc.v1 import filter_pb2 as f
    from flowrpc.v1 import flow_run_service_pb2 as fr
    from flowrpc.v1 import flow_run_service_pb2_grpc, state_pb2

    per_call = bulk or 1
    done = 0
    call_ms: list[float] = []
    async with grpc.aio.insecure_channel(url) as channel:
        stub = flow_run_service_pb2_grpc.FlowRunServiceStub(channel)

        async def change(first: int) -> int:
            """Changes `per_call` runs from the `first`-th change on; how many changed."""
            state = state_pb2.State(type=STATES[(first // len(runs)) % 2])
            if not bulk:
                request = fr.SetFlowRunStateRequest(
                    flow_run_id=runs[first % len(runs)], state=state, force=True
                )
                await stub.SetFlowRunState(request)
                return 1
            ids = [runs[(first + n) % len(runs)] for n in range(bulk)]
            selected = f.FlowRunFilter(id=f.FlowRunFilterId(any_of=f.StringList(values=ids)))
            request = fr.BulkSetFlowRunStateRequest(
                filter=f.FlowRunFilterSet(flow_runs=selected), state=state, force=True
            )
            return sum([len(m.results) async for m in stub.BulkSetFlowRunState(request)])

        started, cpu, busy = time.perf_counter(), time.process_time(), _busy_seconds()

        async def writer(number: int) -> None:
            nonlocal done
            call = number
            while (now := time.perf_counter() - started) < seconds:
                if rate:
                    due = call * per_call / rate
                    if due > now:
                        await asyncio.sleep(due - now)
                sent = time.perf_counter()
                changed = await change(call * per_call)
                call_ms.append((time.perf_counter() - sent) * 1000)
                done += changed  # not `done += await ...`: that adds to the value before it
                call += tasks

        await asyncio.gather(*(writer(n) for n in range(tasks)))
        elapsed = time.perf_counter() - started
        cpu, busy = time.process_time() - cpu, _busy_seconds() - busy
    return {
        "changes": done,
        "seconds": elapsed,
        "cpu_seconds": cpu,  # this process's, its start excluded
        "machine_busy_seconds": busy,  # every process's, meanwhile
        "changes_per_s": done / elapsed,
        "call_p50_ms": _percentile(call_ms, 0.5),
        "call_p99_ms": _percentile(call_ms, 0.99),
    }


def _stamps_only() -> Any:
    """A message class that reads a WatchFlowRunsResponse as a consumer that only needs each
    change's state timestamp would: the same field numbers, every other field left undecoded
    (kept as unknown bytes, which upb copies without parsing)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="bench_watch_stamps.proto",
        package="bench",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    shapes = {  # message: (field, number, type, label), as in flow_run_service.proto
        "State": ("timestamp", 4, ".google.protobuf.Timestamp", optional),
        "Change": ("state", 2, ".bench.State", optional),  # FlowRunChange
        "Changes": ("changes", 1, ".bench.Change", repeated),  # WatchChanges
        "Marker": None,  # WatchMarker
    }
    for name, shape in shapes.items():
        described = file.message_type.add(name=name)
        if shape:
            field, number, type_name, label = shape
            described.field.add(
                name=field, number=number, type=message, type_name=type_name, label=label
            )
    response = file.message_type.add(name="Response")  # WatchFlowRunsResponse
    response.field.add(name="marker", number=2, type=message, type_name=".bench.Marker")
    response.field.add(name="changes", number=3, type=message, type_name=".bench.Changes")
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Response"))


async def watch(url: str, count: int) -> None:
    """`count` watchers; prints "ready" once every marker came, then, when stdin closes, the
    latencies (ms) of every change received and the number of change messages, as JSON. Each
    watcher decodes only what it needs: the marker, and each change's state timestamp."""
    import grpc

    from flowrpc.v1 import flow_run_service_pb2 as fr

    response = _stamps_only()
    latencies: list[float] = []
    record = latencies.append
    messages = ready = 0
    async with grpc.aio.insecure_channel(url) as channel:
        method = channel.unary_stream(
            "/flowrpc.v1.FlowRunService/WatchFlowRuns",
            request_serializer=fr.WatchFlowRunsRequest.SerializeToString,
            response_deserializer=response.FromString,
        )
        all_ready = asyncio.Event()

        async def watcher() -> None:
            nonlocal ready, messages
            async for message in method(fr.WatchFlowRunsRequest(skip_snapshot=True)):
                if message.HasField("marker"):
                    ready += 1
                    if ready == count:
                        all_ready.set()
                    continue
                arrived = time.time()
                messages += 1
                for change in message.changes.changes:
                    stamp = change.state.timestamp
                    record((arrived - stamp.seconds - stamp.nanos / 1e9) * 1000)

        tasks = [asyncio.create_task(watcher()) for _ in range(count)]
        await all_ready.wait()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"latencies": latencies, "messages": messages}), flush=True)


# ---- the driver ----


def _python(*args: str, stdin: Any = None) -> subprocess.Popen[str]:
    command = [str(servers.FLOWRPC_PYTHON), "-m", "bench.watch", *args]
    return subprocess.Popen(command, cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE, text=True)


def _cpu_seconds(child: subprocess.Popen[str]) -> float:
    return servers.Process(child, "").cpu_seconds()


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
        "--bulk",
        str(args.bulk),
        "--run-ids",
        ",".join(runs),
    )
    out, _ = child.communicate()
    result = json.loads(out.strip().splitlines()[-1])
    changes, server_cpu = result["changes"], server.cpu_seconds() - cpu
    result["server_cpu_ms_per_change"] = server_cpu * 1000 / changes
    result["writer_cpu_ms_per_change"] = result["cpu_seconds"] * 1000 / changes
    # What the server, the writer and the watchers did not take (the watchers' share is taken
    # off by the caller): other users of the machine.
    result["others_cpu_s"] = result["machine_busy_seconds"] - server_cpu - result["cpu_seconds"]
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
        self.cpu = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(child) for child in self.children)

    def stop(self) -> dict:
        """Every latency (ms), the change messages received, and the CPU seconds the watcher
        processes spent since they were all ready."""
        cpu = self.cpu_seconds() - self.cpu
        latencies: list[float] = []
        messages = 0
        for child in self.children:
            out, _ = child.communicate("")
            received = json.loads(out.strip().splitlines()[-1])
            latencies += received["latencies"]
            messages += received["messages"]
        return {"latencies": latencies, "messages": messages, "cpu_seconds": cpu}


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as home:
        server = servers.start_flowrpc(Path(home))
        try:
            runs = asyncio.run(_create_runs(server.address, args.runs))
            load_before = _load()
            alone = _write_phase(server, runs, args, 0)
            paced_alone = _write_phase(server, runs, args, args.rate)
            watchers = _Watchers(server.address, args)
            paced = _write_phase(server, runs, args, args.rate)
            received = watchers.stop()
            watchers = _Watchers(server.address, args)
            watched = _write_phase(server, runs, args, 0)
            watchers.stop()
            load_after = _load()
        finally:
            server.stop()
    latencies, deliveries = received["latencies"], len(received["latencies"])
    return {
        "section": "watch",
        "writes": f"bulk, {args.bulk} runs a call" if args.bulk else "unary",
        "watchers": args.watchers,
        "target_rate": args.rate,
        "load_average_before_after": [load_before, load_after],
        "paced_changes_per_s": paced["changes_per_s"],
        "deliveries": deliveries,
        "expected_deliveries": paced["changes"] * args.watchers,
        "latency_p50_ms": _percentile(latencies, 0.5),
        "latency_p99_ms": _percentile(latencies, 0.99),
        "latency_mean_ms": statistics.fmean(latencies) if latencies else None,
        "watch_messages": received["messages"],
        # Each write call, at `rate` changes/s: p50 and p99 ms.
        "write_call_ms_paced_alone": [paced_alone["call_p50_ms"], paced_alone["call_p99_ms"]],
        "write_call_ms_paced_watched": [paced["call_p50_ms"], paced["call_p99_ms"]],
        "writes_per_s_alone": alone["changes_per_s"],
        "writes_per_s_watched": watched["changes_per_s"],
        "write_slowdown": 1 - watched["changes_per_s"] / alone["changes_per_s"],
        "server_cpu_ms_per_change_alone": alone["server_cpu_ms_per_change"],
        "server_cpu_ms_per_change_paced_alone": paced_alone["server_cpu_ms_per_change"],
        "server_cpu_ms_per_change_paced": paced["server_cpu_ms_per_change"],
        "server_cpu_ms_per_change_watched": watched["server_cpu_ms_per_change"],
        "writer_cpu_ms_per_change_paced": paced["writer_cpu_ms_per_change"],
        "watcher_cpu_us_per_delivery": received["cpu_seconds"] * 1e6 / max(1, deliveries),
        "watcher_cpu_us_per_message": received["cpu_seconds"] * 1e6 / max(1, received["messages"]),
        "watcher_cpu_cores_paced": received["cpu_seconds"] / paced["seconds"],
        # Cores the rest of the machine (other users' work) took meanwhile: of 2, here.
        "other_cpu_cores_paced": (paced["others_cpu_s"] - received["cpu_seconds"])
        / paced["seconds"],
        "other_cpu_cores_paced_alone": paced_alone["others_cpu_s"] / paced_alone["seconds"],
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
    r = result
    alone, watched = r["write_call_ms_paced_alone"], r["write_call_ms_paced_watched"]
    return "\n".join(
        [
            "| writes | watchers | changes/s (target) | delivered | latency p50 / p99 ms |"
            " write call p50 / p99 ms, paced: alone / watched | writes/s alone / watched |"
            " server CPU ms per change, paced: alone / watched | watchers' CPU (cores) |"
            " others' CPU (cores) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {r['writes']} | {r['watchers']} | {r['paced_changes_per_s']:,.0f}"
            f" ({r['target_rate']:,.0f}) |"
            f" {r['deliveries']:,} of {r['expected_deliveries']:,} |"
            f" {r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f} |"
            f" {alone[0]:.1f} / {alone[1]:.1f}; {watched[0]:.1f} / {watched[1]:.1f} |"
            f" {r['writes_per_s_alone']:,.0f} / {r['writes_per_s_watched']:,.0f} |"
            f" {r['server_cpu_ms_per_change_paced_alone']:.2f} /"
            f" {r['server_cpu_ms_per_change_paced']:.2f} |"
            f" {r['watcher_cpu_cores_paced']:.2f} ({r['watcher_cpu_us_per_message']:.0f} µs a"
            f" message) | {r['other_cpu_cores_paced']:.2f} |",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="changes/s while watched")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4, help="processes the watchers share")
    parser.add_argument("--writers", type=int, default=16, help="write calls in flight")
    parser.add_argument(
        "--bulk",
        type=int,
        default=50,
        help="runs per BulkSetFlowRunState call; 0: one SetFlowRunState call per change",
    )
    parser.add_argument("--runs", type=int, default=500, help="runs the writers cycle over")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "write":
        parser = argparse.ArgumentParser()
        parser.add_argument("url")
        parser.add_argument("--seconds", type=float)
        parser.add_argument("--rate", type=float)
        parser.add_argument("--writers", type=int)
        parser.add_argument("--bulk", type=int)
        parser.add_argument("--run-ids")
        a = parser.parse_args(sys.argv[2:])
        runs = a.run_ids.split(",")
        result = asyncio.run(write(a.url, runs, a.seconds, a.rate, a.writers, a.bulk))
        print(json.dumps(result), flush=True)
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
