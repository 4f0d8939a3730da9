"""Secrets every replica shares (the key that signs page tokens), kept in the database."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowrpc.server.storage import tables as t

INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def server_secret(conn: Connection, name: str, now: int) -> bytes:
    """The secret called `name`, minted by the first replica to ask: a fresh random value is
    inserted unless one exists, then the stored one is read. Replicas starting together race on
    the insert, and both read the winner's value (PostgreSQL's ON CONFLICT waits for the other
    transaction; SQLite has one writer)."""
    fresh = secrets.token_hex(32)  # 256 bits
    insert = INSERTS[conn.dialect.name](t.server_secret).values(name=name, created=now, value=fresh)
    conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
    stored = conn.execute(
        sa.select(t.server_secret.c.value).where(t.server_secret.c.name == name)
    ).scalar_one()
    return bytes.fromhex(stored)
