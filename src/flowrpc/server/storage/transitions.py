"""Applying orchestration inside a write transaction: lock the run, load the facts, let
orchestration decide, write the decision (new state row and run bookkeeping) atomically."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowrpc.server.ids import new_id
from flowrpc.server.orchestration import (
    Decision,
    FlowPolicy,
    TaskPolicy,
    orchestrate_flow_run,
    orchestrate_task_run,
    resume_proposal,
)
from flowrpc.server.orchestration.records import (
    FlowRunPolicy,
    FlowRunRecord,
    State,
    StateType,
    TaskRunRecord,
)
from flowrpc.server.storage import changes
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.prepared import Prepared, Row, insert_defaults
from flowrpc.server.storage.rows import (
    copy_record,
    flow_run_record,
    policy_from_json,
    record_changes,
    record_columns,
    state_from_row,
    state_values,
    task_run_record,
)


@dataclass
class Outcome:
    """A decision and the run's current state after it (None if the run has no state)."""

    decision: Decision
    state: State | None


def _locking(runs: sa.Table, states: sa.Table, record: type, which: Any) -> sa.Select[Any]:
    """The run columns orchestration reads (the record's fields), with the current state's
    columns (prefixed `current_`); the runs' rows locked until the transaction ends (PostgreSQL;
    SQLite has one writer). Prepared once: only ids vary."""
    return (
        sa.select(
            *(runs.c[f.name] for f in dataclasses.fields(record)),
            *(c.label(f"current_{c.name}") for c in states.c),
        )
        .outerjoin(states, states.c.id == runs.c.state_id)
        .where(which)
        .with_for_update(of=runs)
    )


STATES = {t.flow_run: t.flow_run_state, t.task_run: t.task_run_state}
OWNER = {t.flow_run: "flow_run_id", t.task_run: "task_run_id"}  # the state column naming its run
RECORDS = {t.flow_run: FlowRunRecord, t.task_run: TaskRunRecord}
LOCK = {
    runs: Prepared(_locking(runs, STATES[runs], RECORDS[runs], runs.c.id == sa.bindparam("run_id")))
    for runs in STATES
}
# In id order, so that concurrent bulk calls on PostgreSQL take their locks in the same order.
LOCK_FLOW_RUNS = _locking(
    t.flow_run,
    t.flow_run_state,
    FlowRunRecord,
    t.flow_run.c.id.in_(sa.bindparam("run_ids", expanding=True)),
).order_by(t.flow_run.c.id)
UPDATE = {
    runs: Prepared(sa.update(runs).where(runs.c.id == sa.bindparam("run_id"))) for runs in STATES
}
INSERT = {table: Prepared(sa.insert(table)) for table in (t.flow_run, t.task_run, *STATES.values())}
TASK_RUN_DEFAULTS = insert_defaults(t.task_run)  # a new task run's columns before its values
FLOW_RUN = Prepared(
    sa.select(*(t.flow_run.c[f.name] for f in dataclasses.fields(FlowRunRecord))).where(
        t.flow_run.c.id == sa.bindparam("run_id")
    )
)
_cache = t.task_run_state_cache
CACHED = Prepared(
    sa.select(t.task_run_state)
    .join(_cache, _cache.c.task_run_state_id == t.task_run_state.c.id)
    .where(
        _cache.c.cache_key == sa.bindparam("cache_key"),
        sa.or_(
            _cache.c.cache_expiration.is_(None), _cache.c.cache_expiration > sa.bindparam("now")
        ),
    )
    .order_by(_cache.c.created.desc())  # the newest first (read with first(): no LIMIT bind)
)
CACHE_INSERT = Prepared(sa.insert(_cache))


def _locked(conn: Connection, runs: sa.Table, run_id: str) -> tuple[Any, State | None]:
    """The run's row (None if there is no such run) and its current state."""
    row = LOCK[runs].first(conn, {"run_id": run_id})
    return row, _current_state(conn, runs, row)


def _current_state(conn: Connection, runs: sa.Table, row: Any) -> State | None:
    if row is None or row.state_id is None:
        return None
    if row.current_id != row.state_id:
        # PostgreSQL waited for a concurrent transition's lock and re-checked the join against
        # the run's new version: the state it joined is gone, so read the current one.
        states = STATES[runs]
        current = conn.execute(sa.select(states).where(states.c.id == row.state_id)).one()
        return state_from_row(current)
    return state_from_row(row, prefix="current_")


@dataclass
class _Writes:
    """The new state rows and run changes of one or many decisions, written together: one
    statement per kind, with many parameter sets."""

    runs: sa.Table
    states: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[frozenset[str], list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, before: Any, run: Any, decision: Decision, now: int) -> None:
        if decision.state is not None:
            self.states.append({**state_values(decision.state), OWNER[self.runs]: run.id})
            run.state_id = decision.state.id
        if changes := record_changes(before, run):
            changes.update(updated=now, run_id=run.id)
            self.changes.setdefault(frozenset(changes), []).append(changes)

    def flush(self, conn: Connection) -> None:
        INSERT[STATES[self.runs]].execute(conn, self.states)
        if self.runs is t.flow_run and self.states:  # WatchFlowRuns' change log
            changes.note(conn, [(s["flow_run_id"], s["id"]) for s in self.states])
        for same_columns in self.changes.values():
            UPDATE[self.runs].execute(conn, same_columns)


