"""The `flowrpc` command.

flowrpc server start [--host H] [--port P] [--database-url URL]
                     [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]] [--metrics-port P]
flowrpc database upgrade [--database-url URL]
flowrpc api-key create --name NAME --role read|write|admin [--database-url URL]
flowrpc api-key ls [--database-url URL]
flowrpc api-key revoke NAME [--database-url URL]
flowrpc --version
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import sys
from typing import Any

from pydantic import ValidationError

from flowrpc.server.access import Role
from flowrpc.settings import Settings

ROLES = [role.label for role in Role]
NO_KEYS_LEFT = (
    "warning: no API key is left, so servers without FLOWRPC_API_KEY accept every call "
    "without a key again"
)
OPTIONS = ("host", "port", "database_url", "tls_cert", "tls_key", "tls_client_ca", "metrics_port")


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None or args.action is None:
        # A command without its action (or none at all): list what there is, as a usage error.
        getattr(args, "group", parser).print_help(sys.stderr)
        sys.exit(2)
    given = {key: getattr(args, key, None) for key in OPTIONS}
    try:
        settings = Settings(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        print(f"flowrpc: error: invalid settings: {problems}", file=sys.stderr)
        sys.exit(2)
    quiet = args.command == "api-key"  # its output is the key or the listing, not migrations
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if args.command == "database":
        from flowrpc.server.storage.database import Database

        db = Database(settings.resolved_database_url())
        db.migrate()
        db.close()
        logging.getLogger("flowrpc").info("database is at the newest schema revision")
        return
    if args.command == "api-key":
        failure = _api_key(args, settings)
        if failure:
            sys.exit(failure)
        return
    from flowrpc.server.app import StartupError, run

    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers are set
            run(settings)
    except StartupError as error:  # a taken port, unusable certificate files
        sys.exit(f"flowrpc: error: {error}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowrpc", description="flowrpc: flow runs over gRPC")
    parser.add_argument(
        "--version", action="version", version=f"flowrpc {importlib.metadata.version('flowrpc')}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    server = _group(commands, "server", "run the service")
    start = server.add_parser("start", help="serve until SIGINT or SIGTERM")
    start.add_argument("--host", help="address to bind (default 127.0.0.1, FLOWRPC_HOST)")
    start.add_argument("--port", type=int, help="port (default 4250, FLOWRPC_PORT; 0 = any)")
    start.add_argument("--tls-cert", help="PEM certificate chain: TLS only (FLOWRPC_TLS_CERT)")
    start.add_argument("--tls-key", help="PEM private key of --tls-cert (FLOWRPC_TLS_KEY)")
    start.add_argument(
        "--tls-client-ca",
        help="PEM CA certificates: require client certificates they signed (FLOWRPC_TLS_CLIENT_CA)",
    )
    start.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (FLOWRPC_METRICS_PORT; "
        "default off; FLOWRPC_METRICS_HOST binds another address)",
    )
    database = _group(commands, "database", "manage the database")
    upgrade = database.add_parser("upgrade", help="migrate the schema to the newest revision")
    keys = _group(commands, "api-key", "manage API keys")
    create = keys.add_parser("create", help="make a key and print it (shown only this once)")
    create.add_argument(
        "--name", required=True, type=_key_name, help="a name to list and revoke the key by"
    )
    create.add_argument("--role", required=True, choices=ROLES, help="what the key may call")
    listing = keys.add_parser("ls", help="list keys: name, role, created (never the key)")
    revoke = keys.add_parser("revoke", help="delete a key; servers refuse it within a second")
    revoke.add_argument("name", help="the key's name")
    for command in (start, upgrade, create, listing, revoke):
        command.add_argument(
            "--database-url",
            help="SQLAlchemy URL (FLOWRPC_DATABASE_URL); default: SQLite under FLOWRPC_HOME",
        )
    return parser


def _group(commands: Any, name: str, help_text: str) -> Any:
    """A command whose actions are subcommands; `main` prints its help when none is given."""
    group = commands.add_parser(name, help=help_text, description=help_text)
    group.set_defaults(group=group)
    return group.add_subparsers(dest="action", metavar="ACTION")


def _key_name(text: str) -> str:
    if not 0 < len(text) <= 64 or not text.isprintable():
        raise argparse.ArgumentTypeError("a name is 1 to 64 printable characters")
    return text


def _api_key(args: argparse.Namespace, settings: Settings) -> str | None:
    """Runs one `api-key` action; a message when it failed."""
    import sqlalchemy as sa

    from flowrpc.server import access, errors
    from flowrpc.server.ids import now_micros
    from flowrpc.server.storage import api_keys
    from flowrpc.server.storage.database import Database

    url = settings.resolved_database_url()
    db = Database(url)
    db.migrate()
    db.close()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            if args.action == "create":
                key = access.new_key()
                digest = access.hash_key(key)
                api_keys.create_key(conn, args.name, digest, args.role, now_micros())
            elif args.action == "revoke":
                api_keys.revoke_key(conn, args.name)
            rows = api_keys.list_keys(conn)
    except errors.ServiceError as error:
        return f"flowrpc: {error.message}"
    finally:
        engine.dispose()
    if args.action == "create":
        print(key)
        print(f"(key {args.name!r}, role {args.role}: shown only now)", file=sys.stderr)
    elif args.action == "revoke":
        print(f"revoked {args.name!r}", file=sys.stderr)
        if not rows:
            print(NO_KEYS_LEFT, file=sys.stderr)
    else:
        _print_keys(rows)
    return None


def _print_keys(rows: list[Any]) -> None:
    from datetime import UTC, datetime

    print(f"{'NAME':<32} {'ROLE':<6} CREATED")
    for row in rows:
        created = datetime.fromtimestamp(row.created / 1e6, UTC).isoformat(timespec="seconds")
        print(f"{row.name:<32} {row.role:<6} {created}")


if __name__ == "__main__":
    main()
