"""The `sdk` section: `bench/sdk_workload.py` (Prefect's workflow API; the SDK picked by its
imports) run under Prefect 3.9.1 and under flowrpc, each in its own virtual environment, in two
modes: against its own server (section `sdk`) and with no API URL at all, Prefect's ephemeral
mode and flowrpc's embedded server (section `sdk-local`). Afterwards the runs and states are
counted in each database: every run the workload made must be there, with its states.

Prefect's server runs here with its task-run recorder: Prefect 3 records task runs from the
events its engine emits, and only that service writes them, so `--no-services` (the `api`
section's setting) would record no task run at all. Its other services are off, as are
flowrpc's background services.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import servers

WORKLOAD = servers.ROOT / "bench" / "sdk_workload.py"
MARK = "SDKBENCH "
# Prefect's services other than the task-run recorder (see the docstring).
PREFECT_SERVICES_OFF = [
    "CANCELLATION_CLEANUP",
    "EVENT_PERSISTER",
    "FOREMAN",
    "LATE_RUNS",
    "SCHEDULER",
    "PAUSE_EXPIRATIONS",
    "REPOSSESSOR",
    "CLEANUP_RECONCILER",
    "TRIGGERS",
]
RECORD_WAIT_S = 120  # how long to wait for Prefect's recorder to catch up


def prefect_services_env() -> dict[str, str]:
    return {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in PREFECT_SERVICES_OFF}


def sdk_section(args: argparse.Namespace, targets: list[str]) -> list[dict]:
    """Both modes for each target; then, when asked, flowrpc's large map."""
    results = []
    for target in targets:
        for mode in args.sdk_modes:
            with tempfile.TemporaryDirectory(prefix=f"bench-sdk-{target}-") as home:
                results += run_mode(target, mode, Path(home), args)
    if "flowrpc" in targets and "local" in args.sdk_modes:
        results += embedded_start()
    if args.sdk_large_map:
        with tempfile.TemporaryDirectory(prefix="bench-sdk-map-") as home:
            large = run_mode(
                "flowrpc", "server", Path(home), args, phases=["mapped-tasks"], n=args.sdk_large_map
            )
        for result in large:
            result["section"] = "sdk-large"
        mapped = large[0]
        client_mb, server_mb = mapped.get("client_peak_rss_mb"), mapped.get("peak_rss_mb")
        print(
            f"  sdk-large map over {args.sdk_large_map:,}: client peak RSS {client_mb} MB,"
            f" server peak RSS {server_mb} MB",
            flush=True,
        )
        results += large
    _print_ratios(results)
    return results


def run_mode(
    target: str,
    mode: str,
    home: Path,
    args: argparse.Namespace,
    phases: list[str] | None = None,
    n: int | None = None,
) -> list[dict]:
    """The workload under one SDK in one mode; returns one result per phase plus its records."""
    section = "sdk" if mode == "server" else "sdk-local"
    env, process, database = _environment(target, mode, home)
    command = [
        str(servers.PREFECT_PYTHON if target == "prefect" else servers.FLOWRPC_PYTHON),
        str(WORKLOAD),
        "--sdk",
        target,
        "--n",
        str(n or args.sdk_tasks),
        "--calls",
        str(args.sdk_calls),
    ]
    if phases:
        command += ["--phases", ",".join(phases)]
    try:
        lines, expected, stderr = _follow(command, env, process)
        records = _records(database, expected)
    finally:
        if process:
            process.stop()
    results = []
    for line in lines:
        result = {
            **line,
            "section": section,
            "target": target,
            "mode": mode,
            "concurrency": 1,
            "repeats": 1,
        }
        results.append(result)
        cpu = [
            f"{who} CPU {line[key]:.1f} s"
            for who, key in (("client", "client_cpu_s"), ("server", "cpu_s"))
            if line.get(key) is not None
        ]
        print(
            f"  {section} {target} {line['phase']}: {_rate(line)}"
            + (f", p50 {line['p50_ms']:.2f} ms" if line.get("p50_ms") is not None else "")
            + "".join(f", {part}" for part in cpu),
            flush=True,
        )
    locked = stderr.count("database is locked")
    records.update(
        database_is_locked=locked,
        http_503=stderr.count("503 Service Unavailable"),
        failed_phases=[line["phase"] for line in lines if "error" in line],
        stderr_tail=stderr[-2000:] if locked else "",
    )
    results.append({"section": section, "target": target, "phase": "records", **records})
    print(f"  {section} {target} records: {_describe(records)}", flush=True)
    return results


