"""Many runs created in one write call (CreateFlowRuns): each as its single create creates it.

Fast path: the flows, deployments, work queues and used idempotency keys of all the runs are
read with a few queries, each run's first state is decided by the single create's own functions
(`new_run_values`, `merge_deployment`, `first_transition`), and the runs and their states are
inserted with one statement each. A run that cannot be created (unknown flow, deployment, pool or
queue) is known before anything of it is written, so it fails alone.

Exact path: anything else that goes wrong (a run over the run budget after its deployment's
values were merged in, a database error such as a concurrent create of the same idempotency
key) rolls the fast path back, and every run is created again through its single create's
storage write, each in a savepoint of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flowrpc.server.errors import ServiceError, not_found
from flowrpc.server.orchestration.records import State
from flowrpc.server.storage import changes, deployments, flow_runs
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import caller_error, savepoint
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


def create_flow_runs(
    conn: Connection, creates: list[RunCreate | ServiceError], check: BudgetCheck
) -> list[Outcome]:
    """Creates the runs in order; each outcome is (run, created) or the run's error (an error
    given in place of a create is passed through)."""
    try:
        with savepoint(conn, "flowrpc_batch"):
            return _fast(conn, creates, check)
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


def _fast(
    conn: Connection, creates: list[RunCreate | ServiceError], check: BudgetCheck
) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(creates)
    planned = _resolve(conn, creates, outcomes)
    used = flow_runs.by_idempotency_keys(conn, {key for p in planned if (key := _key(p.values))})
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
    for same_columns in runs.values():  # columns left out get their defaults, as one by one
        INSERT[t.flow_run].execute(conn, same_columns)
    INSERT[t.flow_run_state].execute(conn, states)
    changes.note(conn, [(state["flow_run_id"], state["id"]) for state in states])
    for parent_task_run_id, decision, now in parents:
        update_parent_task(conn, parent_task_run_id, decision, now)
    return outcomes  # type: ignore[return-value]


def _key(values: dict[str, Any]) -> tuple[str, str] | None:
    key = values.get("idempotency_key")
    return None if key is None else (values["flow_id"], key)


def _resolve(
    conn: Connection, creates: list[RunCreate | ServiceError], outcomes: list[Any]
) -> list[_Planned]:
    """Each run's flow or deployment and work queue, read once for all the runs; a run whose
    flow, deployment, pool or queue does not exist gets its error in `outcomes` (nothing of it
    is written, as in its single create)."""
    ok = [(i, c) for i, c in enumerate(creates) if not isinstance(c, ServiceError)]
    for i, c in enumerate(creates):
        if isinstance(c, ServiceError):
            outcomes[i] = c
    labels = flow_runs.flow_labels(
        conn, {c.values["flow_id"] for _, c in ok if not c.deployment_id}
    )
    found = deployments.for_runs(conn, {c.deployment_id for _, c in ok if c.deployment_id})
    queues: dict[tuple[Any, ...], Any] = {}

    def queue(pool: str | None, name: str | None, create: bool, now: int) -> Any:
        if (pool, name, create) not in queues:
            try:
                queues[pool, name, create] = resolve_work_queue(conn, pool, name, create, now)
            except ServiceError as error:
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
                deployment = found.get(create.deployment_id)
                if deployment is None:
                    raise not_found("deployment", create.deployment_id)
                queue_name = deployments.merge_deployment(values, deployment)
                pool = deployment.work_pool_name
                flow_labels = deployment.flow_labels
                work_queue = queue(pool, queue_name, True, create.now)
            else:
                if values["flow_id"] not in labels:
                    raise not_found("flow", values["flow_id"])
                pool = create.work_pool_name
                flow_labels = labels[values["flow_id"]]
                work_queue = queue(pool, values.get("work_queue_name"), False, create.now)
        except ServiceError as error:
            outcomes[index] = error
            continue
        planned.append(_Planned(index, create, values, flow_labels, work_queue, pool))
    return planned
