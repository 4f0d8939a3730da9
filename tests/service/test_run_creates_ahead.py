"""A CreateFlowRuns message planned on a reader before its write (run_creates.plan_ahead) is
written as planned only while what the plan read is unchanged; else the write plans again, so
the runs are those their single creates would make at write time."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import sqlalchemy as sa

from flowrpc.server.ids import now_micros
from flowrpc.server.limits import run_budget
from flowrpc.server.services.creates import check_row, deployment_run_create
from flowrpc.server.storage import deployments, flows, run_creates, work_pools
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.v1 import deployment_service_pb2 as dp

BUDGET = run_budget(Settings())
CHECK = functools.partial(check_row, budget=BUDGET)


@contextlib.contextmanager
def _deployment(database) -> Iterator[tuple[Database, str]]:
    """The migrated test database and a deployment of a new flow, in work pool "p", in it."""
    db = Database(database.database_url)
    db.migrate()
    now = now_micros()
    try:
        with db._write_engine.begin() as conn:
            flow, _ = flows.create_flow(conn, {"name": "f"}, now)
            work_pools.create_work_pool(conn, {"name": "p", "type": "process"}, now)
            values = {"flow_id": flow.id, "name": "d", "parameters": {"x": 1}}
            deployment, _ = deployments.create_deployment(conn, values, "p", now)
        yield db, deployment.id
    finally:
        db.close()


def _creates(deployment_id: str, *keys: str | None, queue: str | None = None) -> list:
    """Runs of the deployment, one per idempotency key (None: no key), in its queue or `queue`."""
    requests = [
        dp.CreateFlowRunFromDeploymentRequest(
            deployment_id=deployment_id, idempotency_key=key, work_queue_name=queue
        )
        for key in keys
    ]
    return [deployment_run_create(request, now_micros(), BUDGET) for request in requests]


def _plan_ahead(db: Database, creates) -> run_creates.Plan | None:
    with db._read_engine.connect() as conn:
        return run_creates.plan_ahead(conn, creates, CHECK)


def _write(db: Database, creates, ahead) -> list:
    with db._write_engine.begin() as conn:
        return run_creates.create_flow_runs(conn, creates, CHECK, ahead)


def _update_deployment(db: Database, deployment_id: str, **values) -> None:
    with db._write_engine.begin() as conn:
        deployment = t.deployment
        conn.execute(sa.update(deployment).where(deployment.c.id == deployment_id).values(**values))


def test_a_plan_whose_facts_are_unchanged_is_written_as_planned(database):
    with _deployment(database) as (db, deployment_id):
        creates = _creates(deployment_id, None, "k")
        ahead = _plan_ahead(db, creates)
        assert ahead is not None

        outcomes = _write(db, creates, ahead)

        assert outcomes == ahead.outcomes
        assert [run.parameters for run, created in outcomes] == [{"x": 1}, {"x": 1}]


def test_a_deployment_changed_after_the_plan_gives_its_new_values(database):
    with _deployment(database) as (db, deployment_id):
        creates = _creates(deployment_id, None)
        ahead = _plan_ahead(db, creates)
        _update_deployment(db, deployment_id, parameters={"x": 2}, updated=now_micros())

        [(run, created)] = _write(db, creates, ahead)

        assert created and run.parameters == {"x": 2}
        with db._read_engine.connect() as conn:
            stored = conn.execute(sa.select(t.flow_run.c.parameters)).scalars().all()
        assert stored == [{"x": 2}]


def test_a_key_used_after_the_plan_returns_the_run_made_with_it(database):
    with _deployment(database) as (db, deployment_id):
        ahead = _plan_ahead(db, _creates(deployment_id, "k"))
        [(first, created_first)] = _write(db, _creates(deployment_id, "k"), None)

        [(run, created)] = _write(db, _creates(deployment_id, "k"), ahead)

        assert created_first and not created and run.id == first.id


def test_a_queue_to_create_is_left_to_the_writer(database):
    with _deployment(database) as (db, deployment_id):
        creates = _creates(deployment_id, None, queue="new")

        assert _plan_ahead(db, creates) is None
        [(run, created)] = _write(db, creates, None)

        assert created and (run.work_pool_name, run.work_queue_name) == ("p", "new")
