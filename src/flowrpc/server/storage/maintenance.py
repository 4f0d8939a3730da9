"""The writes of the background services: one indexed query per batch, then orchestration of
each selected run through its policy."""

from __future__ import annotations

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


def mark_late_runs(conn: Connection, limit: int, now: int, late_after: int) -> int:
    """Proposes Late to up to `limit` runs still "Scheduled" more than `late_after` microseconds
    past their scheduled time; returns how many became Late. Served by the (state_name,
    next_scheduled_start_time) index."""
    due = conn.execute(
        sa.select(run.id, run.next_scheduled_start_time)
        .where(
            run.state_name == "Scheduled",
            run.next_scheduled_start_time <= now - late_after,
            run.state_type == StateType.SCHEDULED.value,
        )
        .order_by(run.next_scheduled_start_time)
        .limit(limit)
    ).all()
    marked = 0
    for run_id, scheduled_time in due:
        late = new_state(StateType.SCHEDULED, now, name="Late", scheduled_time=scheduled_time)
        outcome = set_flow_run_state(conn, run_id, late, FlowPolicy.MARK_LATE, now)
        marked += outcome is not None and outcome.decision.state is not None
    return marked


def fail_expired_pauses(conn: Connection, limit: int, now: int) -> int:
    """Force-fails up to `limit` PAUSED runs whose pause timed out; returns how many failed.
    Cost grows with the number of paused runs (state_type index), not of all runs."""
    states = t.flow_run_state
    paused = conn.execute(
        sa.select(run.id, states.c.state_details)
        .join(states, states.c.id == run.state_id)
        .where(run.state_type == StateType.PAUSED.value)
    ).all()
    expired = [
        run_id
        for run_id, details in paused
        if (timeout := details_from_json(details).pause_timeout) is not None and timeout < now
    ][:limit]
    failed = 0
    for run_id in expired:
        state = new_state(StateType.FAILED, now, message=PAUSE_EXPIRED)
        outcome = set_flow_run_state(conn, run_id, state, FlowPolicy.MINIMAL, now)
        failed += outcome is not None and outcome.decision.state is not None
    return failed
