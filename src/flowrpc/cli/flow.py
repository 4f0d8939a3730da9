"""`flowrpc flow ls`, and flow names for the other groups' tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any
from uuid import UUID

import typer

from flowrpc.cli import render
from flowrpc.cli.common import Connection, console, print_json, with_connection
from flowrpc.schemas.filters import FlowFilter

app = typer.Typer(name="flow", help="Flows.", no_args_is_help=True)

PAGE = 200  # the most a list call returns
Limit = Annotated[
    int, typer.Option(help="at most this many (1 to 200)", min=1, max=PAGE, metavar="N")
]
Json = Annotated[bool, typer.Option("--json", help="print JSON for scripts instead of a table")]


@app.command("ls")
@with_connection
def list_flows(connection: Connection, limit: Limit = 50, json_output: Json = False) -> None:
    """List flows by name."""
    with connection.client() as client:
        flows = client.read_flows(limit=limit)
    if json_output:
        print_json([flow.model_dump(mode="json") for flow in flows])
        return
    rows = render.table("NAME", "ID", "CREATED", "TAGS")
    for flow in flows:
        rows.add_row(flow.name, str(flow.id), render.when(flow.created), ", ".join(flow.tags))
    console().print(rows)


def flow_names(client: Any, flow_ids: Iterable[UUID]) -> dict[UUID, str]:
    """The names of these flows, by id (a call per 200)."""
    wanted = list(dict.fromkeys(flow_ids))
    names: dict[UUID, str] = {}
    for start in range(0, len(wanted), PAGE):
        chunk = wanted[start : start + PAGE]
        for flow in client.read_flows(flow_filter=FlowFilter(id={"any_": chunk}), limit=PAGE):
            names[flow.id] = flow.name
    return names
