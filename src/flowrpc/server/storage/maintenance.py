"""The writes of the background services: one indexed query per batch, then orchestration of
each selected run through its policy. Each run is orchestrated in its own savepoint, so one run
whose row cannot be read or changed is skipped (and reported) without undoing or stopping the
others."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowrpc.server.orchestration import FlowPolicy
from flowrpc.server.orchestration.records import State, StateType
from flowrpc.server.orchestration.states import new_state
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.rows import details_from_json
from flowrpc.server.storage.transitions import set_flow_run_state

run = t.flow_run.c
PAUSE_EXPIRED = "The flow was paused and never resumed."
REASON_LENGTH = 120  # characters of an error kept in a skipped run's reason


@dataclasses.dataclass
class Batch:
    """What one batch did: `changed` runs changed state; `failed` maps the id of each run that
    was skipped to why. A batch whose runs all changed or failed may have left more to do."""

    changed: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.changed + len(self.failed)


def mark_late_runs(
    conn: Connection, limit: int, now: int, skip: frozenset[str], late_after: int
) -> Batch:
    """Proposes Late to up to `limit` runs still "Scheduled" more than `late_after` microseconds
    past their scheduled time, but those in `skip`. Served by the (state_name,
    next_scheduled_start_time) index."""
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

    def late(scheduled_time: int) -> State:
        return new_state(StateType.SCHEDULED, now, name="Late", scheduled_time=scheduled_time)

    due = conn.execute(query).all()
    return _propose(conn, ((i, late(when)) for i, when in due), FlowPolicy.MARK_LATE, now)


def fail_expired_pauses(conn: Connection, limit: int, now: int, skip: frozenset[str]) -> Batch:
    """Force-fails up to `limit` PAUSED runs whose pause timed out, but those in `skip`. Cost
    grows with the number of paused runs (state_type index), not of all runs. The details are
    decoded run by run, so one that cannot be decoded fails only its run."""
    states = t.flow_run_state
    details = states.c.state_details
    paused = conn.execute(
        sa.select(run.id, sa.type_coerce(details, sa.Text))  # as stored: decoded below
        .join(states, states.c.id == run.state_id)
        .where(run.state_type == StateType.PAUSED.value)
    ).all()
    decode = _decoder(details.type, conn)
    batch, expired = Batch(), []
    for run_id, stored in paused:
        if run_id in skip:
            continue
        try:
            timeout = details_from_json(decode(stored)).pause_timeout
        except Exception as error:  # a row this version cannot read
            batch.failed[run_id] = _reason(error)
            continue
        if timeout is not None and timeout < now:
            expired.append(run_id)
    failed = new_state(StateType.FAILED, now, message=PAUSE_EXPIRED)
    runs = ((run_id, failed) for run_id in expired[: max(limit - len(batch.failed), 0)])
    return _propose(conn, runs, FlowPolicy.MINIMAL, now, batch)


def _propose(
    conn: Connection,
    runs: Iterable[tuple[str, State]],
    policy: FlowPolicy,
    now: int,
    batch: Batch | None = None,
) -> Batch:
    """Proposes each run its state, each in a savepoint: an error other than the database's own
    (locked, interrupted, gone) skips that run only."""
    batch = batch or Batch()
    for run_id, state in runs:
        try:
            with conn.begin_nested():
                outcome = set_flow_run_state(conn, run_id, state, policy, now)
        except sa.exc.OperationalError:
            raise
        except Exception as error:
            batch.failed[run_id] = _reason(error)
            continue
        batch.changed += outcome is not None and outcome.decision.state is not None
    return batch


def _decoder(json_type: Any, conn: Connection) -> Callable[[Any], Any]:
    """What reading a JSON column does to its stored value on this connection's database (on
    PostgreSQL the driver has already decoded it)."""
    process = json_type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    return process or (lambda value: value)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:REASON_LENGTH]
