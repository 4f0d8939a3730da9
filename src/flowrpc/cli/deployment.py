"""`flowrpc deployment ls`."""

from __future__ import annotations

from typing import Annotated

import typer

from flowrpc.cli import render
from flowrpc.cli.common import Connection, console, print_json, with_connection
from flowrpc.cli.flow import Json, Limit, flow_names
from flowrpc.schemas.filters import FlowFilter

app = typer.Typer(name="deployment", help="Deployments.", no_args_is_help=True)


@app.command("ls")
@with_connection
def list_deployments(
    connection: Connection,
    flow: Annotated[
        list[str] | None,
        typer.Option(help="only the deployments of this flow (repeatable)", metavar="NAME"),
    ] = None,
    limit: Limit = 50,
    json_output: Json = False,
) -> None:
    """List deployments as FLOW/NAME, the form `flow-run ls --flow F --deployment D` takes."""
    flow_filter = FlowFilter(name={"any_": flow}) if flow else None
    with connection.client() as client:
        deployments = client.read_deployments(flow_filter=flow_filter, limit=limit)
        names = flow_names(client, (deployment.flow_id for deployment in deployments))
    if json_output:
        print_json([deployment.model_dump(mode="json") for deployment in deployments])
        return
    rows = render.table("NAME", "ID", "PAUSED", "WORK POOL", "TAGS")
    for deployment in deployments:
        rows.add_row(
            f"{names.get(deployment.flow_id, deployment.flow_id)}/{deployment.name}",
            str(deployment.id),
            "yes" if deployment.paused else "no",
            deployment.work_pool_name or "-",
            ", ".join(deployment.tags),
        )
    console().print(rows)