def set_flow_run_state(
    conn: Connection, run_id: str, proposed: State, policy: FlowPolicy, now: int
) -> Outcome | None:
    """Orchestrates one proposal; None if the run does not exist."""
    row, initial = _locked(conn, t.flow_run, run_id)
    if row is None:
        return None
    writes = _Writes(t.flow_run)
    outcome = _decide(row, initial, proposed, policy, now, writes)
    writes.flush(conn)
    update_parent_task(conn, row.parent_task_run_id, outcome.decision, now)
    return outcome


def bulk_set_flow_run_state(
    conn: Connection, run_ids: list[str], proposal: State, policy: FlowPolicy, now: int
) -> list[tuple[str, Outcome]]:
    """set_flow_run_state for many runs, each orchestrated on its own but read with one query and
    written with one statement per kind. Runs that do not exist are left out."""
    rows = conn.execute(LOCK_FLOW_RUNS, {"run_ids": run_ids}).all()
    writes = _Writes(t.flow_run)
    outcomes = []
    for row in rows:
        own = proposal.copy(id=new_id(), timestamp=now)
        initial = _current_state(conn, t.flow_run, row)
        outcomes.append((row.id, _decide(row, initial, own, policy, now, writes)))
    writes.flush(conn)
    for row, (_, outcome) in zip(rows, outcomes, strict=True):
        update_parent_task(conn, row.parent_task_run_id, outcome.decision, now)
    return outcomes


def _decide(
    row: Any, initial: State | None, proposed: State, policy: FlowPolicy, now: int, writes: _Writes
) -> Outcome:
    run = flow_run_record(row)
    before = copy_record(run)
    decision = orchestrate_flow_run(run, initial, proposed, policy=policy, now=now)
    writes.add(before, run, decision, now)
    return Outcome(decision, decision.state or initial)


def update_parent_task(
    conn: Connection, parent_task_run_id: str | None, decision: Decision, now: int
) -> None:
    """A subflow's new state is mirrored, forced, on the task run that stands for it."""
    if decision.parent_task_state is not None and parent_task_run_id is not None:
        set_task_run_state(
            conn, parent_task_run_id, decision.parent_task_state, TaskPolicy.MINIMAL, now
        )


def insert_flow_run(
    conn: Connection, values: dict[str, Any], first: State, now: int
) -> tuple[dict[str, Any], State | None]:
    """Inserts a run in its first state, applied as a forced transition; returns the run's
    columns and its state. The bookkeeping is decided before the insert, so the run row is
    written once, with no lock and no re-read."""
    columns, decision = first_transition(values, first, now)
    INSERT[t.flow_run].execute(conn, columns)
    if decision.state is not None:
        INSERT[t.flow_run_state].execute(conn, first_state_row(columns, decision))
        changes.note(conn, [(columns["id"], decision.state.id)])
    update_parent_task(conn, columns["parent_task_run_id"], decision, now)
    return columns, decision.state


def first_transition(
    values: dict[str, Any], first: State, now: int
) -> tuple[dict[str, Any], Decision]:
    """A new run's columns and the decision on its first state, forced (nothing written):
    insert_flow_run's decision, which bulk creates write many at a time."""
    run = FlowRunRecord(
        id=values["id"],
        flow_id=values["flow_id"],
        deployment_id=values.get("deployment_id"),
        parent_task_run_id=values.get("parent_task_run_id"),
        infrastructure_pid=values.get("infrastructure_pid"),
        empirical_policy=policy_from_json(FlowRunPolicy, values.get("empirical_policy")),
    )
    decision = orchestrate_flow_run(run, None, first, policy=FlowPolicy.MINIMAL, now=now)
    return {**values, **record_columns(run)}, decision


