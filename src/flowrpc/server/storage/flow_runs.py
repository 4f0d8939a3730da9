"""Flow-run queries and writes: synchronous functions of a Connection, run by `Database`."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import not_found
from flowrpc.server.ids import new_id
from flowrpc.server.names import slug
from flowrpc.server.orchestration import FlowPolicy
from flowrpc.server.orchestration.records import State
from flowrpc.server.storage import tables as t
from flowrpc.server.storage import task_runs
from flowrpc.server.storage.database import savepoint
from flowrpc.server.storage.filters import (
    REMEMBERED_FILTERS,
    Filter,
    compiler_for,
    flow_run_criteria,
    remembered_flow_run_criteria,
)
from flowrpc.server.storage.prepared import Prepared, insert_defaults
from flowrpc.server.storage.rows import details_to_json, plain
from flowrpc.server.storage.transitions import (
    Outcome,
    bulk_set_flow_run_state,
    insert_flow_run,
    resume_flow_run,
    set_flow_run_state,
)
from flowrpc.server.storage.work_pools import resolve_work_queue

run = t.flow_run.c

# A run with the parts of its current state and work pool that the row does not carry.
READ = sa.select(
    t.flow_run,
    t.flow_run_state.c.message.label("state_message"),
    t.flow_run_state.c.data.label("state_data"),
    t.flow_run_state.c.state_details.label("state_details"),
    t.work_queue.c.work_pool_id.label("work_pool_id"),
    t.work_pool.c.name.label("work_pool_name"),
).select_from(
    t.flow_run.outerjoin(t.flow_run_state, t.flow_run_state.c.id == run.state_id)
    .outerjoin(t.work_queue, t.work_queue.c.id == run.work_queue_id)
    .outerjoin(t.work_pool, t.work_pool.c.id == t.work_queue.c.work_pool_id)
)


@dataclass(frozen=True)
class Sort:
    """An order: key ASC, id ASC; or key DESC, id DESC. NULL keys are the smallest, so they come
    first ascending and last descending, on every database (indexes serve both directions)."""

    key: Any
    descending: bool
    row_key: Callable[[Any], Any]  # the key's value in a listed row, for the next page token

    def order_by(self) -> list[Any]:
        if self.key is run.id:
            return [run.id.desc() if self.descending else run.id.asc()]
        if self.descending:
            return [self.key.desc().nulls_last(), run.id.desc()]
        return [self.key.asc().nulls_first(), run.id.asc()]

    def accepts(self, key: Any) -> bool:
        """Whether `key` can be this order's key: a page token's is checked before a query."""
        if isinstance(self.key.type, sa.Integer):  # times: BIGINT microseconds, or NULL
            return key is None or (type(key) is int and key in t.INT64)
        return isinstance(key, str)

    def after(self, key: Any, run_id: str) -> Any:
        """Rows that come after (key, run_id) in this order."""
        if self.key is run.id:
            return run.id < run_id if self.descending else run.id > run_id
        if self.descending:
            if key is None:
                return sa.and_(self.key.is_(None), run.id < run_id)
            return sa.or_(
                self.key < key, sa.and_(self.key == key, run.id < run_id), self.key.is_(None)
            )
        if key is None:
            return sa.or_(sa.and_(self.key.is_(None), run.id > run_id), self.key.is_not(None))
        return sa.or_(self.key > key, sa.and_(self.key == key, run.id > run_id))


def _start(row: Any) -> Any:
    return row.start_time if row.start_time is not None else row.expected_start_time


_START = sa.func.coalesce(run.start_time, run.expected_start_time)
SORTS = {
    "ID_DESC": Sort(run.id, True, lambda r: r.id),
    "START_TIME_ASC": Sort(_START, False, _start),
    "START_TIME_DESC": Sort(_START, True, _start),
    "EXPECTED_START_TIME_ASC": Sort(
        run.expected_start_time, False, lambda r: r.expected_start_time
    ),
    "EXPECTED_START_TIME_DESC": Sort(
        run.expected_start_time, True, lambda r: r.expected_start_time
    ),
    "NAME_ASC": Sort(run.name, False, lambda r: r.name),
    "NAME_DESC": Sort(run.name, True, lambda r: r.name),
    "NEXT_SCHEDULED_START_TIME_ASC": Sort(
        run.next_scheduled_start_time, False, lambda r: r.next_scheduled_start_time
    ),
    "END_TIME_DESC": Sort(run.end_time, True, lambda r: r.end_time),
}


def get_flow_run(conn: Connection, run_id: str) -> Row[Any] | None:
    return conn.execute(READ.where(run.id == run_id)).first()


def require_flow_run(conn: Connection, run_id: str) -> Row[Any]:
    row = get_flow_run(conn, run_id)
    if row is None:
        raise not_found("flow run", run_id)
    return row


def list_flow_runs(
    conn: Connection,
    filters: Filter,
    sort: str,
    limit: int,
    offset: int = 0,
    after: tuple[Any, str] | None = None,
) -> list[Row[Any]]:
    order = SORTS[sort]
    query = READ.where(flow_run_criteria(conn, filters))
    if after is not None:
        query = query.where(order.after(*after))
    query = query.order_by(*order.order_by()).limit(limit).offset(offset)
    return plain(conn.execute(query))


def count_flow_runs(conn: Connection, filters: Filter) -> int:
    criteria = remembered_flow_run_criteria(conn, filters)
    if criteria is None:  # a large filter set: its statement is not kept either
        return conn.execute(_count(compiler_for(conn).flow_run_set(filters))).scalar_one()
    return conn.execute(_count_of(criteria)).scalar_one()


def _count(criteria: Any) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(t.flow_run).where(criteria)


@functools.lru_cache(maxsize=REMEMBERED_FILTERS)  # as many as the criteria kept
def _count_of(criteria: Any) -> sa.Select[Any]:
    """The count for remembered criteria, as the same statement object each time: SQLAlchemy
    then finds its compiled form without walking it again (a count of a thousand runs, in-process:
    99 -> 62 µs)."""
    return _count(criteria)


FLOW_LABELS = Prepared(sa.select(t.flow.c.labels).where(t.flow.c.id == sa.bindparam("flow_id")))
RUN_DEFAULTS = insert_defaults(t.flow_run)


def create_flow_run(
    conn: Connection,
    values: dict[str, Any],
    state: State,
    now: int,
    work_pool_name: str | None = None,
) -> tuple[Any, bool]:
    """Inserts a run and applies its initial state, forced; returns (run, created). A used
    (flow_id, idempotency_key) returns the existing run unchanged."""
    flow = FLOW_LABELS.first(conn, {"flow_id": values["flow_id"]})
    if flow is None:
        raise not_found("flow", values["flow_id"])
    queue = resolve_work_queue(conn, work_pool_name, values.get("work_queue_name"))
    return insert_new_run(conn, values, flow.labels, state, now, queue, work_pool_name)


def insert_new_run(
    conn: Connection,
    values: dict[str, Any],
    flow_labels: dict[str, Any] | None,
    state: State,
    now: int,
    queue: Any = None,
    work_pool_name: str | None = None,
) -> tuple[Any, bool]:
    """create_flow_run once the flow is known to exist and the work queue is resolved."""
    existing = _by_idempotency_key(conn, values)
    if existing is not None:
        return existing, False
    values = new_run_values(values, flow_labels, now, queue)
    # A used idempotency key is the one conflict to recover from, so only then a savepoint.
    keyed = values.get("idempotency_key") is not None
    try:
        with savepoint(conn, "flowrpc_keyed") if keyed else contextlib.nullcontext():
            columns, first = insert_flow_run(conn, values, state, now)
    except sa.exc.IntegrityError:
        existing = _by_idempotency_key(conn, values)
        if existing is None:
            raise
        return existing, False  # another transaction created it first
    pool_id = queue.work_pool_id if queue is not None else None
    return inserted_row(columns, first, pool_id, work_pool_name), True


def new_run_values(
    values: dict[str, Any], flow_labels: dict[str, Any] | None, now: int, queue: Any
) -> dict[str, Any]:
    """The columns of a new run from its create values: a fresh id, the name (a slug when
    none), the flow's labels under the run's own, the resolved work queue."""
    queued = {"work_queue_id": queue.id, "work_queue_name": queue.name} if queue else {}
    return {
        **values,
        **queued,
        "id": new_id(),
        "created": now,
        "updated": now,
        "name": values.get("name") or slug(),
        "labels": {
            **(flow_labels or {}),
            "prefect.flow.id": values["flow_id"],
            **(values.get("labels") or {}),
        },
    }


def inserted_row(
    columns: dict[str, Any], state: State | None, pool_id: str | None, pool_name: str | None
) -> SimpleNamespace:
    """What READ would return for a run just inserted, without reading it back (its fields
    filled in place: a bulk create makes one a run)."""
    row = SimpleNamespace()
    fields = row.__dict__
    fields.update(RUN_DEFAULTS)
    fields.update(columns)
    fields["state_message"] = state.message if state else None
    fields["state_data"] = state.data if state else None
    fields["state_details"] = details_to_json(state.details) if state else None
    fields["work_pool_id"] = pool_id
    fields["work_pool_name"] = pool_name
    return row


def by_idempotency_keys(
    conn: Connection, pairs: set[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """Existing runs by (flow_id, idempotency_key), for these pairs."""
    if not pairs:
        return {}
    flow_ids = sorted({flow_id for flow_id, _ in pairs})
    keys = sorted({key for _, key in pairs})
    rows = conn.execute(READ.where(run.flow_id.in_(flow_ids), run.idempotency_key.in_(keys)))
    found = {(row.flow_id, row.idempotency_key): row for row in rows}
    return {pair: row for pair, row in found.items() if pair in pairs}


def flow_labels(conn: Connection, flow_ids: set[str]) -> dict[str, Any]:
    """The labels of these flows, by id (missing flows left out)."""
    if not flow_ids:
        return {}
    query = sa.select(t.flow.c.id, t.flow.c.labels).where(t.flow.c.id.in_(sorted(flow_ids)))
    return {row.id: row.labels for row in conn.execute(query)}


def _by_idempotency_key(conn: Connection, values: Mapping[str, Any]) -> Row[Any] | None:
    key = values.get("idempotency_key")
    if key is None:
        return None
    return conn.execute(
        READ.where(run.flow_id == values["flow_id"], run.idempotency_key == key)
    ).first()


def update_flow_run(conn: Connection, run_id: str, values: dict[str, Any], now: int) -> Row[Any]:
    if "name" in values and not values["name"]:
        values["name"] = slug()
    result = conn.execute(
        sa.update(t.flow_run).where(run.id == run_id).values(**values, updated=now)
    )
    if result.rowcount == 0:
        raise not_found("flow run", run_id)
    return require_flow_run(conn, run_id)


def delete_flow_run(conn: Connection, run_id: str) -> None:
    if conn.execute(sa.delete(t.flow_run).where(run.id == run_id)).rowcount == 0:
        raise not_found("flow run", run_id)


def start_flow_run(
    conn: Connection,
    values: dict[str, Any],
    initial: State,
    proposed: State,
    now: int,
    work_pool_name: str | None = None,
) -> tuple[Any, bool, Outcome]:
    """create_flow_run, then `proposed` through the core flow policy, in one transaction."""
    row, created = create_flow_run(conn, values, initial, now, work_pool_name)
    outcome = set_state(conn, row.id, proposed, False, now)
    return require_flow_run(conn, row.id), created, outcome


def set_state(conn: Connection, run_id: str, proposed: State, force: bool, now: int) -> Outcome:
    outcome = set_flow_run_state(
        conn, run_id, proposed, FlowPolicy.MINIMAL if force else FlowPolicy.CORE, now
    )
    if outcome is None:
        raise not_found("flow run", run_id)
    return outcome


def resume(conn: Connection, run_id: str, now: int) -> Outcome:
    outcome = resume_flow_run(conn, run_id, now)
    if outcome is None:
        raise not_found("flow run", run_id)
    return outcome


def list_states(
    conn: Connection, run_id: str, limit: int, after: tuple[int, str] | None = None
) -> list[Row[Any]]:
    """The run's states, oldest first; `after`: only those after this (timestamp, id)."""
    require_flow_run(conn, run_id)
    states = t.flow_run_state
    query = sa.select(states).where(states.c.flow_run_id == run_id)
    if after is not None:
        query = query.where(sa.tuple_(states.c.timestamp, states.c.id) > sa.tuple_(*after))
    query = query.order_by(states.c.timestamp, states.c.id).limit(limit)
    return list(conn.execute(query))


