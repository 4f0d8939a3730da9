"""Schema migrations (alembic): the server upgrades its database to the newest revision on start;
`flowrpc database upgrade` does it explicitly.

Alembic is imported only when there is something to migrate: importing it took about a third of
the server's import time, which every script starting an embedded server pays."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*["\']?([^"\'\s]+)["\']?', re.MULTILINE)


def for_dialect(dialect: str):  # noqa: ANN201 - alembic's include_object hook
    """Skips schema objects that exist on another database only: indexes through
    `Index(...).ddl_if(dialect=...)`, tables through `info={"dialect": ...}`."""

    def include_object(obj: Any, name: str, type_: str, reflected: bool, compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None)
        only_on = condition.dialect if condition is not None else obj.info.get("dialect")
        return only_on in (None, dialect)

    return include_object


def alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    newest = newest_revision() if revision == "head" else None
    if newest is not None and current_revision(connection) == newest:
        return  # nothing to do; alembic stays unimported
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def current_revision(connection: Connection) -> str | None:
    """The database's revision; None when not migrated yet (or on several branches)."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
    found = list(versions)
    return found[0] if len(found) == 1 else None


def newest_revision() -> str | None:
    """The one revision no other revision follows, read from the migration files' `revision` and
    `down_revision` lines without importing alembic; None when that is not a single revision
    (alembic then decides)."""
    revisions, followed = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        fields = dict(_REVISION.findall(path.read_text()))
        if "revision" in fields:
            revisions.add(fields["revision"])
            followed.add(fields.get("down_revision"))
    heads = revisions - followed
    return heads.pop() if len(heads) == 1 else None
