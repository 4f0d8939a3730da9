"""Preloading many runs for the scale phase: direct SQL inserts into each server's own schema
(sqlite3 executemany, 50,000 rows a transaction) while the server is stopped. It is the fastest
honest means: the rows are what each server writes itself for the same runs (run row plus its
current state row), without going through either API at ~100 runs/s (Prefect) or ~10,000 (flowrpc).

Runs: 60% Scheduled in the past, 20% Completed, 20% Failed; expected start times spread evenly over
the last 30 days; two tags each from a small set. Rows go in in creation order (a server that has
been creating runs for 30 days), each created at its expected start time, with ids as each server
mints them: UUIDv7 of the creation time for flowrpc, UUIDv4 for Prefect.
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import uuid_utils

TAGS = ["etl", "ml", "nightly", "adhoc", "critical"]
BATCH = 50_000
SPAN = timedelta(days=30)


NewId = Callable[[datetime], str]  # a server's id for a row created at this time


def _runs(n: int, now: datetime, new_id: NewId) -> Iterator[tuple[str, str, str, datetime, list]]:
    """(run id, state id, state type, expected start time, tags) for n runs, oldest first."""
    for i, share in enumerate(sorted(random.random() for _ in range(n))):
        kind = ("SCHEDULED", "SCHEDULED", "SCHEDULED", "COMPLETED", "FAILED")[i % 5]
        expected = now - SPAN * (1 - share)
        yield new_id(expected), new_id(expected), kind, expected, random.sample(TAGS, 2)


def _uuid7(created: datetime) -> str:
    return str(uuid_utils.uuid7(nanoseconds=int(created.timestamp() * 1e9)))


def _uuid4(_created: datetime) -> str:
    return str(uuid.uuid4())


def _batches(rows: Iterator, size: int = BATCH) -> Iterator[list]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# The columns both schemas share, in this order; each server's SQL adds its own defaults.
RUN_COLUMNS = (
    "id, created, updated, name, flow_id, deployment_id, tags, state_id, state_type, state_name,"
    " state_timestamp, expected_start_time, next_scheduled_start_time, start_time, end_time"
)
FLOWRPC_RUN_SQL = (
    f"INSERT INTO flow_run ({RUN_COLUMNS}, run_count, total_run_time, auto_scheduled,"
    " parameters, context, empirical_policy, labels, job_variables)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0,0,'{}','{}','{}','{}','{}')"
)
FLOWRPC_STATE_SQL = (
    "INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, state_details)"
    " VALUES (?,?,?,?,?,?)"
)
PREFECT_RUN_SQL = (
    f"INSERT INTO flow_run ({RUN_COLUMNS}, total_run_time)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'1970-01-01 00:00:00.000000')"
)
PREFECT_STATE_SQL = (
    "INSERT INTO flow_run_state (id, created, updated, flow_run_id, type, name, timestamp,"
    " state_details) VALUES (?,?,?,?,?,?,?,?)"
)


def _load(
    path: str, n: int, flow_id: str, deployment_id: str, new_id: NewId, encode, state_row, sqls
) -> None:
    """Inserts n runs and their states; `new_id` mints the server's ids, `encode` turns a
    datetime into the schema's time value, `state_row(run id, state id, kind, time, scheduled
    time)` builds the state row."""
    run_sql, state_sql = sqls
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA temp_store=MEMORY")  # as flowrpc's writer: its history triggers fire
    for batch in _batches(_runs(n, datetime.now(UTC), new_id)):
        runs, states = [], []
        for run_id, state_id, kind, expected, tags in batch:
            at = encode(expected)
            scheduled = expected if kind == "SCHEDULED" else None
            finished = None if scheduled else at
            name = kind.capitalize()
            runs.append(
                (run_id, at, at, f"run-{run_id[:8]}", flow_id, deployment_id, json.dumps(tags),
                 state_id, kind, name, at, at, scheduled and at, finished, finished)
            )  # fmt: skip
            states.append(state_row(run_id, state_id, kind, at, scheduled))
        with conn:
            conn.executemany(run_sql, runs)
            conn.executemany(state_sql, states)
    conn.close()


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def preload_flowrpc(path: str, n: int, flow_id: str, deployment_id: str) -> None:
    def state_row(run_id, state_id, kind, at, scheduled):  # noqa: ANN001, ANN202
        details = {"flow_run_id": run_id, **({"scheduled_time": at} if scheduled else {})}
        return state_id, run_id, kind, kind.capitalize(), at, json.dumps(details)

    sqls = (FLOWRPC_RUN_SQL, FLOWRPC_STATE_SQL)
    _load(path, n, flow_id, deployment_id, _uuid7, _micros, state_row, sqls)


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def preload_prefect(path: str, n: int, flow_id: str, deployment_id: str) -> None:
    def state_row(run_id, state_id, kind, at, scheduled):  # noqa: ANN001, ANN202
        scheduled_time = scheduled.isoformat().replace("+00:00", "Z") if scheduled else None
        details = {"flow_run_id": run_id, "scheduled_time": scheduled_time}
        return state_id, at, at, run_id, kind, kind.capitalize(), at, json.dumps(details)

    sqls = (PREFECT_RUN_SQL, PREFECT_STATE_SQL)
    _load(path, n, flow_id, deployment_id, _uuid4, _text, state_row, sqls)
