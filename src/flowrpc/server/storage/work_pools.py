"""Work pools and their queues."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import AlreadyExists, NotFound, not_found, quote
from flowrpc.server.ids import new_id
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.filters import Filter, compiler_for

DEFAULT_QUEUE = "default"
# Priorities are int32 on the wire and INTEGER on PostgreSQL: a queue given no priority comes
# after the pool's last, but never past this (ties are ordered by name).
MAX_PRIORITY = 2**31 - 1

QUEUE_READ = sa.select(t.work_queue, t.work_pool.c.name.label("work_pool_name")).join(
    t.work_pool, t.work_pool.c.id == t.work_queue.c.work_pool_id
)


def _pool_exists(name: str) -> AlreadyExists:
    return AlreadyExists("WORK_POOL_ALREADY_EXISTS", f"Work pool {quote(name)} already exists.")


def _queue_exists(pool_name: str, name: str) -> AlreadyExists:
    return AlreadyExists(
        "WORK_QUEUE_ALREADY_EXISTS",
        f"Work pool queue {quote(f'{pool_name}/{name}')} already exists.",
    )


def create_work_pool(conn: Connection, values: dict[str, Any], now: int) -> Row[Any]:
    if _pool_by_name(conn, values["name"]) is not None:
        raise _pool_exists(values["name"])
    pool_id = new_id()
    try:  # PostgreSQL: a concurrent create of the name may commit first
        with conn.begin_nested():
            conn.execute(
                sa.insert(t.work_pool).values(**values, id=pool_id, created=now, updated=now)
            )
    except sa.exc.IntegrityError:
        raise _pool_exists(values["name"]) from None
    queue = _insert_queue(conn, pool_id, {"name": DEFAULT_QUEUE}, now)
    conn.execute(
        sa.update(t.work_pool).where(t.work_pool.c.id == pool_id).values(default_queue_id=queue)
    )
    return get_work_pool(conn, values["name"])


def _insert_queue(conn: Connection, pool_id: str, values: dict[str, Any], now: int) -> str:
    if values.get("priority") is None:
        highest = conn.execute(
            sa.select(sa.func.max(t.work_queue.c.priority)).where(
                t.work_queue.c.work_pool_id == pool_id
            )
        ).scalar()
        values["priority"] = min((highest or 0) + 1, MAX_PRIORITY)
    queue_id = new_id()
    conn.execute(
        sa.insert(t.work_queue).values(
            **values, id=queue_id, work_pool_id=pool_id, created=now, updated=now
        )
    )
    return queue_id


def _pool_by_name(conn: Connection, name: str) -> Row[Any] | None:
    return conn.execute(sa.select(t.work_pool).where(t.work_pool.c.name == name)).first()


def get_work_pool(conn: Connection, name: str) -> Row[Any]:
    pool = _pool_by_name(conn, name)
    if pool is None:
        raise not_found("work pool", name)
    return pool


def list_work_pools(conn: Connection, filters: Filter, limit: int, offset: int) -> list[Row[Any]]:
    query = (
        sa.select(t.work_pool)
        .where(compiler_for(conn).work_pool(filters))
        .order_by(t.work_pool.c.name)
        .limit(limit)
        .offset(offset)
    )
    return list(conn.execute(query))


def delete_work_pool(conn: Connection, name: str) -> None:
    if conn.execute(sa.delete(t.work_pool).where(t.work_pool.c.name == name)).rowcount == 0:
        raise not_found("work pool", name)


def create_work_queue(
    conn: Connection, pool_name: str, values: dict[str, Any], now: int
) -> Row[Any]:
    pool = get_work_pool(conn, pool_name)
    if _queue(conn, pool.id, values["name"]) is not None:
        raise _queue_exists(pool_name, values["name"])
    try:  # PostgreSQL: a concurrent create of the name may commit first
        with conn.begin_nested():
            queue_id = _insert_queue(conn, pool.id, values, now)
    except sa.exc.IntegrityError:
        raise _queue_exists(pool_name, values["name"]) from None
    return conn.execute(QUEUE_READ.where(t.work_queue.c.id == queue_id)).one()


def list_work_queues(conn: Connection, pool_name: str) -> list[Row[Any]]:
    pool = get_work_pool(conn, pool_name)
    query = QUEUE_READ.where(t.work_queue.c.work_pool_id == pool.id).order_by(
        t.work_queue.c.priority, t.work_queue.c.name
    )
    return list(conn.execute(query))


def _queue(conn: Connection, pool_id: str, name: str) -> Row[Any] | None:
    return conn.execute(
        sa.select(t.work_queue).where(
            t.work_queue.c.work_pool_id == pool_id, t.work_queue.c.name == name
        )
    ).first()


def resolve_work_queue(
    conn: Connection,
    pool_name: str | None,
    queue_name: str | None,
    create: bool = False,
    now: int = 0,
) -> Row[Any] | None:
    """The queue a run goes to: the named queue of the named pool, or the pool's default queue.
    None without a pool. With create, a missing queue is created in the pool."""
    if pool_name is None:
        return None
    pool = _pool_by_name(conn, pool_name)
    if pool is None:
        raise NotFound("WORK_POOL_NOT_FOUND", f"Work pool {quote(pool_name)} not found.")
    queue = _queue(conn, pool.id, queue_name or DEFAULT_QUEUE)
    if queue is None and create:
        try:  # PostgreSQL: a concurrent create of the same queue may commit first; take it
            with conn.begin_nested():
                _insert_queue(conn, pool.id, {"name": queue_name}, now)
        except sa.exc.IntegrityError:
            pass
        queue = _queue(conn, pool.id, queue_name or DEFAULT_QUEUE)
    if queue is None:
        raise NotFound(
            "WORK_QUEUE_NOT_FOUND",
            f"Work pool queue {quote(f'{pool_name}/{queue_name}')} not found.",
        )
    return queue
