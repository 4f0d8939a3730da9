"""What every command group shares: failing with an exit code, the server's settings, logging,
consoles, and option groups (options that several commands take, added by one decorator).

Exit codes: 0 success, 1 not found or refused (by the server, or by the person at a prompt),
2 usage errors (bad flags or values, unusable settings).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from flowrpc import log_format
from flowrpc.settings import Settings

USAGE = 2
REFUSED = 1


def fail(message: str, code: int = REFUSED) -> NoReturn:
    """Prints `flowrpc: error: <message>` on one line to stderr and exits with `code`."""
    line = " ".join(message.split())  # one line, whatever the message holds
    print(f"flowrpc: error: {line}", file=sys.stderr)
    raise typer.Exit(code)


def server_settings(**given: Any) -> Settings:
    """The server's settings from the options given (None: not given, so the FLOWRPC_*
    variables and defaults apply); unusable ones are a usage error naming each setting."""
    try:
        return Settings(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        print(f"flowrpc: error: invalid settings: {problems}", file=sys.stderr)
        raise typer.Exit(USAGE) from None


def configure_logging(settings: Settings, quiet: bool = False) -> None:
    """Log lines for the server-side commands, in the settings' log format; `quiet` keeps only
    warnings (for commands whose output is their answer, not migrations)."""
    log_format.configure_logging(settings.log_format, logging.WARNING if quiet else logging.INFO)


PIPE_WIDTH = 160


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), made per command so it writes where the output
    goes now (a terminal, a pipe, a test's capture). Into a pipe, without COLUMNS, lines may
    be PIPE_WIDTH long rather than the 80 columns rich assumes, so tables keep one run a line."""
    # Names, tags and messages are data: no markup, emoji codes or highlighting in them.
    out = Console(stderr=stderr, highlight=False, markup=False, emoji=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout, for scripts (no colours, no wrapping)."""
    import json

    print(json.dumps(data, indent=2, default=str))


# ---- option groups ----


def option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    """A keyword parameter for an option group (`annotation` is an Annotated typer.Option)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def option_group(
    argument: str, params: list[inspect.Parameter], build: Callable[..., Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator giving a command the options `params`; the command receives
    `build(**their values)` as its `argument` instead. One place declares options that many
    commands share (typer reads a command's options from its signature)."""
    names = [param.name for param in params]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return command(*args, **{argument: build(**values)}, **kwargs)

        own = [param for param in signature.parameters.values() if param.name != argument]
        wrapper.__signature__ = signature.replace(parameters=[*own, *params])  # type: ignore[attr-defined]
        return wrapper

    return decorate


# ---- the connection to a server ----

CONNECTION = "Connection (default: the FLOWRPC_* variables)"


@dataclass(frozen=True)
class Connection:
    """Where and how a client command reaches the server; None means the client's default,
    which comes from FLOWRPC_API_URL, FLOWRPC_API_KEY and FLOWRPC_API_TLS_*."""

    api_url: str | None = None
    api_key: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @contextmanager
    def client(self) -> Iterator[Any]:
        """An open sync client; a failed call exits with one line and status 1, no traceback."""
        from flowrpc import get_client
        from flowrpc.client import FlowRPCError

        try:
            client = get_client(
                sync_client=True,
                api_url=self.api_url,
                api_key=self.api_key,
                tls_ca=self.tls_ca,
                tls_cert=self.tls_cert,
                tls_key=self.tls_key,
            )
        except (ValueError, OSError) as error:  # unreadable or unpaired TLS files
            fail(str(error), USAGE)
        try:
            with client:
                yield client
        except FlowRPCError as error:
            fail(describe(error, client.api_url))


def describe(error: Any, target: str) -> str:
    """One line for a failed call, saying what to do where that is clear."""
    from flowrpc.client import PermissionDenied, ServiceUnavailable, Unauthenticated

    if isinstance(error, ServiceUnavailable):
        return f"cannot reach the server at {target}: {error}"
    if isinstance(error, Unauthenticated):
        return f"{error} (give a key with --api-key or FLOWRPC_API_KEY)"
    if isinstance(error, PermissionDenied):
        return f"{error} (the API key's role does not allow this call)"
    return str(error)


def _pem(help_text: str) -> Any:
    return Annotated[
        Path | None,
        typer.Option(
            help=help_text,
            exists=True,
            dir_okay=False,
            metavar="PEM",
            rich_help_panel=CONNECTION,
            show_default=False,
        ),
    ]


with_connection = option_group(
    "connection",
    [
        option(
            "api_url",
            Annotated[
                str | None,
                typer.Option(
                    help="server address, host:port (FLOWRPC_API_URL; default 127.0.0.1:4250)",
                    metavar="URL",
                    rich_help_panel=CONNECTION,
                    show_default=False,
                ),
            ],
        ),
        option(
            "api_key",
            Annotated[
                str | None,
                typer.Option(
                    help="API key (FLOWRPC_API_KEY)",
                    metavar="KEY",
                    rich_help_panel=CONNECTION,
                    show_default=False,
                ),
            ],
        ),
        option(
            "tls_ca", _pem("CA certificates of the server's TLS certificate (FLOWRPC_API_TLS_CA)")
        ),
        option("tls_cert", _pem("client certificate for mTLS (FLOWRPC_API_TLS_CERT)")),
        option("tls_key", _pem("key of --tls-cert (FLOWRPC_API_TLS_KEY)")),
    ],
    Connection,
)
