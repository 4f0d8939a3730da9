"""Schema migrations (alembic): the server upgrades its database to the newest revision on start;
`flowrpc database upgrade` does it explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def for_dialect(dialect: str):  # noqa: ANN201 - alembic's include_object hook
    """Skips schema objects that exist on another database only: indexes through
    `Index(...).ddl_if(dialect=...)`, tables through `info={"dialect": ...}`."""

    def include_object(obj: Any, name: str, type_: str, reflected: bool, compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None)
        only_on = condition.dialect if condition is not None else obj.info.get("dialect")
        return only_on in (None, dialect)

    return include_object


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    command.upgrade(alembic_config(connection), revision)
