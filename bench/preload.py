"""Preloading many runs for the scale phase: direct SQL inserts into each server's own schema
(sqlite3 executemany, 50,000 rows a transaction) while the server is stopped. It is the fastest
honest means: the rows are what each server writes itself for the same runs (run row plus its
current state row), without going through either API at ~100 runs/s (Prefect) or ~10,000 (flowrpc).

Runs: 60% Scheduled in the past, 20% Completed, 20% Failed; expected start times spread evenly over
the last 30 days; two tags each from a small set.
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

TAGS = ["etl", "ml", "nightly", "adhoc", "critical"]
BATCH = 50_000
SPAN = timedelta(days=30)


def _runs(n: int, now: datetime) -> Iterator[tuple[str, str, str, datetime, list[str]]]:
    """(run id, state id, state type, expected start time, tags) for n runs."""
    for i in range(n):
        kind = ("SCHEDULED", "SCHEDULED", "SCHEDULED", "COMPLETED", "FAILED")[i % 5]
        expected = now - SPAN * random.random()
        yield str(uuid.uuid4()), str(uuid.uuid4()), kind, expected, random.sample(TAGS, 2)


def _batches(rows: Iterator, size: int = BATCH) -> Iterator[list]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def preload_flowrpc(path: str, n: int, flow_id: str, deployment_id: str) -> None:
    now = datetime.now(UTC)
    conn = sqlite3.connect(path)
    for batch in _batches(_runs(n, now)):
        runs, states = [], []
        for run_id, state_id, kind, expected, tags in batch:
            at = _micros(expected)
            scheduled = kind == "SCHEDULED"
            finished = None if scheduled else at
            runs.append(
                (
                    run_id,
                    at,
                    at,
                    f"run-{run_id[:8]}",
                    flow_id,
                    deployment_id,
                    json.dumps(tags),
                    state_id,
                    kind,
                    kind.capitalize(),
                    at,
                    at,
                    at if scheduled else None,
                    finished,
                    finished,
                )
            )
            details = {"flow_run_id": run_id, **({"scheduled_time": at} if scheduled else {})}
            states.append((state_id, run_id, kind, kind.capitalize(), at, json.dumps(details)))
        with conn:
            conn.executemany(
                "INSERT INTO flow_run (id, created, updated, name, flow_id, deployment_id, tags,"
                " state_id, state_type, state_name, state_timestamp, expected_start_time,"
                " next_scheduled_start_time, start_time, end_time, run_count, total_run_time,"
                " auto_scheduled, parameters, context, empirical_policy, labels, job_variables)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0,'{}','{}','{}','{}','{}')",
                runs,
            )
            conn.executemany(
                "INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, state_details)"
                " VALUES (?,?,?,?,?,?)",
                states,
            )
    conn.close()


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def preload_prefect(path: str, n: int, flow_id: str, deployment_id: str) -> None:
    now = datetime.now(UTC)
    conn = sqlite3.connect(path)
    for batch in _batches(_runs(n, now)):
        runs, states = [], []
        for run_id, state_id, kind, expected, tags in batch:
            at = _text(expected)
            scheduled = kind == "SCHEDULED"
            finished = None if scheduled else at
            runs.append(
                (
                    run_id,
                    at,
                    at,
                    f"run-{run_id[:8]}",
                    flow_id,
                    deployment_id,
                    json.dumps(tags),
                    state_id,
                    kind,
                    kind.capitalize(),
                    at,
                    at,
                    at if scheduled else None,
                    finished,
                    finished,
                )
            )
            details = {
                "flow_run_id": run_id,
                "scheduled_time": expected.isoformat().replace("+00:00", "Z")
                if scheduled
                else None,
            }
            states.append(
                (state_id, at, at, run_id, kind, kind.capitalize(), at, json.dumps(details))
            )
        with conn:
            conn.executemany(
                "INSERT INTO flow_run (id, created, updated, name, flow_id, deployment_id, tags,"
                " state_id, state_type, state_name, state_timestamp, expected_start_time,"
                " next_scheduled_start_time, start_time, end_time, total_run_time)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'1970-01-01 00:00:00.000000')",
                runs,
            )
            conn.executemany(
                "INSERT INTO flow_run_state (id, created, updated, flow_run_id, type, name,"
                " timestamp, state_details) VALUES (?,?,?,?,?,?,?,?)",
                states,
            )
    conn.close()
