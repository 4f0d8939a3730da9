"""`flowrpc work-pool ls`."""

from __future__ import annotations

import typer

from flowrpc.cli import render
from flowrpc.cli.common import Connection, console, print_json, with_connection
from flowrpc.cli.flow import Json, Limit

app = typer.Typer(name="work-pool", help="Work pools.", no_args_is_help=True)


@app.command("ls")
@with_connection
def list_work_pools(connection: Connection, limit: Limit = 50, json_output: Json = False) -> None:
    """List work pools by name."""
    with connection.client() as client:
        pools = client.read_work_pools(limit=limit)
    if json_output:
        print_json([pool.model_dump(mode="json") for pool in pools])
        return
    rows = render.table("NAME", "TYPE", "PAUSED", "CONCURRENCY", "ID")
    for pool in pools:
        limit_text = "-" if pool.concurrency_limit is None else str(pool.concurrency_limit)
        paused = "yes" if pool.is_paused else "no"
        rows.add_row(pool.name, pool.type, paused, limit_text, str(pool.id))
    console().print(rows)
