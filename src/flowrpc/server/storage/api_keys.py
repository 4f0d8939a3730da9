"""API keys: a name, a role and the key's SHA-256 (the key itself is never stored)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import AlreadyExists, NotFound, quote
from flowrpc.server.storage import tables as t


def create_key(conn: Connection, name: str, key_hash: str, role: str, now: int) -> None:
    try:
        with conn.begin_nested():
            conn.execute(
                sa.insert(t.api_key).values(name=name, key_hash=key_hash, role=role, created=now)
            )
    except sa.exc.IntegrityError:
        raise AlreadyExists(
            "API_KEY_ALREADY_EXISTS", f"An API key named {quote(name)} already exists."
        ) from None


def list_keys(conn: Connection) -> Sequence[Row[Any]]:
    return conn.execute(sa.select(t.api_key).order_by(t.api_key.c.name)).all()


def revoke_key(conn: Connection, name: str) -> None:
    if not conn.execute(sa.delete(t.api_key).where(t.api_key.c.name == name)).rowcount:
        raise NotFound("API_KEY_NOT_FOUND", f"No API key is named {quote(name)}.")
