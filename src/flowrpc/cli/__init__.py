"""The `flowrpc` command (typer + rich), one module per command group:

flowrpc server start      serve; `server status` asks a running one (server.py)
flowrpc database upgrade  migrate the schema (database.py)
flowrpc api-key ...       create, ls, revoke keys in the database (api_key.py)
flowrpc flow-run ...      ls, inspect, cancel, delete, history (flow_run.py)
flowrpc flow ls | deployment ls | work-pool ls
flowrpc --version

The server-side groups use the server's settings; the others talk to a server through the
Python client, with --api-url, --api-key and --tls-* (or the FLOWRPC_* variables). Exit codes:
0 success, 1 not found or refused, 2 usage errors (common.py).
"""

from __future__ import annotations

import importlib.metadata
from typing import Annotated

import typer

from flowrpc.cli import api_key, database, deployment, flow, flow_run, server, work_pool

app = typer.Typer(
    name="flowrpc",
    help="flowrpc: flow runs over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a bug shows Python's plain traceback, never locals
)
for group in (server, database, api_key, flow_run, flow, deployment, work_pool):
    app.add_typer(group.app)


def _version(given: bool) -> None:
    if given:
        print(f"flowrpc {importlib.metadata.version('flowrpc')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """flowrpc: flow runs over gRPC."""


def main(argv: list[str] | None = None) -> None:
    """Runs the command line `argv` (default: the process's arguments). Returns on success;
    otherwise exits with the command's status (1 refused or not found, 2 usage)."""
    try:
        app(args=argv, prog_name="flowrpc")
    except SystemExit as exit:
        if exit.code not in (0, None):
            raise
