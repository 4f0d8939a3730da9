"""Assets, their dependencies and materializations. Asset rows are created on first sight (an
insert that ignores a key already there), so concurrent records of one key never conflict.
Materializations keep their run ids as history: deleting a run does not delete them."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowrpc.server.errors import InvalidArgument, not_found, quote
from flowrpc.server.ids import new_id
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.filters import compiler_for

asset = t.asset.c
dependency = t.asset_dependency.c
materialization = t.asset_materialization.c


def _insert_new(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Inserts the rows whose primary key is not there yet."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def create_materialization(
    conn: Connection, values: dict[str, Any], materializations: int
) -> list[SimpleNamespace]:
    """Records that values["task_run_id"] made values["asset_keys"] from
    values["upstream_keys"]; returns the assets made, as list_assets does."""
    task_run = conn.execute(
        sa.select(t.task_run.c.flow_run_id).where(t.task_run.c.id == values["task_run_id"])
    ).first()
    if task_run is None:
        raise not_found("task run", values["task_run_id"])
    flow_run_id = values["flow_run_id"] or task_run.flow_run_id
    if task_run.flow_run_id != flow_run_id:
        raise InvalidArgument(
            {
                "flow_run_id": f"task run {quote(values['task_run_id'])} belongs to flow run "
                f"{quote(task_run.flow_run_id or '')}, not {quote(flow_run_id)}"
            }
        )
    keys, upstream, when = values["asset_keys"], values["upstream_keys"], values["timestamp"]
    _insert_new(
        conn, t.asset, [{"key": key, "created": when} for key in sorted({*keys, *upstream})]
    )
    _insert_new(
        conn,
        t.asset_dependency,
        [
            {"asset_key": key, "upstream_key": up, "created": when}
            for key in sorted(set(keys))
            for up in sorted(set(upstream))
            if up != key
        ],
    )
    conn.execute(
        sa.insert(t.asset_materialization),
        [
            {
                "id": new_id(),
                "asset_key": key,
                "task_run_id": values["task_run_id"],
                "flow_run_id": flow_run_id,
                "timestamp": when,
            }
            for key in sorted(set(keys))
        ],
    )
    return list_assets(conn, sorted(set(keys)), len(set(keys)), 0, materializations)


def list_assets(
    conn: Connection, keys: list[str] | None, limit: int, offset: int, materializations: int
) -> list[SimpleNamespace]:
    """Assets by key, each with its upstream keys, its newest `materializations`
    materializations and how many it has."""
    query = sa.select(asset.key, asset.created).order_by(asset.key).limit(limit).offset(offset)
    if keys is not None:
        query = query.where(compiler_for(conn).lists.one_of(asset.key, keys))
    assets = [SimpleNamespace(**row._mapping) for row in conn.execute(query)]
    page = [a.key for a in assets]
    if not page:
        return []
    upstream: dict[str, list[str]] = defaultdict(list)
    for key, up in conn.execute(
        sa.select(dependency.asset_key, dependency.upstream_key)
        .where(dependency.asset_key.in_(page))
        .order_by(dependency.asset_key, dependency.upstream_key)
    ):
        upstream[key].append(up)
    counts = dict(
        conn.execute(
            sa.select(materialization.asset_key, sa.func.count())
            .where(materialization.asset_key.in_(page))
            .group_by(materialization.asset_key)
        ).all()
    )
    newest = _newest_materializations(conn, page, materializations)
    for item in assets:
        item.upstream_keys = upstream.get(item.key, [])
        item.materialization_count = counts.get(item.key, 0)
        item.materializations = newest.get(item.key, [])
    return assets


def _newest_materializations(conn: Connection, keys: list[str], count: int) -> dict[str, list[Any]]:
    """The newest `count` materializations of each asset (a window function: one query)."""
    if count == 0:
        return {}
    rank = (
        sa.func.row_number()
        .over(
            partition_by=materialization.asset_key,
            order_by=(materialization.timestamp.desc(), materialization.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        sa.select(
            materialization.asset_key,
            materialization.task_run_id,
            materialization.flow_run_id,
            materialization.timestamp,
            rank,
        )
        .where(materialization.asset_key.in_(keys))
        .subquery()
    )
    rows = conn.execute(
        sa.select(ranked).where(ranked.c.rank <= count).order_by(ranked.c.asset_key, ranked.c.rank)
    )
    newest: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        newest[row.asset_key].append(row)
    return newest