def graph(conn: Connection, run_id: str) -> list[Row[Any]]:
    """The run's task runs with their current states."""
    require_flow_run(conn, run_id)
    return plain(conn.execute(task_runs.READ.where(t.task_run.c.flow_run_id == run_id)))


def select_ids(conn: Connection, filters: Filter, after_id: str | None, limit: int) -> list[str]:
    """Ids of matching runs in id order, after `after_id`: the chunks of a bulk call."""
    query = sa.select(run.id).where(flow_run_criteria(conn, filters))
    if after_id is not None:
        query = query.where(run.id > after_id)
    return list(conn.execute(query.order_by(run.id).limit(limit)).scalars())


def bulk_set_state(
    conn: Connection, run_ids: list[str], proposal: State, force: bool, now: int
) -> list[tuple[str, Outcome]]:
    """Orchestrates the proposal for each run on its own; runs deleted meanwhile are skipped."""
    policy = FlowPolicy.MINIMAL if force else FlowPolicy.CORE
    return bulk_set_flow_run_state(conn, run_ids, proposal, policy, now)


def bulk_delete(conn: Connection, run_ids: list[str]) -> list[str]:
    deleted = conn.execute(sa.delete(t.flow_run).where(run.id.in_(run_ids)).returning(run.id))
    return list(deleted.scalars())
