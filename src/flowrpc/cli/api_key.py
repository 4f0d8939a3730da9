"""`flowrpc api-key create|ls|revoke`: keys kept in the server's database (only their SHA-256)."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from flowrpc.cli.common import configure_logging, server_settings
from flowrpc.cli.server import DatabaseUrl

app = typer.Typer(name="api-key", help="Manage API keys.", no_args_is_help=True)


class RoleName(enum.StrEnum):
    """flowrpc.server.access.Role's labels, spelled out so that client commands need not import
    the server (tests check the two agree)."""

    read = "read"
    write = "write"
    admin = "admin"


NO_KEYS_LEFT = (
    "warning: no API key is left, so servers without FLOWRPC_API_KEY accept every call "
    "without a key again"
)


def _key_name(text: str) -> str:
    if not 0 < len(text) <= 64 or not text.isprintable():
        raise typer.BadParameter("a name is 1 to 64 printable characters")
    return text


@app.command()
def create(
    name: Annotated[
        str,
        typer.Option(help="a name to list and revoke the key by", callback=_key_name),
    ],
    role: Annotated[RoleName, typer.Option(help="what the key may call")],
    database_url: DatabaseUrl = None,
) -> None:
    """Make a key and print it (shown only this once)."""
    from flowrpc.server import access

    key = access.new_key()
    _with_keys(
        database_url,
        lambda conn, api_keys, now: api_keys.create_key(
            conn, name, access.hash_key(key), role.value, now
        ),
    )
    print(key)
    print(f"(key {name!r}, role {role.value}: shown only now)", file=sys.stderr)


@app.command("ls")
def list_keys(database_url: DatabaseUrl = None) -> None:
    """List keys: name, role, created (never the key)."""
    rows = _with_keys(database_url, None)
    print(f"{'NAME':<32} {'ROLE':<6} CREATED")
    for row in rows:
        created = datetime.fromtimestamp(row.created / 1e6, UTC).isoformat(timespec="seconds")
        print(f"{row.name:<32} {row.role:<6} {created}")


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="the key's name")],
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a key; servers refuse it within a second."""
    rows = _with_keys(database_url, lambda conn, api_keys, now: api_keys.revoke_key(conn, name))
    print(f"revoked {name!r}", file=sys.stderr)
    if not rows:
        print(NO_KEYS_LEFT, file=sys.stderr)


def _with_keys(database_url: str | None, change: Callable[..., Any] | None) -> list[Any]:
    """Applies `change(conn, api_keys, now)` in one transaction on the migrated database and
    returns the keys after it; a refused change (a taken or unknown name) exits with its
    message."""
    settings = server_settings(database_url=database_url)
    configure_logging(settings, quiet=True)  # the output is the key or the listing, not migrations
    import sqlalchemy as sa

    from flowrpc.server import errors
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
            if change is not None:
                change(conn, api_keys, now_micros())
            return list(api_keys.list_keys(conn))
    except errors.ServiceError as error:
        sys.exit(f"flowrpc: {error.message}")
    finally:
        engine.dispose()
