"""The benchmark table: one row per (section, phase, concurrency), Prefect and flowrpc side by
side, with flowrpc/Prefect ratios and flowrpc's distance from the bare echo ceiling."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: list[dict]) -> str:
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in results:
        if r["phase"] == "records":  # the sdk section's counts: records_table
            continue
        by_key.setdefault((r["section"], r["phase"], r["concurrency"]), {})[r["target"]] = r
    ceiling = {r["concurrency"]: r["ops_per_s"] for r in results if r["target"] == "echo"}
    header = (
        "| section | phase | c | Prefect ops/s | flowrpc ops/s | ratio | flowrpc/echo |"
        " Prefect p50/p99 ms | flowrpc p50/p99 ms | Prefect CPU s / RSS MB |"
        " flowrpc CPU s / RSS MB |"
    )
    lines = [header, "|" + "---|" * 11]
    for (section, phase, c), row in by_key.items():
        p, f = row.get("prefect"), row.get("flowrpc")
        if section == "ceiling":
            e = row["echo"]
            lines.append(
                f"| ceiling | echo | {c} | | {_fmt(e['ops_per_s'])} | | 1.0 |"
                f" | {_fmt(e['p50_ms'], 2)}/{_fmt(e['p99_ms'], 2)} | | |"
            )
            continue
        bulk = section.startswith("bulk")  # bulk, bulk-sqlite, bulk-postgresql: runs per second
        rate = "runs_per_s" if bulk else "ops_per_s"
        ratio = f[rate] / p[rate] if (p and f and p.get(rate) and f.get(rate)) else None
        beside_echo = not bulk and not section.startswith("sdk")
        near = f[rate] / ceiling[c] if (f and c in ceiling and beside_echo) else None
        lines.append(
            f"| {section} | {phase}{' (runs/s)' if bulk else ''} | {c} |"
            f" {_fmt(p and p[rate])} | {_fmt(f and f[rate])} | {_fmt(ratio)}x |"
            f" {_fmt(near, 2)} |"
            f" {_fmt(p and p['p50_ms'], 2)}/{_fmt(p and p['p99_ms'], 2)} |"
            f" {_fmt(f and f['p50_ms'], 2)}/{_fmt(f and f['p99_ms'], 2)} |"
            f" {_fmt(p and p['cpu_s'])} / {_fmt(p and p['peak_rss_mb'], 0)} |"
            f" {_fmt(f and f['cpu_s'])} / {_fmt(f and f['peak_rss_mb'], 0)} |"
        )
    lines += _scaling(by_key)
    lines += records_table(results)
    return "\n".join(lines)


def records_table(results: list[dict]) -> list[str]:
    """The sdk section: what each SDK's server recorded of the workload's runs and states."""
    rows = [r for r in results if r["phase"] == "records"]
    if not rows:
        return []
    lines = [
        "",
        "| section | SDK | flow runs (completed) / expected | task runs (completed) / expected |"
        " flow / task run states | settled after s | 'database is locked' / HTTP 503 |"
        " failed phases |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        lines.append(
            f"| {r['section']} | {r['target']} |"
            f" {r['flow_runs']:,} ({r['flow_runs_completed']:,}) / {r['expected_flow_runs']} |"
            f" {r['task_runs']:,} ({r['task_runs_completed']:,}) / {r['expected_task_runs']} |"
            f" {r['flow_run_states']:,} / {r['task_run_states']:,} |"
            f" {'still changing at ' if r.get('still_changing') else ''}{r['settled_after_s']} |"
            f" {r['database_is_locked']} / {r.get('http_503', 0)} |"
            f" {', '.join(r.get('failed_phases', [])) or '-'} |"
        )
    return lines


def _scaling(by_key: dict[tuple, dict[str, dict]]) -> list[str]:
    """flowrpc on PostgreSQL: two replicas against one, per phase."""
    lines = []
    for (section, phase, c), row in by_key.items():
        two = by_key.get(("pg-2", phase, c), {}).get("flowrpc")
        if section == "pg-1" and two:
            factor = two["ops_per_s"] / row["flowrpc"]["ops_per_s"]
            lines.append(f"PostgreSQL scaling, {phase} c={c}: 2 replicas / 1 = {factor:.2f}x")
    return [""] + lines if lines else []
