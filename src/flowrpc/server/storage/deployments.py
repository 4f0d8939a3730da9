"""Deployments, and runs created from them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import not_found
from flowrpc.server.ids import new_id
from flowrpc.server.orchestration.records import State
from flowrpc.server.storage import flow_runs
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.filters import Filter, compiler_for
from flowrpc.server.storage.prepared import Prepared
from flowrpc.server.storage.rows import plain
from flowrpc.server.storage.work_pools import resolve_work_queue

dep = t.deployment.c

READ = sa.select(t.deployment, t.work_pool.c.name.label("work_pool_name")).select_from(
    t.deployment.outerjoin(t.work_queue, t.work_queue.c.id == dep.work_queue_id).outerjoin(
        t.work_pool, t.work_pool.c.id == t.work_queue.c.work_pool_id
    )
)

# A deployment with its flow's labels, for the runs created from it.
_WITH_FLOW_LABELS = READ.add_columns(t.flow.c.labels.label("flow_labels")).join(
    t.flow, t.flow.c.id == dep.flow_id
)
FOR_RUN = Prepared(_WITH_FLOW_LABELS.where(dep.id == sa.bindparam("deployment_id")))
FOR_RUN_MANY = _WITH_FLOW_LABELS.where(dep.id.in_(sa.bindparam("ids", expanding=True)))


def create_deployment(
    conn: Connection, values: dict[str, Any], work_pool_name: str | None, now: int
) -> tuple[Row[Any], bool]:
    """Creates the deployment, or replaces the flow's deployment of the same name."""
    if conn.execute(sa.select(t.flow.c.id).where(t.flow.c.id == values["flow_id"])).first() is None:
        raise not_found("flow", values["flow_id"])
    queue = resolve_work_queue(conn, work_pool_name, values.get("work_queue_name"), True, now)
    if queue is not None:
        values.update(work_queue_id=queue.id, work_queue_name=queue.name)
    existing = _named(conn, values)
    if existing is None:
        deployment_id = new_id()
        try:  # PostgreSQL: a concurrent create of the name may commit first; then replace it
            with conn.begin_nested():
                conn.execute(
                    sa.insert(t.deployment).values(
                        **values, id=deployment_id, created=now, updated=now
                    )
                )
            return get_deployment(conn, deployment_id), True
        except sa.exc.IntegrityError:
            if (existing := _named(conn, values)) is None:
                raise
    conn.execute(sa.update(t.deployment).where(dep.id == existing).values(**values, updated=now))
    return get_deployment(conn, existing), False


def _named(conn: Connection, values: dict[str, Any]) -> str | None:
    return conn.execute(
        sa.select(dep.id).where(dep.flow_id == values["flow_id"], dep.name == values["name"])
    ).scalar()


def get_deployment(conn: Connection, deployment_id: str) -> Row[Any]:
    row = conn.execute(READ.where(dep.id == deployment_id)).first()
    if row is None:
        raise not_found("deployment", deployment_id)
    return row


def get_deployment_by_name(conn: Connection, flow_name: str, name: str) -> Row[Any]:
    row = conn.execute(
        READ.join(t.flow, t.flow.c.id == dep.flow_id).where(
            t.flow.c.name == flow_name, dep.name == name
        )
    ).first()
    if row is None:
        raise not_found("deployment", f"{flow_name}/{name}")
    return row


def list_deployments(conn: Connection, filters: Filter, limit: int, offset: int) -> list[Row[Any]]:
    compiler = compiler_for(conn)
    criteria = []
    if "deployments" in filters:
        criteria.append(compiler.deployment(filters["deployments"]))
    if "flows" in filters:
        criteria.append(
            sa.exists().where(t.flow.c.id == dep.flow_id, compiler.flow(filters["flows"]))
        )
    queue_filters = {
        key: filters[key] for key in ("work_pools", "work_pool_queues") if key in filters
    }
    if queue_filters:
        # READ outer-joins the queue and pool: correlate on the deployment only.
        criteria.append(
            sa.exists()
            .where(
                t.work_queue.c.id == dep.work_queue_id,
                t.work_pool.c.id == t.work_queue.c.work_pool_id,
                compiler.work_pool(queue_filters.get("work_pools", {})),
                compiler.work_queue(queue_filters.get("work_pool_queues", {})),
            )
            .correlate(t.deployment)
        )
    query = READ.where(*criteria).order_by(dep.name, dep.id).limit(limit).offset(offset)
    return list(conn.execute(query))


def delete_deployment(conn: Connection, deployment_id: str) -> None:
    if conn.execute(sa.delete(t.deployment).where(dep.id == deployment_id)).rowcount == 0:
        raise not_found("deployment", deployment_id)
    conn.execute(
        sa.update(t.flow_run)
        .where(t.flow_run.c.deployment_id == deployment_id)
        .values(deployment_id=None)
    )


def create_flow_run(
    conn: Connection, deployment_id: str, values: dict[str, Any], state: State, now: int
) -> tuple[Row[Any], bool]:
    """A run of the deployment: parameters merged over the deployment's, tags unioned."""
    deployment = FOR_RUN.first(conn, {"deployment_id": deployment_id})
    if deployment is None:
        raise not_found("deployment", deployment_id)
    queue_name = merge_deployment(values, deployment)
    pool_name = deployment.work_pool_name
    queue = resolve_work_queue(conn, pool_name, queue_name, True, now)
    return flow_runs.insert_new_run(
        conn, values, deployment.flow_labels, state, now, queue, pool_name
    )


def merge_deployment(values: dict[str, Any], deployment: Any) -> str | None:
    """Merges the deployment (a FOR_RUN row) into a run's create values, in place; returns the
    work queue the run goes to (the run's own, else the deployment's)."""
    values.update(
        flow_id=deployment.flow_id,
        deployment_id=deployment.id,
        deployment_version=deployment.version,
        parameters={**(deployment.parameters or {}), **(values.get("parameters") or {})},
        tags=sorted(set(deployment.tags or []) | set(values.get("tags") or [])),
        labels={
            **(deployment.labels or {}),
            "prefect.deployment.id": deployment.id,
            **(values.get("labels") or {}),
        },
        job_variables={**(deployment.job_variables or {}), **(values.get("job_variables") or {})},
    )
    values["work_queue_name"] = values.get("work_queue_name") or deployment.work_queue_name
    return values["work_queue_name"]


def for_runs(conn: Connection, deployment_ids: set[str]) -> dict[str, Any]:
    """FOR_RUN rows of these deployments, by id (missing ones left out)."""
    if not deployment_ids:
        return {}
    rows = plain(conn.execute(FOR_RUN_MANY, {"ids": sorted(deployment_ids)}))
    return {row.id: row for row in rows}
