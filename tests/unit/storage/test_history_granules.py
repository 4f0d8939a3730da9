"""On SQLite, a history of every run is read from the granule table that triggers keep. Whatever
happens to the runs, it must equal the sums over the runs themselves (a filter that matches every
run takes that path), for windows aligned with the granules or not, holding now, or in the
future."""

from __future__ import annotations

import random

import sqlalchemy as sa

from flowrpc.server.storage import tables as t
from flowrpc.server.storage.history import flow_run_history
from flowrpc.server.storage.migrate import upgrade
from flowrpc.server.storage.tables import HISTORY_GRANULE

HOUR = 3_600_000_000
MINUTE = 60_000_000
NOW = 1_800_002_233_456_789  # microseconds: 37 min 13 s past an hour, inside a granule
STATES = [
    ("SCHEDULED", "Scheduled"),
    ("SCHEDULED", "Late"),
    ("PENDING", "Pending"),
    ("RUNNING", "Running"),
    ("COMPLETED", "Completed"),
    ("FAILED", "Failed"),
    ("CANCELLED", "Cancelled"),
    (None, None),
]
WINDOWS = [  # (start, interval, intervals)
    (NOW - 24 * HOUR, HOUR, 24),  # the last day, unaligned, ending at now
    (NOW - 12 * HOUR, HOUR, 24),  # now in the middle
    (NOW // HOUR * HOUR - 24 * HOUR, HOUR, 30),  # aligned with the granules
    (NOW - 30 * HOUR, 7 * MINUTE, 300),  # intervals that are not a whole number of granules
    (NOW - 36 * HOUR, HISTORY_GRANULE, 500),  # one granule each
    (NOW + HOUR, 2 * HOUR, 5),  # the future only
]


WATCHED = [
    "expected_start_time",
    "state_type",
    "state_name",
    "total_run_time",
    "state_timestamp",
    "start_time",
]
# Where runs are most easily miscounted: on the windows' edges and now, and next to them.
EDGES = [NOW] + [
    start + k * interval for start, interval, intervals in WINDOWS for k in (0, 1, intervals)
]
TIMES = [edge + nudge for edge in EDGES for nudge in (-1, 0, 1)]


def a_run(rng: random.Random, flow_id: str, i: int) -> dict:
    state_type, state_name = rng.choice(STATES)
    expected = NOW + rng.randint(-40 * HOUR, 14 * HOUR)
    expected = None if i % 17 == 0 else rng.choice(TIMES) if i % 3 == 0 else expected
    started = expected is not None and rng.random() < 0.4
    return {
        "id": f"run-{i:05d}",
        "created": NOW,
        "updated": NOW,
        "name": f"run-{i}",
        "flow_id": flow_id,
        "state_type": state_type,
        "state_name": state_name,
        "state_timestamp": None if state_type is None else NOW - rng.randint(0, 20 * HOUR),
        "expected_start_time": expected,
        "start_time": expected + rng.randint(-HOUR, 3 * HOUR) if started else None,
        "total_run_time": rng.randint(0, HOUR) if started else 0,
    }


def histories(conn: sa.Connection, now: int) -> list[tuple[list, list]]:
    """(from granules, from runs) for each window, as comparable sorted lists."""

    def rows(filters: dict, window: tuple[int, int, int]) -> list:
        found = flow_run_history(conn, filters, *window, now)
        return sorted(
            (
                r.bucket,
                r.state_type or "",
                r.state_name or "",
                r.count_runs,
                r.run_time,
                r.lateness,
            )
            for r in found
        )

    return [(rows({}, window), rows({"flow_runs": {}}, window)) for window in WINDOWS]


def assert_granules_match_runs(conn: sa.Connection) -> None:
    for now in (NOW, NOW + 3 * HOUR + 17):
        for from_granules, from_runs in histories(conn, now):
            assert from_granules == from_runs
    last_day = histories(conn, NOW)[0][0]
    assert sum(row[3] for row in last_day) > 20  # the windows hold runs: the test compares sums
    assert all(row[4] > 0 for row in last_day if row[1] == "RUNNING")
    assert any(row[5] > 0 for row in last_day if row[2] == "Scheduled")


def database(tmp_path, revision: str = "head") -> tuple[sa.Engine, str]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'flowrpc.db'}")
    with engine.begin() as conn:
        upgrade(conn, revision)
        conn.execute(sa.insert(t.flow).values(id="flow", created=NOW, updated=NOW, name="etl"))
    return engine, "flow"


def test_triggers_keep_the_granules_through_inserts_updates_and_deletes(tmp_path):
    rng = random.Random(5)
    engine, flow_id = database(tmp_path)
    with engine.begin() as conn:
        conn.execute(sa.insert(t.flow_run), [a_run(rng, flow_id, i) for i in range(600)])
        assert_granules_match_runs(conn)
        run = t.flow_run.c
        for i in rng.sample(range(600), 400):  # one watched column at a time, or all of them
            moved = a_run(rng, flow_id, i)
            columns = WATCHED if i % 4 == 0 else [rng.choice(WATCHED)]
            values = {column: moved[column] for column in columns}
            conn.execute(sa.update(t.flow_run).where(run.id == f"run-{i:05d}").values(values))
        conn.execute(
            sa.delete(t.flow_run).where(run.id.in_([f"run-{i:05d}" for i in range(0, 600, 9)]))
        )
        assert_granules_match_runs(conn)
        conn.execute(sa.update(t.flow_run).values(name="renamed"))  # no watched column: no change
        assert_granules_match_runs(conn)
    engine.dispose()


def test_runs_stored_before_the_granule_table_are_summed_into_it(tmp_path):
    rng = random.Random(11)
    engine, flow_id = database(tmp_path, revision="0002")
    with engine.begin() as conn:
        conn.execute(sa.insert(t.flow_run), [a_run(rng, flow_id, i) for i in range(600)])
        upgrade(conn, "head")
        assert_granules_match_runs(conn)
    engine.dispose()
