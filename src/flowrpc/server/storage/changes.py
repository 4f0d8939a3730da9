"""The flow-run change log: one row per flow-run state written, numbered (`position`) in commit
order, which WatchFlowRuns reads after a cursor (a position).

The numbering must be commit-ordered: a reader that has read every change up to position P must
never later find a change numbered P or lower. Ids, UUIDv7s and timestamps are minted before
commit, so they are not: a transaction that writes first may commit last. Here:

* The transitions note each state they write (`note`, in transitions.py: the one place state rows
  are written); the writer (database.py) writes the notes at the end of each call (`flush`), in
  the call's own transaction.
* SQLite: one writer thread commits one group after the other, so `flush` numbers the rows as it
  writes them (position = the AUTOINCREMENT id, never reused): commit order. A rolled-back call
  takes its rows with it.
* PostgreSQL (several replicas): `flush` writes the rows unnumbered. They are numbered after
  their commit, by `sequence`: one transaction at a time (an advisory lock held to its commit,
  tried, not waited for) numbers every committed, unnumbered row after the highest position. A
  statement sees only committed rows, and a numbering transaction is visible before its lock is
  released, so each numbering starts after the last, and a row committed later gets a later
  position: no reader that has seen position P ever finds a new row at or below P. Writers
  never take turns (numbering under a lock at their commit made 16 concurrent writers 3-10
  times slower); a change waits for the next numbering, which the hub of the replica that wrote
  it runs within milliseconds (and any hub with watchers, and the leader's prune pass).
* A reader asks for the head (the highest position) and reads up to it, never past it.

Wake-ups: the writer calls back after a commit that wrote changes (in-process); on PostgreSQL
that hub then numbers them, and the numbering NOTIFYs CHANNEL with the schema, on which every
replica's hub LISTENs. Writers do not NOTIFY: PostgreSQL serializes the commits of transactions
that do (it made 16 writers a third slower).

Retention: `prune` deletes numbered changes older than the retention window, always keeping the
newest; a cursor below the oldest row kept is expired (`expired`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.util import ClauseAdapter

from flowrpc.server.storage import tables as t
from flowrpc.server.storage.prepared import insert_rows
from flowrpc.server.storage.rows import plain

PENDING = "flowrpc.pending_changes"  # conn.info key: the notes of the call in progress
SEQUENCE_LOCK = 0x63686E67  # advisory lock key ("chng"), with the schema's hash
SEQUENCE_BATCH = 50_000  # rows numbered by one statement at most
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

SQLITE_INSERT = "INSERT INTO flow_run_change (flow_run_id, state_id, created)"
# The single writer's rows are numbered as written: their ids are in commit order.
SQLITE_NUMBER = "UPDATE flow_run_change SET position = id WHERE position IS NULL"
PG_NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', current_schema())")
PG_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))")
PG_TRY_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key, hashtext(current_schema()))")
PG_NUMBER = sa.text(
    """
    UPDATE flow_run_change AS c SET position = numbered.position
    FROM (
        SELECT id, (SELECT coalesce(max(position), 0) FROM flow_run_change)
                   + row_number() OVER (ORDER BY id) AS position
        FROM flow_run_change WHERE position IS NULL ORDER BY id LIMIT :limit
    ) AS numbered
    WHERE c.id = numbered.id
    """
)


# ---- writing ----


def note(conn: Connection, pairs: list[tuple[str, str]]) -> None:
    """Notes (flow run id, state id) pairs of states written in this call; `flush` writes them."""
    conn.info.setdefault(PENDING, []).extend(pairs)


def mark(conn: Connection) -> int:
    """How many notes the call has made so far: `rewind` to it when a savepoint rolls back."""
    return len(conn.info.get(PENDING, ()))


def rewind(conn: Connection, noted: int) -> None:
    """Drops the notes made after `mark` returned `noted` (their rows were rolled back)."""
    del conn.info.get(PENDING, [])[noted:]


def forget(conn: Connection) -> None:
    """Drops the notes of a call that failed (its transaction or savepoint is rolled back)."""
    conn.info.pop(PENDING, None)


def flush(conn: Connection, now: int) -> bool:
    """Writes the call's notes as change rows; True if there were any. Called by the writer at
    the end of each call, in its transaction (see the module docstring)."""
    pending = conn.info.pop(PENDING, None)
    if not pending:
        return False
    rows = [[run_id, state_id, now] for run_id, state_id in pending]
    if conn.dialect.name == "sqlite":
        driver = conn.connection.driver_connection
        insert_rows(driver, SQLITE_INSERT, rows)
        driver.execute(SQLITE_NUMBER)
        return True
    conn.execute(
        sa.insert(change),
        [{"flow_run_id": r, "state_id": s, "created": now} for r, s, now in rows],
    )
    return True


def sequence(conn: Connection, wait: bool = False) -> int:
    """PostgreSQL: numbers the committed, unnumbered changes after the highest position; returns
    how many. When another transaction is numbering, returns 0 at once (it numbers them), or
    with `wait` waits for it and numbers what is left. Run it in a transaction of its own: the
    lock is held until it commits."""
    if conn.dialect.name == "sqlite":
        return 0
    if wait:
        conn.execute(PG_LOCK, {"key": SEQUENCE_LOCK})
    elif not conn.execute(PG_TRY_LOCK, {"key": SEQUENCE_LOCK}).scalar():
        return 0
    numbered = conn.execute(PG_NUMBER, {"limit": SEQUENCE_BATCH}).rowcount
    if numbered:
        conn.execute(PG_NOTIFY)
    return numbered


def prune(conn: Connection, limit: int, now: int, skip: frozenset[str], retention: int) -> int:
    """Deletes up to `limit` numbered changes older than `retention` microseconds, oldest first,
    but never the newest (it tells which cursors are expired); returns how many. (`skip`: the
    background batches' signature; a change row cannot fail.)"""
    newest = sa.select(sa.func.max(change.c.position)).scalar_subquery()
    oldest = (
        sa.select(change.c.id)
        .where(
            change.c.position.is_not(None),
            change.c.created < now - retention,
            change.c.position < newest,
        )
        .order_by(change.c.position)
        .limit(limit)
    )
    doomed = list(conn.execute(oldest).scalars())
    if doomed:
        conn.execute(sa.delete(change).where(change.c.id.in_(doomed)))
    return len(doomed)


def prune_due(conn: Connection, cutoff: int) -> bool:
    """Whether `prune` has anything to do: the oldest numbered change is older than `cutoff` and
    is not the newest. A read, so an idle server's passes write nothing."""
    created = list(
        conn.execute(
            sa.select(change.c.created)
            .where(change.c.position.is_not(None))
            .order_by(change.c.position)
            .limit(2)
        ).scalars()
    )
    return len(created) == 2 and created[0] < cutoff


# ---- reading ----


def head(conn: Connection) -> int:
    """The highest committed position (0 before the first change)."""
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(change.c.position), 0))).scalar()


def expired(conn: Connection, cursor: int) -> bool:
    """Whether changes after `cursor` may have been pruned."""
    # min() over the unique index skips NULLs (unnumbered rows).
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
