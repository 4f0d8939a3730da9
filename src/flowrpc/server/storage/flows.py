"""Flows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import not_found
from flowrpc.server.ids import new_id
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.filters import Filter, compiler_for


def create_flow(conn: Connection, values: dict[str, Any], now: int) -> tuple[Row[Any], bool]:
    """Creates the flow, or returns the existing flow of that name."""
    existing = _by_name(conn, values["name"])
    if existing is not None:
        return existing, False
    try:
        with conn.begin_nested():
            flow_id = new_id()
            conn.execute(sa.insert(t.flow).values(**values, id=flow_id, created=now, updated=now))
    except sa.exc.IntegrityError:  # created concurrently
        return _by_name(conn, values["name"]), False
    return get_flow(conn, flow_id), True


def _by_name(conn: Connection, name: str) -> Any:
    return conn.execute(sa.select(t.flow).where(t.flow.c.name == name)).first()


def get_flow(conn: Connection, flow_id: str) -> Row[Any]:
    row = conn.execute(sa.select(t.flow).where(t.flow.c.id == flow_id)).first()
    if row is None:
        raise not_found("flow", flow_id)
    return row


def get_flow_by_name(conn: Connection, name: str) -> Row[Any]:
    row = _by_name(conn, name)
    if row is None:
        raise not_found("flow", name)
    return row


def list_flows(conn: Connection, filters: Filter, limit: int, offset: int) -> list[Row[Any]]:
    query = (
        sa.select(t.flow)
        .where(compiler_for(conn).flow(filters))
        .order_by(t.flow.c.name)
        .limit(limit)
        .offset(offset)
    )
    return list(conn.execute(query))


def delete_flow(conn: Connection, flow_id: str) -> None:
    if conn.execute(sa.delete(t.flow).where(t.flow.c.id == flow_id)).rowcount == 0:
        raise not_found("flow", flow_id)
