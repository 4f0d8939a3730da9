"""The flow-run change log: one row per flow-run state written, numbered in commit order, which
WatchFlowRuns reads after a cursor (a position).

Why a reader that has read every change up to position P never misses one later (the positions
must be commit-ordered: a change that becomes visible later must have a larger position; UUIDv7
ids and timestamps are minted before commit, so they are not):

* The transitions note each state they write (`note`, in transitions.py: the one place state rows
  are written); the writer (database.py) writes the notes at the end of each call (`flush`),
  in the call's own transaction, just before it commits.
* SQLite: one writer thread commits one group after the other, so positions (AUTOINCREMENT, never
  reused) are assigned in commit order, and a rolled-back call takes its rows with it.
* PostgreSQL (several replicas): `flush` takes a transaction-level advisory lock, then draws the
  positions from a sequence; the lock is held until the transaction ends. PostgreSQL makes a
  transaction visible before it releases its locks, so the next transaction to draw a position
  does so after the previous one is visible: if a reader sees position P, it sees every position
  below P. Only these last statements and the commit take turns; the rest of each transaction
  (locking the run, orchestration, its writes) runs concurrently. The lock is taken last so no
  transaction holds it while waiting for a run's row lock (no deadlock with the batches of the
  background services).
* A reader asks for the head (the highest visible position) and reads up to it, never past it.

Wake-ups: SQLite's writer calls back after a commit that wrote changes (in-process). On PostgreSQL
`flush` also sends NOTIFY (delivered at commit) on CHANNEL with the schema as payload, so every
replica's listener wakes its watchers.

Retention: `prune` deletes changes older than the retention window, always keeping the newest
row; a cursor below the oldest row kept is expired (`expired`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.util import ClauseAdapter

from flowrpc.server.storage import tables as t
from flowrpc.server.storage.rows import plain

PENDING = "flowrpc.pending_changes"  # conn.info key: the notes of the call in progress
CHANGE_LOCK = 0x63686E67  # advisory lock key ("chng"), with the schema's hash
CHANNEL = "flowrpc_changes"
STATE_COLUMNS = {
    "state_id": "id",
    "state_type": "type",
    "state_name": "name",
    "state_timestamp": "timestamp",
}
change = t.flow_run_change
run = t.flow_run
state = t.flow_run_state

SQLITE_INSERT = "INSERT INTO flow_run_change (flow_run_id, state_id, created) VALUES (?, ?, ?)"
PG_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))")
PG_NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', current_schema())")


# ---- writing ----


def note(conn: Connection, pairs: list[tuple[str, str]]) -> None:
    """Notes (flow run id, state id) pairs of states written in this call; `flush` writes them."""
    conn.info.setdefault(PENDING, []).extend(pairs)


def forget(conn: Connection) -> None:
    """Drops the notes of a call that failed (its transaction or savepoint is rolled back)."""
    conn.info.pop(PENDING, None)


def flush(conn: Connection, now: int) -> bool:
    """Writes the call's notes as change rows; True if there were any. Called by the writer as
    the last statements of a call's transaction (see the module docstring)."""
    pending = conn.info.pop(PENDING, None)
    if not pending:
        return False
    rows = [(run_id, state_id, now) for run_id, state_id in pending]
    if conn.dialect.name == "sqlite":
        conn.connection.driver_connection.executemany(SQLITE_INSERT, rows)
        return True
    conn.execute(PG_LOCK, {"key": CHANGE_LOCK})
    conn.execute(
        sa.insert(change),
        [{"flow_run_id": r, "state_id": s, "created": now} for r, s, now in rows],
    )
    conn.execute(PG_NOTIFY)
    return True


def prune(conn: Connection, limit: int, now: int, skip: frozenset[str], retention: int) -> int:
    """Deletes up to `limit` changes older than `retention` microseconds, oldest first, but never
    the newest (it tells which cursors are expired); returns how many. (`skip`: the background
    batches' signature; a change row cannot fail.)"""
    newest = sa.select(sa.func.max(change.c.position)).scalar_subquery()
    oldest = (
        sa.select(change.c.position)
        .where(change.c.created < now - retention, change.c.position < newest)
        .order_by(change.c.position)
        .limit(limit)
    )
    doomed = list(conn.execute(oldest).scalars())
    if doomed:
        conn.execute(sa.delete(change).where(change.c.position.in_(doomed)))
    return len(doomed)


def prune_due(conn: Connection, cutoff: int) -> bool:
    """Whether `prune` has anything to do: the oldest change is older than `cutoff` and is not
    the newest. A read, so an idle server's passes write nothing."""
    oldest = conn.execute(
        sa.select(change.c.created).order_by(change.c.position).limit(2)
    ).scalars()
    created = list(oldest)
    return len(created) == 2 and created[0] < cutoff


# ---- reading ----


def head(conn: Connection) -> int:
    """The highest committed position (0 before the first change)."""
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(change.c.position), 0))).scalar()


def expired(conn: Connection, cursor: int) -> bool:
    """Whether changes after `cursor` may have been pruned."""
    oldest = conn.execute(sa.select(sa.func.min(change.c.position))).scalar()
    return oldest is not None and cursor < oldest - 1


# The run as it was right after each change: the run's row with the state columns of the
# change's state. Filters are adapted to it (`as_of_change`), so a run that failed and was
# rescheduled within a moment still counts as Failed for its Failed change.
_AFTER, _UPTO = sa.bindparam("after"), sa.bindparam("upto")
RUN_AT_CHANGE = (
    sa.select(
        change.c.position,
        *(c for c in run.c if c.name not in STATE_COLUMNS),
        *(state.c[name].label(column) for column, name in STATE_COLUMNS.items()),
        state.c.message.label("state_message"),
        state.c.data.label("state_data"),
        state.c.state_details.label("state_details"),
    )
    .select_from(
        change.join(run, run.c.id == change.c.flow_run_id).join(
            state, state.c.id == change.c.state_id
        )
    )
    .where(change.c.position > _AFTER, change.c.position <= _UPTO)
    .subquery("run_at_change")
)
_EQUIVALENTS = {run.c[column]: {state.c[name]} for column, name in STATE_COLUMNS.items()}


def as_of_change(criteria: Any) -> Any:
    """Flow-run filter criteria (filters.flow_run_criteria) applied to the run as it was right
    after each change instead of as it is now."""
    adapter = ClauseAdapter(
        RUN_AT_CHANGE,
        equivalents=_EQUIVALENTS,
        include_fn=lambda element: getattr(element, "table", None) is run or element is run,
    )
    return adapter.traverse(criteria)


def read_changes(conn: Connection, after: int, upto: int, criteria: Any) -> list[Any]:
    """The changes after `after` up to `upto` (positions) whose run, as it was right after the
    change, matches `criteria` (adapted by as_of_change; None: every change), oldest first, with
    what FlowRun messages show. Changes of runs deleted since are left out."""
    then = RUN_AT_CHANGE.c
    query = (
        sa.select(
            RUN_AT_CHANGE,
            t.work_queue.c.work_pool_id.label("work_pool_id"),
            t.work_pool.c.name.label("work_pool_name"),
        )
        .select_from(
            RUN_AT_CHANGE.outerjoin(
                t.work_queue, t.work_queue.c.id == then.work_queue_id
            ).outerjoin(t.work_pool, t.work_pool.c.id == t.work_queue.c.work_pool_id)
        )
        .order_by(then.position)
    )
    if criteria is not None:
        query = query.where(criteria)
    return plain(conn.execute(query, {"after": after, "upto": upto}))
