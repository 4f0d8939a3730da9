"""The `flowrpc` command.

flowrpc server start [--host H] [--port P] [--database-url URL]
flowrpc database upgrade [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import logging

from flowrpc.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="flowrpc", description="flowrpc: flow runs over gRPC")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="run the service").add_subparsers(
        dest="action", required=True
    )
    start = server.add_parser("start", help="serve until SIGINT or SIGTERM")
    start.add_argument("--host", help="address to bind (default 127.0.0.1, FLOWRPC_HOST)")
    start.add_argument("--port", type=int, help="port (default 4250, FLOWRPC_PORT; 0 = any)")
    database = commands.add_parser("database", help="manage the database").add_subparsers(
        dest="action", required=True
    )
    upgrade = database.add_parser("upgrade", help="migrate the schema to the newest revision")
    for command in (start, upgrade):
        command.add_argument(
            "--database-url",
            help="SQLAlchemy URL (FLOWRPC_DATABASE_URL); default: SQLite under FLOWRPC_HOME",
        )
    args = parser.parse_args(argv)
    given = {key: getattr(args, key, None) for key in ("host", "port", "database_url")}
    settings = Settings(**{key: value for key, value in given.items() if value is not None})
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if args.command == "database":
        from flowrpc.server.storage.database import Database

        db = Database(settings.resolved_database_url())
        db.migrate()
        db.close()
        logging.getLogger("flowrpc").info("database is at the newest schema revision")
        return
    from flowrpc.server.app import PortUnavailable, run

    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers are set
            run(settings)
    except PortUnavailable as error:
        parser.exit(1, f"flowrpc: error: {error}\n")


if __name__ == "__main__":
    main()
