"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from flowrpc.server.storage.database import Database
from flowrpc.server.storage.migrate import MIGRATIONS, for_dialect, newest_revision
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


def test_newest_revision_read_from_the_files_is_alembics_head():
    assert newest_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_a_database_at_the_newest_revision_is_opened_without_importing_alembic(tmp_path):
    """A server (or a script's embedded one) on a migrated file skips importing alembic."""
    probe = (
        "import sys\n"
        "from flowrpc.server.storage.database import Database\n"
        f"db = Database('sqlite:///{tmp_path / 'flowrpc.db'}')\n"
        "db.migrate()\n"
        "db.close()\n"
        "print('alembic' in sys.modules)\n"
    )

    def imported_alembic() -> str:
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert imported_alembic() == "True"  # a new file: migrated by alembic
    assert imported_alembic() == "False"  # at the newest revision: nothing to do