def first_state_row(columns: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """The state row a first transition writes (its decision has a state)."""
    return {**state_values(decision.state), "flow_run_id": columns["id"]}  # type: ignore[arg-type]


def resume_flow_run(conn: Connection, run_id: str, now: int) -> Outcome | None:
    row, initial = _locked(conn, t.flow_run, run_id)
    if row is None:
        return None
    proposal = resume_proposal(flow_run_record(row), initial, now)
    if isinstance(proposal, Decision):
        return Outcome(proposal, initial)
    return set_flow_run_state(conn, run_id, proposal, FlowPolicy.CORE, now)


def set_task_run_state(
    conn: Connection,
    task_run_id: str,
    proposed: State,
    policy: TaskPolicy,
    now: int,
    flow_runs: FlowRunFacts | None = None,
) -> Outcome | None:
    """Orchestrates one proposal; None if the run does not exist. `flow_runs` may hold the flow
    runs' facts read earlier in the transaction (task-run transitions leave them unchanged)."""
    row, initial = _locked(conn, t.task_run, task_run_id)
    if row is None:
        return None
    task_run = task_run_record(row)
    before = copy_record(task_run)
    decision = orchestrate_task_run(
        task_run,
        initial,
        proposed,
        policy=policy,
        now=now,
        flow_run=(flow_runs or FlowRunFacts(conn)).get(task_run.flow_run_id),
        cached_state=_cached_state(conn, proposed, now),
    )
    writes = _Writes(t.task_run)
    writes.add(before, task_run, decision, now)
    writes.flush(conn)
    _insert_cache_entry(conn, decision, now)
    return Outcome(decision, decision.state or initial)


def insert_task_run(
    conn: Connection,
    values: dict[str, Any],
    proposals: list[tuple[State, TaskPolicy]],
    now: int,
    flow_runs: FlowRunFacts,
) -> list[Outcome]:
    """Inserts a new task run (values has every column it is given, its id included) after
    orchestrating its first proposals in order, each over the run as the one before left it:
    what set_task_run_state would decide one by one, but the run row written once, with no
    lock (nobody else sees it yet) and no re-read. The caller inserts nothing else first."""
    new = decide_task_run(conn, values, proposals, now, flow_runs)
    write_task_runs(conn, [new], now)
    return new.outcomes


@dataclass
class NewTaskRun:
    """A new task run decided (its row and its states' rows) and not written yet."""

    row: dict[str, Any]
    states: list[dict[str, Any]]
    outcomes: list[Outcome]


def decide_task_run(
    conn: Connection,
    values: dict[str, Any],
    proposals: list[tuple[State, TaskPolicy]],
    now: int,
    flow_runs: FlowRunFacts,
) -> NewTaskRun:
    """insert_task_run's decisions, written by write_task_runs (nothing written here)."""
    task_run = task_run_record(Row({**TASK_RUN_DEFAULTS, **values}))
    inserted = copy_record(task_run)
    flow_run = flow_runs.get(task_run.flow_run_id)
    current: State | None = None
    states = []
    decided: list[tuple[Decision, State | None]] = []
    for proposed, policy in proposals:
        decision = orchestrate_task_run(
            task_run,
            current,
            proposed,
            policy=policy,
            now=now,
            flow_run=flow_run,
            cached_state=_cached_state(conn, proposed, now, decided),
        )
        if decision.state is not None:
            states.append({**state_values(decision.state), "task_run_id": task_run.id})
            task_run.state_id = decision.state.id
            current = decision.state
        decided.append((decision, current))
    row = {**values, **record_changes(inserted, task_run)}
    return NewTaskRun(row, states, [Outcome(decision, state) for decision, state in decided])


def write_task_runs(conn: Connection, runs: list[NewTaskRun], now: int) -> None:
    """Writes decided new runs: their rows in one statement (one per set of columns), then
    their states in one, then their cache entries. The rows go first: if one conflicts (a key
    or an id taken), nothing of them is written but on PostgreSQL the transaction needs a
    savepoint to go on."""
    columns: dict[frozenset[str], list[dict[str, Any]]] = {}
    for run in runs:
        columns.setdefault(frozenset(run.row), []).append(run.row)
    for rows in columns.values():
        INSERT[t.task_run].execute(conn, rows)
    INSERT[t.task_run_state].execute(conn, [state for run in runs for state in run.states])
    for run in runs:
        for outcome in run.outcomes:
            _insert_cache_entry(conn, outcome.decision, now)


def _insert_cache_entry(conn: Connection, decision: Decision, now: int) -> None:
    if decision.cache_insert is not None and decision.state is not None:
        key, expiration = decision.cache_insert
        CACHE_INSERT.execute(
            conn,
            {
                "id": decision.state.id,
                "created": now,
                "cache_key": key,
                "cache_expiration": expiration,
                "task_run_state_id": decision.state.id,
            },
        )


class FlowRunFacts:
    """The enclosing flow runs' records task orchestration reads, each read once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._records: dict[str, FlowRunRecord | None] = {}

    def get(self, flow_run_id: str | None) -> FlowRunRecord | None:
        """The flow run's record; None when there is no id or no such run."""
        if flow_run_id is None:
            return None
        if flow_run_id not in self._records:
            row = FLOW_RUN.first(self.conn, {"run_id": flow_run_id})
            self._records[flow_run_id] = flow_run_record(row) if row else None
        return self._records[flow_run_id]


def _cached_state(
    conn: Connection,
    proposed: State,
    now: int,
    unwritten: Sequence[tuple[Decision, State | None]] = (),
) -> State | None:
    """The valid cached COMPLETED state for the proposal's cache key, if it may be used. The
    newest entry may be among `unwritten` (a new run's earlier decisions, not inserted yet)."""
    details = proposed.details
    if proposed.type != StateType.RUNNING or not details.cache_key or details.refresh_cache:
        return None
    for decision, _ in reversed(unwritten):
        if decision.cache_insert is not None and decision.cache_insert[0] == details.cache_key:
            expiration = decision.cache_insert[1]
            if expiration is None or expiration > now:
                return decision.state
    row = CACHED.first(conn, {"cache_key": details.cache_key, "now": now})
    return state_from_row(row) if row else None
