"""Flow-run history: per interval and state, the runs expected to start in it, their estimated run
time and lateness (semantics §6).

A history of every run on SQLite reads the granule table (tables.FlowRunHistoryGranule, kept by
triggers) for the granules that lie wholly in one interval, and the runs themselves for the few
granules that an interval's edge cuts or that hold now. Anything else (a filter, an interval
shorter than a granule, PostgreSQL) sums the runs. The statements are built once, with the window
as parameters.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowrpc.server.orchestration.records import TERMINAL_STATES
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.filters import Filter, flow_run_criteria
from flowrpc.server.storage.tables import HISTORY_GRANULE as GRANULE

run = t.flow_run.c
granules = t.flow_run_history_granule.c
TERMINAL = tuple(sorted(state.value for state in TERMINAL_STATES))
# The window, and what the granules' part needs besides: the statements' parameters.
NAMES = "start interval end now last_edge now_granule first_whole end_whole"
START, INTERVAL, END, NOW, LAST_EDGE, NOW_GRANULE, FIRST_WHOLE, END_WHOLE = (
    sa.bindparam(name, type_=sa.BigInteger) for name in NAMES.split()
)
EDGES = sa.bindparam("edges", expanding=True)


def flow_run_history(
    conn: Connection, filters: Filter, start: int, interval: int, intervals: int, now: int
) -> list[Any]:
    """Rows of (bucket: the interval's index, state_type, state_name, count_runs, and run_time and
    lateness summed in microseconds)."""
    window = {"start": start, "interval": interval, "end": start + interval * intervals, "now": now}
    if filters or interval < GRANULE or conn.dialect.name != "sqlite":
        query = RUNS_IN_WINDOW.where(flow_run_criteria(conn, filters))
        return list(conn.execute(query, window))
    # Granules that an interval edge cuts (one each: an interval is at least a granule long) or
    # that hold now (a run not yet started is late only once its expected start time has passed)
    # are summed from their runs. -1 is no granule: now's granule is cut by an edge.
    boundaries = (start + k * interval for k in range(intervals + 1))
    edges = sorted({edge // GRANULE for edge in boundaries if edge % GRANULE})
    now_granule = now // GRANULE if now // GRANULE not in edges else -1
    params = {
        **window,
        "edges": edges,
        "last_edge": intervals,
        "now_granule": now_granule,
        # The granules wholly inside [start, end): first_whole <= granule < end_whole.
        "first_whole": -(-start // GRANULE),
        "end_whole": window["end"] // GRANULE,
    }
    return _merged([*conn.execute(WHOLE, params), *conn.execute(STRADDLING, params)])


def _of_runs() -> sa.Select[Any]:
    """The sums over the runs themselves; the caller says which runs count."""
    expected = run.expected_start_time
    bucket = ((expected - START) // INTERVAL).label("bucket")
    running = run.state_type == "RUNNING"
    run_time = run.total_run_time + sa.case(
        (running, sa.func.coalesce(NOW - run.state_timestamp, 0)), else_=0
    )
    lateness = sa.case(
        (run.start_time > expected, run.start_time - expected),
        (
            sa.and_(run.start_time.is_(None), run.state_type.not_in(TERMINAL), expected < NOW),
            NOW - expected,
        ),
        else_=0,
    )
    return sa.select(
        bucket,
        run.state_type,
        run.state_name,
        sa.func.count().label("count_runs"),
        sa.func.sum(sa.case((run_time > 0, run_time), else_=0)).label("run_time"),
        sa.func.sum(sa.case((lateness > 0, lateness), else_=0)).label("lateness"),
    ).group_by(bucket, run.state_type, run.state_name)


def _straddling_spans() -> Any:
    """(low, high) of the granule that each interval edge k = 0..last_edge cuts (an edge on a
    granule's start cuts none), limited to [start, end), and of now's granule (empty when an edge
    cuts it)."""
    edge = sa.select(sa.literal(0, sa.BigInteger).label("k")).cte("edge", recursive=True)
    edge = edge.union_all(sa.select(edge.c.k + 1).where(edge.c.k < LAST_EDGE))
    boundary = START + edge.c.k * INTERVAL
    first = boundary // GRANULE * GRANULE
    low_now = NOW_GRANULE * GRANULE
    return sa.union_all(
        sa.select(
            sa.func.max(first, START).label("low"), sa.func.min(first + GRANULE, END).label("high")
        ).where(boundary % GRANULE != 0),
        sa.select(sa.func.max(low_now, START), sa.func.min(low_now + GRANULE, END)),
    ).cte("span")


def _of_granules() -> sa.Select[Any]:
    """The same sums from the granules wholly inside [start, end) that no edge cuts: each lies
    in one interval, wholly before or after now. Relative to a granule's start g: a RUNNING run's
    estimated run time is total + (now - g) - (state_timestamp - g); a run not started, not in a
    final state and expected before now is late by (now - g) - (expected - g)."""
    granule_start = granules.granule * GRANULE
    bucket = ((granule_start - START) // INTERVAL).label("bucket")
    since = NOW - granule_start
    run_time = granules.total_run_time + granules.running * since - granules.running_since
    # '' is no state: the runs' query does not count those late either (NULL NOT IN ...).
    waiting = sa.and_(granules.state_type.not_in(("", *TERMINAL)), granule_start < NOW)
    lateness = granules.late_started + sa.case(
        (waiting, granules.unstarted * since - granules.unstarted_offset), else_=0
    )
    count = sa.func.sum(granules.count_runs)
    return (
        sa.select(
            bucket,
            granules.state_type,
            granules.state_name,
            count.label("count_runs"),
            sa.func.sum(run_time).label("run_time"),
            sa.func.sum(lateness).label("lateness"),
        )
        .where(
            granules.granule >= FIRST_WHOLE,
            granules.granule < END_WHOLE,
            granules.granule.not_in(EDGES),
            granules.granule != NOW_GRANULE,
        )
        .group_by(bucket, granules.state_type, granules.state_name)
        .having(count > 0)  # groups whose runs have all moved on
    )


RUNS_IN_WINDOW = _of_runs().where(run.expected_start_time >= START, run.expected_start_time < END)
_span = _straddling_spans()
STRADDLING = _of_runs().select_from(
    _span.join(
        t.flow_run,
        sa.and_(run.expected_start_time >= _span.c.low, run.expected_start_time < _span.c.high),
    )
)
WHOLE = _of_granules()


def _merged(rows: list[Any]) -> list[SimpleNamespace]:
    totals: dict[tuple[int, str | None, str | None], list[int]] = {}
    for row in rows:
        key = (row.bucket, row.state_type or None, row.state_name or None)
        sums = totals.setdefault(key, [0, 0, 0])
        sums[0] += row.count_runs
        sums[1] += row.run_time or 0
        sums[2] += row.lateness or 0
    return [
        SimpleNamespace(
            bucket=bucket,
            state_type=state_type,
            state_name=state_name,
            count_runs=count,
            run_time=run_time,
            lateness=lateness,
        )
        for (bucket, state_type, state_name), (count, run_time, lateness) in totals.items()
    ]