def _environment(
    target: str, mode: str, home: Path
) -> tuple[dict[str, str], servers.Process | None, Path]:
    """The workload's environment, the server it talks to (None: local mode) and its database."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FLOWRPC_"))}
    if target == "prefect":
        client_home = home / "client"
        env = {
            **base,
            "PREFECT_HOME": str(client_home),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Its default, 20 s, is too short on a busy two-core machine (the start took 25 s).
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        }
        if mode == "local":
            return env, None, client_home / "prefect.db"
        process = servers.start_prefect(home, services=True, extra_env=prefect_services_env())
        return {**env, "PREFECT_API_URL": process.address}, process, home / "prefect.db"
    env = {**base, "FLOWRPC_HOME": str(home / "client")}
    if mode == "local":
        return env, None, home / "client" / "flowrpc.db"
    process = servers.start_flowrpc(home)
    return {**env, "FLOWRPC_API_URL": process.address}, process, home / "flowrpc.db"


def _follow(
    command: list[str], env: dict[str, str], process: servers.Process | None
) -> tuple[list[dict], dict, str]:
    """Runs the workload, reading its phase lines as they come, so each phase is charged the
    server CPU and peak RSS of its own span."""
    with tempfile.TemporaryFile("w+") as errors:
        workload = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        lines, expected = [], {}
        cpu = process.cpu_seconds() if process else 0.0
        if process:
            process.reset_peak_rss()
        for raw in workload.stdout:
            if not raw.startswith(MARK):
                continue
            line = json.loads(raw[len(MARK) :])
            if line["phase"] == "expected":
                expected = line
                continue
            if "error" in line:
                print(f"  {line['phase']} failed: {line['error']}", flush=True)
                line.update(ops_per_s=None, p50_ms=None, p99_ms=None, client_peak_rss_mb=None)
            if process:
                now = process.cpu_seconds()
                line.update(cpu_s=now - cpu, peak_rss_mb=process.peak_rss_mb())
                cpu = now
                process.reset_peak_rss()
            else:  # the server is in (flowrpc) or beside (Prefect) the workload's process
                line.update(cpu_s=None, peak_rss_mb=line["client_peak_rss_mb"])
            lines.append(line)
        code = workload.wait()
        errors.seek(0)
        stderr = errors.read()
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}):\n{stderr[-4000:]}")
    return lines, expected, stderr


def _records(database: Path, expected: dict) -> dict[str, Any]:
    """Runs and states in the database, once they stop changing (Prefect records task runs
    from events, after the fact): how many, and how long after the workload they settled."""
    ended, last, settled_at = time.monotonic(), None, time.monotonic()
    still_changing = True
    while time.monotonic() - ended < RECORD_WAIT_S:
        counts = _count(database)
        complete = counts["flow_runs"] >= expected.get("flow_runs", 0) and counts[
            "task_runs"
        ] >= expected.get("task_runs", 0)
        if counts != last:
            last, settled_at = counts, time.monotonic()
        elif complete or time.monotonic() - settled_at > 10:
            still_changing = False
            break
        time.sleep(0.5)
    return {
        **last,
        "expected_flow_runs": expected.get("flow_runs"),
        "expected_task_runs": expected.get("task_runs"),
        "settled_after_s": round(settled_at - ended, 1),
        "still_changing": still_changing,  # when the wait ended
    }


def _count(database: Path) -> dict[str, int]:
    # Both servers name these tables alike (flowrpc keeps Prefect's schema names).
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=60)
    try:

        def one(sql: str) -> int:
            return conn.execute(sql).fetchone()[0]

        return {
            "flow_runs": one("SELECT count(*) FROM flow_run"),
            "flow_runs_completed": one(
                "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'"
            ),
            "flow_run_states": one("SELECT count(*) FROM flow_run_state"),
            "task_runs": one("SELECT count(*) FROM task_run"),
            "task_runs_completed": one(
                "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'"
            ),
            "task_run_states": one("SELECT count(*) FROM task_run_state"),
        }
    finally:
        conn.close()


def embedded_start() -> list[dict]:
    """What the first flow of a script pays for flowrpc's embedded server: importing the server
    and starting it, in a fresh process. Once on a new FLOWRPC_HOME (the database is created and
    migrated), then three times on that home (the usual case; the median is kept)."""
    probe = (
        "import json, time\n"
        "started = time.perf_counter()\n"
        "from flowrpc.engine import embedded\n"
        "imported = time.perf_counter()\n"
        "embedded.api_url()\n"
        "ready = time.perf_counter()\n"
        "print(json.dumps({'import_ms': 1000 * (imported - started),"
        " 'start_ms': 1000 * (ready - imported)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWRPC_")}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-sdk-start-") as home:
        runs = [
            json.loads(
                subprocess.run(
                    [str(servers.FLOWRPC_PYTHON), "-c", probe],
                    env={**env, "FLOWRPC_HOME": home},
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(4)
        ]
    for phase, chosen, repeats in (
        ("embedded-start (new home)", runs[0], 1),
        ("embedded-start", sorted(runs[1:], key=lambda r: r["start_ms"])[1], 3),
    ):
        print(
            f"  {phase}: {chosen['start_ms']:.0f} ms (after importing flowrpc,"
            f" {chosen['import_ms']:.0f} ms)",
            flush=True,
        )
        results.append(
            {
                "section": "sdk-local",
                "target": "flowrpc",
                "phase": phase,
                "concurrency": 1,
                "ops_per_s": None,
                "p50_ms": chosen["start_ms"],
                "p99_ms": chosen["start_ms"],
                "cpu_s": None,
                "peak_rss_mb": None,
                "import_ms": chosen["import_ms"],
                "repeats": repeats,
            }
        )
    return results


def _rate(line: dict) -> str:
    return "-" if line.get("ops_per_s") is None else f"{line['ops_per_s']:,.1f}/s"


def _describe(records: dict) -> str:
    return (
        f"{records['flow_runs']:,} flow runs ({records['flow_runs_completed']:,} completed) of"
        f" {records['expected_flow_runs']}, {records['task_runs']:,} task runs"
        f" ({records['task_runs_completed']:,} completed) of {records['expected_task_runs']},"
        f" {records['flow_run_states']:,} + {records['task_run_states']:,} states,"
        f" {_settled(records)};"
        f" 'database is locked' {records['database_is_locked']} times,"
        f" HTTP 503 {records['http_503']} times; failed phases: {records['failed_phases'] or 0}"
    )


def _settled(records: dict) -> str:
    if records.get("still_changing"):
        return f"still changing {RECORD_WAIT_S} s after the workload"
    return f"settled {records['settled_after_s']} s after the workload"


def _print_ratios(results: list[dict]) -> None:
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for r in results:
        if r.get("ops_per_s") is not None:
            by_key.setdefault((r["section"], r["phase"]), {})[r["target"]] = r
    for (section, phase), row in by_key.items():
        if "prefect" in row and "flowrpc" in row:
            ratio = row["flowrpc"]["ops_per_s"] / row["prefect"]["ops_per_s"]
            for r in (row["flowrpc"], row["prefect"]):
                r["ratio"] = ratio
            print(f"  {section} {phase}: flowrpc/Prefect = {ratio:,.1f}x", flush=True)
