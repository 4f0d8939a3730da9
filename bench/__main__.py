"""`make bench`: the same workload against Prefect's server and flowrpc on this machine, one after
the other in one invocation, plus a bare gRPC echo ceiling; prints one table and writes JSON.

    python -m bench [--runs 5000] [--calls 200] [--repeat 3] [--scale 1000000] [--bulk 100000]
                    [--bulk-create 100000] [--sections api,scale,postgres,bulk-create,watch,sdk]
                    [--skip-prefect]
                    [--watch-seconds 10] [--watch-rate 1000] [--watch-watchers 100]
                    [--watch-processes 4] [--watch-bulk 50]
                    [--sdk-tasks 1000] [--sdk-calls 20] [--sdk-modes server,local]
                    [--sdk-large-map 0] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import preload, sdk, servers
from bench import watch as watch_section
from bench.report import table

ROOT = servers.ROOT
WORKLOAD = ROOT / "bench" / "workload.py"
PHASES = ["create", "transition", "read", "count", "history", "delete"]
SCALE_PHASES = ["read", "count", "history", "iter"]
POSTGRES_PHASES = ["create", "transition", "read", "count"]


def run_workload(
    target: str,
    process: servers.Process,
    phase: str,
    concurrency: int,
    args: argparse.Namespace,
    n: int | None = None,
    calls: int | None = None,
    extra: tuple[str, ...] = (),
) -> dict:
    python = servers.PREFECT_PYTHON if target == "prefect" else servers.FLOWRPC_PYTHON
    command = [
        str(python),
        str(WORKLOAD),
        "--target",
        target,
        "--phase",
        phase,
        "--concurrency",
        str(concurrency),
        "--n",
        str(n or args.runs),
        "--calls",
        str(calls or args.calls),
        *extra,
    ]
    env = None
    if target == "prefect":
        port = int(process.address.rsplit(":", 1)[1].split("/")[0])
        env = servers.prefect_env(Path(tempfile.gettempdir()), port)
    else:
        command += ["--url", process.address]
    cpu = process.cpu_seconds()
    process.reset_peak_rss()
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result.update(cpu_s=process.cpu_seconds() - cpu, peak_rss_mb=process.peak_rss_mb())
    return result


def median_of(runs: list[dict]) -> dict:
    """The run with the median throughput, annotated with how many runs it was chosen from."""
    chosen = sorted(runs, key=lambda r: r["ops_per_s"])[len(runs) // 2]
    return {**chosen, "repeats": len(runs)}


def measure(
    target: str,
    process: servers.Process,
    phases: list[str],
    args: argparse.Namespace,
    label: str,
    **sizes: Any,
) -> list[dict]:
    results = []
    for concurrency in args.concurrency:
        for phase in phases:
            runs = [
                run_workload(target, process, phase, concurrency, args, **sizes)
                for _ in range(args.repeat)
            ]
            result = {**median_of(runs), "target": target, "section": label}
            print(
                f"  {label} {target} {phase} c={concurrency}: {result['ops_per_s']:.1f} ops/s",
                flush=True,
            )
            results.append(result)
    return results


def echo_ceiling(args: argparse.Namespace) -> list[dict]:
    port = servers.free_port()
    server = subprocess.Popen(
        [str(servers.FLOWRPC_PYTHON), str(ROOT / "bench" / "echo.py"), "serve", str(port)]
    )
    time.sleep(1.5)
    results = []
    try:
        for concurrency in args.concurrency:
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run(
                    [
                        str(servers.FLOWRPC_PYTHON),
                        str(ROOT / "bench" / "echo.py"),
                        "call",
                        f"127.0.0.1:{port}",
                        "--calls",
                        str(args.runs),
                        "--concurrency",
                        str(concurrency),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                runs.append(json.loads(out))
            results.append({**median_of(runs), "target": "echo", "section": "ceiling"})
    finally:
        server.terminate()
        server.wait()
    return results


def start(target: str, home: Path) -> servers.Process:
    return servers.start_prefect(home) if target == "prefect" else servers.start_flowrpc(home)


def ids_for_preload(target: str, process: servers.Process, args: argparse.Namespace) -> None:
    """Creates the bench flow and deployment through the API (the workload's own set-up)."""
    run_workload(target, process, "count", 1, args, calls=1)


def scale(target: str, home: Path, args: argparse.Namespace) -> list[dict]:
    """Preloads args.scale runs, then reads, counts, histories and iterates over all of them; then
    the bulk cancel."""
    process = start(target, home)
    ids_for_preload(target, process, args)
    process.stop()
    database = home / ("prefect.db" if target == "prefect" else "flowrpc.db")
    flow_id, deployment_id = _bench_ids(database)
    started = time.perf_counter()
    loader = preload.preload_prefect if target == "prefect" else preload.preload_flowrpc
    loader(str(database), args.scale, flow_id, deployment_id)
    print(
        f"  preloaded {args.scale} runs into {target} in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    process = start(target, home)
    try:
        results = measure(target, process, SCALE_PHASES, args, "scale", calls=args.scale_calls)
        bulk_runs = args.bulk if target == "flowrpc" else args.prefect_bulk
        for concurrency in args.concurrency[:1]:
            result = run_workload(target, process, "bulk", concurrency, args, n=bulk_runs)
            result.update(
                target=target, section="bulk", runs_per_s=bulk_runs / result["seconds"], repeats=1
            )
            print(f"  bulk {target}: {result['runs_per_s']:.0f} runs/s", flush=True)
            results.append(result)
    finally:
        process.stop()
    return results


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database at `url`, dropped afterwards; yields the URL
    whose connections use it."""
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(url, poolclass=sa.NullPool)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield (
            sa.make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def postgres(args: argparse.Namespace) -> list[dict]:
    """flowrpc on PostgreSQL with one replica, then two (clients balance round-robin): the
    scaling factor of the scale-out path. Each run uses a fresh schema."""
    results = []
    for replicas in (1, 2):
        with postgres_schema(args.postgres_url) as url, tempfile.TemporaryDirectory() as home:
            group = servers.Replicas([servers.start_flowrpc(Path(home), url)])
            group.members += [servers.start_flowrpc(Path(home), url) for _ in range(replicas - 1)]
            try:
                results += measure("flowrpc", group, POSTGRES_PHASES, args, f"pg-{replicas}")
            finally:
                group.stop()
    return results


def bulk_create(args: argparse.Namespace) -> list[dict]:
    """flowrpc creating --bulk-create runs in one create_flow_runs call on a fresh database:
    SQLite, then PostgreSQL (unless --postgres-url is ''), results in --bulk-create-view."""
    databases = [("sqlite", contextlib.nullcontext(None))]
    if args.postgres_url:
        databases.append(("postgresql", postgres_schema(args.postgres_url)))
    results = []
    for name, database in databases:
        with database as url, tempfile.TemporaryDirectory(prefix="bench-bulk-create-") as home:
            process = servers.start_flowrpc(Path(home), url)
            try:
                runs = []
                for _ in range(args.repeat):
                    view = ("--view", args.bulk_create_view)
                    result = run_workload(
                        "flowrpc", process, "bulk-create", 1, args, n=args.bulk_create, extra=view
                    )
                    result["runs_per_s"] = args.bulk_create / result["seconds"]
                    result["view"] = args.bulk_create_view
                    print(
                        f"  bulk-create {name} ({args.bulk_create_view} view): "
                        f"{result['runs_per_s']:.0f} runs/s",
                        flush=True,
                    )
                    runs.append(result)
                chosen = sorted(runs, key=lambda r: r["runs_per_s"])[len(runs) // 2]
                results.append(
                    {**chosen, "repeats": len(runs), "target": "flowrpc", "section": f"bulk-{name}"}
                )
            finally:
                process.stop()
    return results


def _bench_ids(database: Path) -> tuple[str, str]:
    import sqlite3

    conn = sqlite3.connect(database)
    flow_id, deployment_id = conn.execute(
        "SELECT flow.id, deployment.id FROM flow JOIN deployment ON deployment.flow_id = flow.id"
        " WHERE flow.name = 'bench'"
    ).fetchone()
    conn.close()
    return flow_id, deployment_id


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--runs", type=int, default=5000, help="runs per create/transition/delete")
    parser.add_argument("--calls", type=int, default=200, help="calls per read/count/history")
    parser.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16]
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the median is kept")
    parser.add_argument("--scale", type=int, default=1_000_000, help="runs preloaded (0: skip)")
    parser.add_argument("--scale-calls", type=int, default=20)
    parser.add_argument(
        "--bulk", type=int, default=100_000, help="runs flowrpc cancels in one call"
    )
    parser.add_argument(
        "--bulk-create", type=int, default=100_000, help="runs flowrpc creates in one call"
    )
    parser.add_argument(
        "--bulk-create-view",
        choices=["basic", "full"],
        default="basic",
        help="the results bulk-create asks for: basic (ids and states) or full (whole runs)",
    )
    parser.add_argument(
        "--prefect-bulk", type=int, default=2_000, help="runs Prefect cancels, 50 a call"
    )
    parser.add_argument(
        "--sections",
        type=lambda s: s.split(","),
        default=["api", "scale", "postgres", "bulk-create", "watch", "sdk"],
        help="which parts to run: api (the phases), scale (preload, scale phases, bulk), "
        "postgres, bulk-create (flowrpc only: one create_flow_runs call, SQLite and PostgreSQL), "
        "watch (WatchFlowRuns latency and its cost to writers; flowrpc only), "
        "sdk (the workflow SDKs: @flow and @task)",
    )
    parser.add_argument("--sdk-tasks", type=int, default=1000, help="tasks per sdk task phase")
    parser.add_argument(
        "--sdk-calls", type=int, default=20, help="calls per sdk flow, subflow, cached, retry phase"
    )
    parser.add_argument(
        "--sdk-modes",
        type=lambda s: s.split(","),
        default=["server", "local"],
        help="sdk: against each SDK's server, and/or local (Prefect ephemeral, flowrpc embedded)",
    )
    parser.add_argument(
        "--sdk-targets",
        type=lambda s: s.split(","),
        default=["prefect", "flowrpc"],
        help="which SDKs the sdk section runs",
    )
    parser.add_argument(
        "--sdk-large-map",
        type=int,
        default=0,
        help="sdk: also map a task over this many items under flowrpc (e.g. 100000), "
        "reporting client and server peak RSS; 0 skips it",
    )
    parser.add_argument("--watch-seconds", type=float, default=10.0, help="watch: per phase")
    parser.add_argument("--watch-rate", type=float, default=1000.0, help="watch: changes/s")
    parser.add_argument("--watch-watchers", type=int, default=100)
    parser.add_argument("--watch-processes", type=int, default=4, help="watch: client processes")
    parser.add_argument(
        "--watch-bulk", type=int, default=50, help="watch: runs per bulk state call (0: unary)"
    )
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="flowrpc on PostgreSQL with 1 and 2 replicas ('' to skip)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()

    targets = ["flowrpc"] if args.skip_prefect else ["prefect", "flowrpc"]
    if not args.skip_prefect:
        servers.ensure_prefect()
    results = echo_ceiling(args) if set(args.sections) - {"sdk"} else []
    for target in targets:
        if "api" in args.sections:
            with tempfile.TemporaryDirectory(prefix=f"bench-{target}-") as home:
                process = start(target, Path(home))
                try:
                    results += measure(target, process, PHASES, args, "api")
                finally:
                    process.stop()
        if args.scale and "scale" in args.sections:
            with tempfile.TemporaryDirectory(prefix=f"bench-{target}-scale-") as home:
                results += scale(target, Path(home), args)
    if args.postgres_url and "postgres" in args.sections:
        results += postgres(args)
    if "bulk-create" in args.sections:
        results += bulk_create(args)
    watched = None
    if "watch" in args.sections:
        watched = watch_section.measure(
            argparse.Namespace(
                seconds=args.watch_seconds,
                rate=args.watch_rate,
                watchers=args.watch_watchers,
                processes=args.watch_processes,
                writers=16,
                bulk=args.watch_bulk,
                runs=500,
            )
        )
    if "sdk" in args.sections:
        results += sdk.sdk_section(args, [t for t in args.sdk_targets if t in targets])
    report = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "settings": {k: str(v) for k, v in vars(args).items()},
        "preload": preload.__doc__.strip().splitlines()[0],
        "results": results,
        "watch": watched,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(results))
    if watched:
        print("\n" + watch_section.summary(watched))
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
