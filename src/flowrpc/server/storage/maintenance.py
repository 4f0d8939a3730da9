"""The writes of the background services: one indexed query per batch, then orchestration of
each selected run through its policy. A run whose row cannot be read or changed undoes its batch
and raises RunFailed naming it, so the service can run the batch again without it (a savepoint
per run instead cost 1.8 times the time of a pass)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowrpc.server.orchestration import FlowPolicy
from flowrpc.server.orchestration.records import StateType
from flowrpc.server.orchestration.states import new_state
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.rows import details_from_json
from flowrpc.server.storage.transitions import set_flow_run_state

run = t.flow_run.c
PAUSE_EXPIRED = "The flow was paused and never resumed."
REASON_LENGTH = 120  # characters of the error kept in RunFailed.reason


class RunFailed(Exception):
    """One run could not be read or changed; the batch that met it wrote nothing."""

    def __init__(self, run_id: str, error: Exception) -> None:
        self.run_id = run_id
        self.reason = f"{type(error).__name__}: {error}"[:REASON_LENGTH]
        super().__init__(f"run {run_id}: {self.reason}")


@contextmanager
def _blaming(run_id: str) -> Iterator[None]:
    """Errors of this run's row become RunFailed; the database's own (locked, interrupted,
    connection lost) stay what they are: they are no run's fault."""
    try:
        yield
    except sa.exc.OperationalError:
        raise
    except Exception as error:
        raise RunFailed(run_id, error) from error


def mark_late_runs(
    conn: Connection, limit: int, now: int, skip: frozenset[str], late_after: int
) -> int:
    """Proposes Late to up to `limit` runs still "Scheduled" more than `late_after` microseconds
    past their scheduled time, but those in `skip`; returns how many became Late. Served by the
    (state_name, next_scheduled_start_time) index."""
    query = (
        sa.select(run.id, run.next_scheduled_start_time)
        .where(
            run.state_name == "Scheduled",
            run.next_scheduled_start_time <= now - late_after,
            run.state_type == StateType.SCHEDULED.value,
        )
        .order_by(run.next_scheduled_start_time)
        .limit(limit)
    )
    if skip:
        query = query.where(run.id.not_in(sorted(skip)))
    marked = 0
    for run_id, scheduled_time in conn.execute(query).all():
        late = new_state(StateType.SCHEDULED, now, name="Late", scheduled_time=scheduled_time)
        with _blaming(run_id):
            outcome = set_flow_run_state(conn, run_id, late, FlowPolicy.MARK_LATE, now)
        marked += outcome is not None and outcome.decision.state is not None
    return marked


def fail_expired_pauses(conn: Connection, limit: int, now: int, skip: frozenset[str]) -> int:
    """Force-fails up to `limit` PAUSED runs whose pause timed out, but those in `skip`; returns
    how many failed. Cost grows with the number of paused runs (state_type index), not of all
    runs. The details are read as stored and decoded run by run, so details that cannot be
    decoded blame their run."""
    states = t.flow_run_state
    details = states.c.state_details
    paused = conn.execute(
        sa.select(run.id, sa.type_coerce(details, sa.Text))
        .join(states, states.c.id == run.state_id)
        .where(run.state_type == StateType.PAUSED.value)
    ).all()
    decode = _decoder(details.type, conn)
    expired = []
    for run_id, stored in paused:
        if run_id not in skip:
            with _blaming(run_id):
                timeout = details_from_json(decode(stored)).pause_timeout
            if timeout is not None and timeout < now:
                expired.append(run_id)
    failed = 0
    for run_id in expired[:limit]:
        state = new_state(StateType.FAILED, now, message=PAUSE_EXPIRED)
        with _blaming(run_id):
            outcome = set_flow_run_state(conn, run_id, state, FlowPolicy.MINIMAL, now)
        failed += outcome is not None and outcome.decision.state is not None
    return failed


def _decoder(json_type: Any, conn: Connection) -> Callable[[Any], Any]:
    """What reading a JSON column does to its stored value on this connection's database (on
    PostgreSQL the driver has decoded it already)."""
    process = json_type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    return process or (lambda value: value)
