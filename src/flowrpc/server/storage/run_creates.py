"""Many runs created in one write call (CreateFlowRuns): each as its single create creates it.

Fast path: a message's runs are planned, then written. Planning reads the flows, deployments,
work queues and used idempotency keys of all the runs with a few queries (the plan's facts),
decides each run's first state with the single create's own functions (`new_run_values`,
`merge_deployment`, `first_transition`) and binds its row. A run that cannot be created (unknown
flow, deployment, pool or queue) is known before anything of it is written, so it fails alone.
A message is planned on a reader thread while the writer writes the one before (`plan_ahead`):
the write reads the facts again and, when they are unchanged, only inserts the rows; else (or
when only the writer may plan: a work queue to create) the writer plans again itself.

Exact path: anything else that goes wrong (a run over the run budget after its deployment's
values were merged in, a database error such as a concurrent create of the same idempotency
key) rolls the fast path back, and every run is created again through its single create's
storage write, each in a savepoint of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowrpc.server.errors import ServiceError, not_found
from flowrpc.server.orchestration import Decision
from flowrpc.server.orchestration.records import State
from flowrpc.server.storage import changes, deployments, flow_runs
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import caller_error, savepoint
from flowrpc.server.storage.prepared import Bound
from flowrpc.server.storage.transitions import (
    INSERT,
    first_state_row,
    first_transition,
    update_parent_task,
)
from flowrpc.server.storage.work_pools import resolve_work_queue

Write = tuple[Callable[..., Any], tuple[Any, ...]]  # a single create's storage write and args
Outcome = tuple[Any, bool] | ServiceError  # (run, created) or why not


@dataclass
class RunCreate:
    """One run to create: its single create's write (the exact path), and what that write
    would be given (the fast path)."""

    write: Write
    values: dict[str, Any]  # the create's column values; copied before any change
    state: State
    now: int
    deployment_id: str | None = None  # a run of this deployment; else a run of values' flow
    work_pool_name: str | None = None  # a run of a flow: its pool


class _Retry(Exception):
    """The fast path cannot create this batch as the single creates would: take the exact one."""


# Checks a created run (row) of a deployment against the run budget; raises ServiceError.
BudgetCheck = Callable[[Any], None]


@dataclass
class Facts:
    """What a plan was made from, each read with one query: read again before the plan is
    written by another transaction than the one that made it."""

    flow_ids: set[str]
    labels: dict[str, Any]  # of the flows found
    deployment_ids: set[str]
    deployments: dict[str, Any]  # FOR_RUN rows of the deployments found
    queues: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # by (pool, name, create)
    keys: set[tuple[str, str]] = field(default_factory=set)  # (flow_id, idempotency_key)
    used: dict[tuple[str, str], Any] = field(default_factory=dict)  # runs of the keys found

    def current(self, conn: Connection) -> bool:
        try:
            queues = {key: resolve_work_queue(conn, *key[:2]) for key in self.queues}
        except ServiceError:
            return False
        return (
            queues == self.queues
            and flow_runs.flow_labels(conn, self.flow_ids) == self.labels
            and deployments.for_runs(conn, self.deployment_ids) == self.deployments
            and flow_runs.by_idempotency_keys(conn, self.keys) == self.used
        )


@dataclass
class Plan:
    """A message's runs ready to write: their outcomes, bound rows, and what the write does
    besides inserting them."""

    facts: Facts
    outcomes: list[Outcome]
    runs: list[Bound | None]  # a statement per set of columns given
    states: Bound | None
    noted: list[tuple[str, str]]  # (run id, state id) of the states written
    parents: list[tuple[str, Decision, int]]  # subflows' parent task runs to update


def plan_ahead(
    conn: Connection, creates: list[RunCreate | ServiceError], check: BudgetCheck
) -> Plan | None:
    """On a reader: the plan of these runs, or None when only the writer can make it."""
    try:
        return _plan(conn, creates, check, writer=False)
    except (_Retry, sa.exc.DBAPIError):
        return None


def create_flow_runs(
    conn: Connection,
    creates: list[RunCreate | ServiceError],
    check: BudgetCheck,
    ahead: Plan | None = None,
) -> list[Outcome]:
    """Creates the runs in order; each outcome is (run, created) or the run's error (an error
    given in place of a create is passed through). `ahead`: their plan_ahead, if made."""
    try:
        with savepoint(conn, "flowrpc_batch"):
            plan = ahead
            if plan is None or not plan.facts.current(conn):
                plan = _plan(conn, creates, check, writer=True)
            for bound in plan.runs:
                INSERT[t.flow_run].insert(conn, bound)
            INSERT[t.flow_run_state].insert(conn, plan.states)
            changes.note(conn, plan.noted)
            for parent_task_run_id, decision, now in plan.parents:
                update_parent_task(conn, parent_task_run_id, decision, now)
            return plan.outcomes
    except (_Retry, sa.exc.DBAPIError):
        return create_each(conn, [c if isinstance(c, ServiceError) else c.write for c in creates])


def create_each(conn: Connection, writes: list[Write | ServiceError]) -> list[Outcome]:
    """Runs each create write (`fn(conn, *args)`, as a single create runs it) in a savepoint of
    its own, in order: a run that fails leaves nothing behind and takes no other run with it."""
    outcomes: list[Outcome] = []
    for write in writes:
        if isinstance(write, ServiceError):
            outcomes.append(write)
            continue
        fn, args = write
        try:
            with savepoint(conn):
                try:
                    outcomes.append(fn(conn, *args))
                except sa.exc.DBAPIError as error:
                    caller_error(error)  # a value the database cannot store is the caller's
                    raise
        except ServiceError as error:
            outcomes.append(error)
    return outcomes


@dataclass
class _Planned:
    index: int
    create: RunCreate
    values: dict[str, Any]
    flow_labels: dict[str, Any] | None
    queue: Any
    pool_name: str | None


def _plan(
    conn: Connection, creates: list[RunCreate | ServiceError], check: BudgetCheck, writer: bool
) -> Plan:
    outcomes: list[Outcome | None] = [None] * len(creates)
    facts, planned = _resolve(conn, creates, outcomes, writer)
    facts.keys = {key for p in planned if (key := _key(p.values))}
    facts.used = flow_runs.by_idempotency_keys(conn, facts.keys)
    if not writer:  # the facts are read: a snapshot held on would keep SQLite's WAL growing
        conn.rollback()
    used = dict(facts.used)
    runs: dict[frozenset[str], list[dict[str, Any]]] = {}  # by columns given: one statement each
    states, parents = [], []
    for p in planned:
        key = _key(p.values)
        if key in used:
            outcomes[p.index] = (used[key], False)
            continue
        columns, decision = first_transition(
            flow_runs.new_run_values(p.values, p.flow_labels, p.create.now, p.queue),
            p.create.state,
            p.create.now,
        )
        pool_id = p.queue.work_pool_id if p.queue is not None else None
        row = flow_runs.inserted_row(columns, decision.state, pool_id, p.pool_name)
        if p.create.deployment_id is not None:
            try:
                check(row)
            except ServiceError:
                raise _Retry from None  # the single create inserts, then rolls back: do that
        runs.setdefault(frozenset(columns), []).append(columns)
        if decision.state is not None:
            states.append(first_state_row(columns, decision))
        if decision.parent_task_state is not None:
            parents.append((columns["parent_task_run_id"], decision, p.create.now))
        if key is not None:
            used[key] = row  # a later run with the key gets this one
        outcomes[p.index] = (row, True)
    return Plan(
        facts,
        outcomes,  # type: ignore[arg-type]
        # columns left out get their defaults, as one by one
        [INSERT[t.flow_run].bind(conn.dialect, same_columns) for same_columns in runs.values()],
        INSERT[t.flow_run_state].bind(conn.dialect, states),
        [(state["flow_run_id"], state["id"]) for state in states],
        parents,
    )


def _key(values: dict[str, Any]) -> tuple[str, str] | None:
    key = values.get("idempotency_key")
    return None if key is None else (values["flow_id"], key)


def _resolve(
    conn: Connection, creates: list[RunCreate | ServiceError], outcomes: list[Any], writer: bool
) -> tuple[Facts, list[_Planned]]:
    """Each run's flow or deployment and work queue, read once for all the runs; a run whose
    flow, deployment, pool or queue does not exist gets its error in `outcomes` (nothing of it
    is written, as in its single create). Off the writer a queue that is not there is left for
    the writer, which may create it."""
    ok = [(i, c) for i, c in enumerate(creates) if not isinstance(c, ServiceError)]
    for i, c in enumerate(creates):
        if isinstance(c, ServiceError):
            outcomes[i] = c
    flow_ids = {c.values["flow_id"] for _, c in ok if not c.deployment_id}
    deployment_ids = {c.deployment_id for _, c in ok if c.deployment_id}
    facts = Facts(
        flow_ids,
        flow_runs.flow_labels(conn, flow_ids),
        deployment_ids,
        deployments.for_runs(conn, deployment_ids),
    )
    queues: dict[tuple[Any, ...], Any] = {}  # resolved, or why not

    def queue(pool: str | None, name: str | None, create: bool, now: int) -> Any:
        if (pool, name, create) not in queues:
            try:
                queues[pool, name, create] = resolve_work_queue(
                    conn, pool, name, create and writer, now
                )
            except ServiceError as error:
                if not writer:
                    raise _Retry from None
                queues[pool, name, create] = error
        found_queue = queues[pool, name, create]
        if isinstance(found_queue, ServiceError):
            raise found_queue
        return found_queue

    planned = []
    for index, create in ok:
        values = dict(create.values)
        try:
            if create.deployment_id is not None:
                deployment = facts.deployments.get(create.deployment_id)
                if deployment is None:
                    raise not_found("deployment", create.deployment_id)
                queue_name = deployments.merge_deployment(values, deployment)
                pool = deployment.work_pool_name
                flow_labels = deployment.flow_labels
                work_queue = queue(pool, queue_name, True, create.now)
            else:
                if values["flow_id"] not in facts.labels:
                    raise not_found("flow", values["flow_id"])
                pool = create.work_pool_name
                flow_labels = facts.labels[values["flow_id"]]
                work_queue = queue(pool, values.get("work_queue_name"), False, create.now)
        except ServiceError as error:
            outcomes[index] = error
            continue
        planned.append(_Planned(index, create, values, flow_labels, work_queue, pool))
    facts.queues = queues
    return facts, planned
