"""Task runs."""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import AlreadyExists, not_found, quote
from flowrpc.server.ids import new_id
from flowrpc.server.names import slug
from flowrpc.server.orchestration import TaskPolicy
from flowrpc.server.orchestration.records import State
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import savepoint
from flowrpc.server.storage.filters import Filter, compiler_for
from flowrpc.server.storage.prepared import Prepared
from flowrpc.server.storage.rows import plain
from flowrpc.server.storage.transitions import (
    FlowRunFacts,
    NewTaskRun,
    Outcome,
    decide_task_run,
    insert_task_run,
    set_task_run_state,
    write_task_runs,
)

task = t.task_run.c

READ = sa.select(
    t.task_run,
    t.task_run_state.c.message.label("state_message"),
    t.task_run_state.c.data.label("state_data"),
    t.task_run_state.c.state_details.label("state_details"),
).select_from(t.task_run.outerjoin(t.task_run_state, t.task_run_state.c.id == task.state_id))
# The statements of every task run's create and start, prepared (see storage/prepared.py).
GET = Prepared(READ.where(task.id == sa.bindparam("task_run_id")))
EXISTS = Prepared(sa.select(task.id).where(task.id == sa.bindparam("task_run_id")))
BY_KEY = Prepared(
    sa.select(task.id).where(
        task.flow_run_id == sa.bindparam("flow_run_id"),
        task.task_key == sa.bindparam("task_key"),
        task.dynamic_key == sa.bindparam("dynamic_key"),
    )
)


def create_task_run(
    conn: Connection, values: dict[str, Any], state: State, now: int
) -> tuple[Any, bool]:
    """Inserts a task run and applies its initial state, forced. Idempotent on
    (flow_run_id, task_key, dynamic_key)."""
    task_run_id, outcomes = _insert(conn, values, [(state, TaskPolicy.MINIMAL)], now)
    return get_task_run(conn, task_run_id), outcomes is not None


def set_states(
    conn: Connection, proposals: list[tuple[str, State, bool]], now: int
) -> list[Outcome]:
    """set_state for each (task_run_id, state, force), in order, in one transaction. The flow
    runs' facts are read once per flow run: task-run transitions do not change them."""
    flow_runs = FlowRunFacts(conn)
    return [
        set_state(conn, run_id, state, force, now, flow_runs) for run_id, state, force in proposals
    ]


class Start(NamedTuple):
    """One start: the run to create (or find), its initial state, the Running proposal, and the
    states proposed after it (`then`)."""

    values: dict[str, Any]
    initial: State
    proposed: State
    then: list[State]


def start_task_run(conn: Connection, start: Start, now: int) -> tuple[Any, bool, list[Outcome]]:
    """create_task_run, then the start's proposals through the core task policy, in one
    transaction: the run read back, whether it was created, the outcome of each proposal."""
    task_run_id, created, outcomes = _start(conn, start, now, FlowRunFacts(conn))
    return get_task_run(conn, task_run_id), created, outcomes


def start_task_runs(
    conn: Connection, starts: list[Start], now: int
) -> list[tuple[str, bool, list[Outcome]]]:
    """start_task_run for each start, in order, in one transaction; each start's (task run id,
    created, outcomes), not the run read back. The flow runs' facts are read once per flow run,
    as in set_states. New runs are decided as they come and written together (_NewRuns)."""
    flow_runs = FlowRunFacts(conn)
    results: list[tuple[str, bool, list[Outcome]]] = []
    new_runs = _NewRuns()
    for start in starts:
        if new_runs.read_by(start):
            new_runs.write(conn, results, now, flow_runs)
        new = None if _cache_keyed(start) else _decide_new(conn, start, now, flow_runs)
        if new is None:
            results.append(_start(conn, start, now, flow_runs))
        else:
            new_runs.add(len(results), start, new)
            results.append((new.row["id"], True, new.outcomes[1:]))
    new_runs.write(conn, results, now, flow_runs)
    return results


class _NewRuns:
    """New runs of a StartTaskRuns call decided and not written yet: their rows go in one
    insert and their states in another, instead of two inserts a run. Written before a start
    that could read them (one of the same key, or one with a cache key: a Completed among them
    may be its cache entry), and at the end."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, Start, NewTaskRun]] = []  # (index in the results, ...)
        self.keys: set[tuple[Any, ...]] = set()

    def add(self, index: int, start: Start, new: NewTaskRun) -> None:
        self.runs.append((index, start, new))
        self.keys.add(tuple(_key(start.values).values()))

    def read_by(self, start: Start) -> bool:
        if not self.runs:
            return False
        return _cache_keyed(start) or tuple(_key(start.values).values()) in self.keys

    def write(
        self,
        conn: Connection,
        results: list[tuple[str, bool, list[Outcome]]],
        now: int,
        flow_runs: FlowRunFacts,
    ) -> None:
        """On a conflict (a key taken by a concurrent create on PostgreSQL, an id by another
        run), nothing of them is kept and each start is made on its own, as StartTaskRun makes
        it: finding the key's run, or ALREADY_EXISTS."""
        if not self.runs:
            return
        try:
            with savepoint(conn, "flowrpc_starts"):
                write_task_runs(conn, [new for _, _, new in self.runs], now)
        except sa.exc.IntegrityError:
            for index, start, _ in self.runs:
                results[index] = _start(conn, start, now, flow_runs)
        self.runs.clear()
        self.keys.clear()


