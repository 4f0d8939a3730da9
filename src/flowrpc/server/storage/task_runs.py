"""Task runs."""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import not_found
from flowrpc.server.ids import new_id
from flowrpc.server.names import slug
from flowrpc.server.orchestration import TaskPolicy
from flowrpc.server.orchestration.records import State
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.filters import Filter, compiler_for
from flowrpc.server.storage.rows import plain
from flowrpc.server.storage.transitions import Outcome, set_task_run_state

task = t.task_run.c

READ = sa.select(
    t.task_run,
    t.task_run_state.c.message.label("state_message"),
    t.task_run_state.c.data.label("state_data"),
    t.task_run_state.c.state_details.label("state_details"),
).select_from(t.task_run.outerjoin(t.task_run_state, t.task_run_state.c.id == task.state_id))


def create_task_run(
    conn: Connection, values: dict[str, Any], state: State, now: int
) -> tuple[Row[Any], bool]:
    """Inserts a task run and applies its initial state, forced. Idempotent on
    (flow_run_id, task_key, dynamic_key)."""
    keyed = bool(values.get("flow_run_id"))
    if keyed:
        found = conn.execute(
            sa.select(t.flow_run.c.id).where(t.flow_run.c.id == values["flow_run_id"])
        ).first()
        if found is None:
            raise not_found("flow run", values["flow_run_id"])
        if (existing := _by_key(conn, values)) is not None:
            return existing, False
    task_run_id = new_id()
    values = {
        **values,
        "flow_run_id": values.get("flow_run_id") or None,
        "id": task_run_id,
        "created": now,
        "updated": now,
        "name": values.get("name") or slug(),
    }
    try:
        # PostgreSQL: a concurrent create of the same key may commit first; then return its run.
        with conn.begin_nested() if keyed else contextlib.nullcontext():
            conn.execute(sa.insert(t.task_run).values(**values))
    except sa.exc.IntegrityError:
        if not keyed or (existing := _by_key(conn, values)) is None:
            raise
        return existing, False
    set_task_run_state(conn, task_run_id, state, TaskPolicy.MINIMAL, now)
    return get_task_run(conn, task_run_id), True


def set_states(
    conn: Connection, proposals: list[tuple[str, State, bool]], now: int
) -> list[Outcome]:
    """set_state for each (task_run_id, state, force), in order, in one transaction."""
    return [set_state(conn, run_id, state, force, now) for run_id, state, force in proposals]


def start_task_run(
    conn: Connection, values: dict[str, Any], initial: State, proposed: State, now: int
) -> tuple[Row[Any], bool, Outcome]:
    """create_task_run, then `proposed` through the core task policy, in one transaction."""
    row, created = create_task_run(conn, values, initial, now)
    outcome = set_state(conn, row.id, proposed, False, now)
    return get_task_run(conn, row.id), created, outcome


def _by_key(conn: Connection, values: dict[str, Any]) -> Row[Any] | None:
    return conn.execute(
        READ.where(
            task.flow_run_id == values["flow_run_id"],
            task.task_key == values["task_key"],
            task.dynamic_key == values["dynamic_key"],
        )
    ).first()


def get_task_run(conn: Connection, task_run_id: str) -> Row[Any]:
    row = conn.execute(READ.where(task.id == task_run_id)).first()
    if row is None:
        raise not_found("task run", task_run_id)
    return row


def list_task_runs(conn: Connection, filters: Filter, limit: int, offset: int) -> list[Row[Any]]:
    compiler = compiler_for(conn)
    criteria = []
    if "task_runs" in filters:
        criteria.append(compiler.task_run(filters["task_runs"]))
    run_filters = {k: v for k, v in filters.items() if k != "task_runs"}
    if run_filters:
        criteria.append(
            sa.exists().where(
                t.flow_run.c.id == task.flow_run_id, compiler.flow_run_set(run_filters)
            )
        )
    query = READ.where(*criteria).order_by(task.id.desc()).limit(limit).offset(offset)
    return plain(conn.execute(query))


def set_state(
    conn: Connection, task_run_id: str, proposed: State, force: bool, now: int
) -> Outcome:
    policy = TaskPolicy.MINIMAL if force else TaskPolicy.CORE
    outcome = set_task_run_state(conn, task_run_id, proposed, policy, now)
    if outcome is None:
        raise not_found("task run", task_run_id)
    return outcome
