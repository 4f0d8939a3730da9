"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from flowrpc.server.storage.database import Database
from flowrpc.server.storage.migrate import MIGRATIONS, for_dialect
from flowrpc.server.storage.tables import metadata


def test_migrated_schema_equals_the_models(database):
    db = Database(database.resolved_database_url())
    try:
        db.migrate()
        db.migrate()  # a second upgrade finds nothing to do
        engine = sa.create_engine(db.url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            include = for_dialect(conn.dialect.name)
            context = MigrationContext.configure(conn, opts={"include_object": include})
            head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
            assert context.get_current_revision() == head
            assert compare_metadata(context, metadata) == []
            tables = set(sa.inspect(conn).get_table_names())
        engine.dispose()
    finally:
        db.close()
    assert {"flow", "flow_run", "flow_run_state", "task_run", "alembic_version"} <= tables