def _cache_keyed(start: Start) -> bool:
    """Whether a state of the start reads or writes a cache entry."""
    states = (start.proposed, *start.then)
    return any(state.details.cache_key for state in states)


def _decide_new(
    conn: Connection, start: Start, now: int, flow_runs: FlowRunFacts
) -> NewTaskRun | None:
    """The start's new run decided, not written; None when its key's run exists or it has no
    key (those go through _start)."""
    values = start.values
    if not values.get("flow_run_id") or _key_run(conn, values, flow_runs) is not None:
        return None
    return decide_task_run(conn, _new_values(values, now), _proposals(start), now, flow_runs)


def _start(
    conn: Connection, start: Start, now: int, flow_runs: FlowRunFacts
) -> tuple[str, bool, list[Outcome]]:
    """A new run gets all its states decided before its row is written (one row, one insert
    of its states: transitions.insert_task_run); an existing run gets its proposals one by one,
    as SetTaskRunState would."""
    task_run_id, outcomes = _insert(conn, start.values, _proposals(start), now, flow_runs)
    if outcomes is None:  # the run existed: only the proposals apply
        outcomes = [
            set_state(conn, task_run_id, state, False, now, flow_runs)
            for state in (start.proposed, *start.then)
        ]
        return task_run_id, False, outcomes
    return task_run_id, True, outcomes[1:]


def _proposals(start: Start) -> list[tuple[State, TaskPolicy]]:
    """The initial state (forced), then the Running proposal and the `then` states."""
    proposed = [(state, TaskPolicy.CORE) for state in (start.proposed, *start.then)]
    return [(start.initial, TaskPolicy.MINIMAL), *proposed]


def _insert(
    conn: Connection,
    values: dict[str, Any],
    proposals: list[tuple[State, TaskPolicy]],
    now: int,
    flow_runs: FlowRunFacts | None = None,
) -> tuple[str, list[Outcome] | None]:
    """The run with this key (and None), else a new one with `proposals` applied in order
    (and their outcomes). The new run's id is values["id"] when the client minted one."""
    flow_runs = flow_runs or FlowRunFacts(conn)
    keyed = bool(values.get("flow_run_id"))
    if keyed and (existing := _key_run(conn, values, flow_runs)) is not None:
        return existing, None
    minted = values.get("id")  # by the client; else the server mints one
    values = _new_values(values, now)
    task_run_id = values["id"]
    # Two conflicts show as the insert's IntegrityError: on PostgreSQL a concurrent create of
    # the same key may commit first (then return its run), and a client-minted id may be
    # another run's (ALREADY_EXISTS). PostgreSQL needs a savepoint to read on after it; SQLite
    # has one writer (the key was just looked up) and undoes only the failed statement (the
    # run's row, insert_task_run's first write).
    recoverable = (keyed or minted) and conn.dialect.name != "sqlite"
    try:
        with conn.begin_nested() if recoverable else contextlib.nullcontext():
            outcomes = insert_task_run(conn, values, proposals, now, flow_runs)
    except sa.exc.IntegrityError:
        if recoverable and keyed and (existing := BY_KEY.first(conn, _key(values))) is not None:
            return existing.id, None
        if minted and EXISTS.first(conn, {"task_run_id": minted}) is not None:
            raise _id_taken(minted) from None
        raise
    return task_run_id, outcomes


def _key_run(conn: Connection, values: dict[str, Any], flow_runs: FlowRunFacts) -> str | None:
    """The id of the run with the key of `values` (which names a flow run), None when there is
    none; NOT_FOUND when the flow run does not exist."""
    if flow_runs.get(values["flow_run_id"]) is None:
        raise not_found("flow run", values["flow_run_id"])
    existing = BY_KEY.first(conn, _key(values))
    return existing.id if existing is not None else None


def _new_values(values: dict[str, Any], now: int) -> dict[str, Any]:
    """A new run's columns: the id the client minted, else a new one; its name, else a slug."""
    return {
        **values,
        "flow_run_id": values.get("flow_run_id") or None,
        "id": values.get("id") or new_id(),
        "created": now,
        "updated": now,
        "name": values.get("name") or slug(),
    }


def _id_taken(task_run_id: str) -> AlreadyExists:
    return AlreadyExists(
        "TASK_RUN_ALREADY_EXISTS",
        f"Task run id {quote(task_run_id)} is taken by another task run (of another key): mint "
        "another id, or leave id empty for the server to mint one.",
    )


def _key(values: dict[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in ("flow_run_id", "task_key", "dynamic_key")}


def get_task_run(conn: Connection, task_run_id: str) -> Any:
    row = GET.first(conn, {"task_run_id": task_run_id})
    if row is None:
        raise not_found("task run", task_run_id)
    return row


def list_task_runs(
    conn: Connection, filters: Filter, limit: int, offset: int, after: str | None = None
) -> list[Row[Any]]:
    """The matching task runs, newest first; `after`: only those older than this run id."""
    compiler = compiler_for(conn)
    criteria = [] if after is None else [task.id < after]
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
    conn: Connection,
    task_run_id: str,
    proposed: State,
    force: bool,
    now: int,
    flow_runs: FlowRunFacts | None = None,
) -> Outcome:
    policy = TaskPolicy.MINIMAL if force else TaskPolicy.CORE
    outcome = set_task_run_state(conn, task_run_id, proposed, policy, now, flow_runs)
    if outcome is None:
        raise not_found("task run", task_run_id)
    return outcome
