"""`flowrpc database upgrade`: migrate the schema."""

from __future__ import annotations

import logging

import typer

from flowrpc.cli.common import configure_logging, server_settings
from flowrpc.cli.server import DatabaseUrl

app = typer.Typer(name="database", help="Manage the database.", no_args_is_help=True)


@app.command()
def upgrade(database_url: DatabaseUrl = None) -> None:
    """Migrate the schema to the newest revision."""
    settings = server_settings(database_url=database_url)
    configure_logging(settings)
    from flowrpc.server.storage.database import Database

    db = Database(settings.resolved_database_url())
    db.migrate()
    db.close()
    logging.getLogger("flowrpc").info("database is at the newest schema revision")
