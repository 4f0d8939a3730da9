"""PostgreSQL specifics: statement timeout, and reconnecting after connections are dropped."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from harness import postgres_schema

from flowrpc.server.errors import ResourceExhausted
from flowrpc.server.storage.database import Database

POSTGRES_URL = os.environ.get("FLOWRPC_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="set FLOWRPC_TEST_DATABASE_URL to a PostgreSQL URL"
)


@pytest.fixture
def url():
    with postgres_schema(POSTGRES_URL) as schema_url:
        name = f"flowrpc-test-{uuid.uuid4().hex[:8]}"
        yield sa.make_url(schema_url).update_query_dict({"application_name": name})


def scalar(sql: str):
    return lambda conn: conn.execute(sa.text(sql)).scalar()


async def test_a_statement_past_the_timeout_is_cancelled(url):
    db = Database(url.render_as_string(hide_password=False), statement_timeout=0.2)
    try:
        with pytest.raises(ResourceExhausted, match="statement_timeout_seconds"):
            await db.read(scalar("SELECT pg_sleep(2)"))
        assert await db.read(scalar("SELECT 1")) == 1  # the pool goes on serving
        with pytest.raises(ResourceExhausted, match="statement_timeout_seconds"):
            await db.write(scalar("SELECT pg_sleep(2)"))
        assert await db.write(scalar("SELECT 1")) == 1
    finally:
        db.close()


async def test_connections_dropped_by_the_database_are_replaced(url):
    db = Database(url.render_as_string(hide_password=False), readers=1, pool_size=1)
    try:
        assert await db.read(scalar("SELECT 1")) == 1
        admin = sa.create_engine(POSTGRES_URL, poolclass=sa.NullPool)
        with admin.begin() as conn:  # what a database restart does to open connections
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": url.query["application_name"]},
            ).scalar()
        admin.dispose()
        assert killed >= 1
        assert await db.read(scalar("SELECT 2")) == 2
        assert await db.write(scalar("SELECT 3")) == 3
    finally:
        db.close()
