"""`flowrpc server start` (serve until SIGINT or SIGTERM) and `flowrpc server status`."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from flowrpc.cli.common import Connection, configure_logging, server_settings, with_connection
from flowrpc.log_format import LogFormat

app = typer.Typer(name="server", help="Run the service.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL (FLOWRPC_DATABASE_URL); default: SQLite under FLOWRPC_HOME",
        metavar="URL",
        show_default=False,
    ),
]


def _option(help_text: str, metavar: str) -> typer.models.OptionInfo:
    return typer.Option(help=help_text, metavar=metavar, show_default=False)


@app.command()
def start(
    host: Annotated[
        str | None, _option("address to bind (default 127.0.0.1, FLOWRPC_HOST)", "HOST")
    ] = None,
    port: Annotated[
        int | None, _option("port (default 4250, FLOWRPC_PORT; 0 = any)", "PORT")
    ] = None,
    database_url: DatabaseUrl = None,
    tls_cert: Annotated[
        str | None, _option("PEM certificate chain: TLS only (FLOWRPC_TLS_CERT)", "PEM")
    ] = None,
    tls_key: Annotated[
        str | None, _option("PEM private key of --tls-cert (FLOWRPC_TLS_KEY)", "PEM")
    ] = None,
    tls_client_ca: Annotated[
        str | None,
        _option(
            "PEM CA certificates: require client certificates they signed (FLOWRPC_TLS_CLIENT_CA)",
            "PEM",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        _option(
            "serve Prometheus metrics at http://HOST:PORT/metrics (FLOWRPC_METRICS_PORT; "
            "default off; FLOWRPC_METRICS_HOST binds another address)",
            "PORT",
        ),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        _option(
            "text lines, or one JSON object a line (FLOWRPC_LOG_FORMAT; default text)", "FORMAT"
        ),
    ] = None,
) -> None:
    """Serve until SIGINT or SIGTERM."""
    settings = server_settings(
        host=host,
        port=port,
        database_url=database_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        metrics_port=metrics_port,
        log_format=log_format,
    )
    configure_logging(settings)
    from flowrpc.server.app import StartupError, run

    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers are set
            run(settings)
    except StartupError as error:  # a taken port, unusable certificate files
        sys.exit(f"flowrpc: error: {error}")


@app.command()
@with_connection
def status(connection: Connection) -> None:
    """Ask a running server whether it serves (grpc.health.v1); exit 1 unless SERVING."""
    with connection.client() as client:
        answer = client.hello()
    print(f"{client.api_url}: {answer}")
    if answer != "SERVING":
        raise typer.Exit(1)
