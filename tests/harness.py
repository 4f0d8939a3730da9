"""A real flowrpc server for tests: on 127.0.0.1:0, in a thread with its own event loop, so
tests may call it with async and with blocking (sync) clients alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowrpc.server.app import Server, start_server
from flowrpc.settings import Settings


@contextmanager
def running_server(settings: Settings) -> Iterator[Server]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="flowrpc-test-server", daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start_server(settings), loop).result(timeout=30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(grace=1), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def sqlite_settings(directory: Path, **overrides: Any) -> Settings:
    return Settings(database_url=f"sqlite:///{directory / 'flowrpc.db'}", port=0, **overrides)


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database at `url`, dropped afterwards; yields a URL whose
    connections use it."""
    import uuid

    import sqlalchemy as sa

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield (
            sa.make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@contextmanager
def server_process(
    database_url: str, log: Path | None = None, **settings: Any
) -> Iterator[tuple[Any, str]]:
    """A real server in a child process (so a test can SIGKILL it): yields (process, address).
    Its log goes to `log` when given; it does not drain on SIGTERM unless drain_seconds says."""
    import contextlib
    import os
    import signal
    import subprocess

    env = {**os.environ, "FLOWRPC_DATABASE_URL": database_url, "FLOWRPC_PORT": str(free_port())}
    env.update({f"FLOWRPC_{key.upper()}": str(value) for key, value in settings.items()})
    env.setdefault("FLOWRPC_DRAIN_SECONDS", "0")
    port = int(env["FLOWRPC_PORT"])
    with open(log, "wb") if log else contextlib.nullcontext(subprocess.DEVNULL) as output:
        process = start_cli_server(env, output)
    wait_for_port(process, port)
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cli_server(env: dict[str, str], output: Any) -> Any:
    """`flowrpc server start` in a child process with this environment."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "flowrpc.cli", "server", "start"],
        env=env,
        stdout=output,
        stderr=output,
    )


def wait_for_port(process: Any, port: int) -> None:
    """Returns once the port accepts connections; RuntimeError if the process exits first."""
    import socket
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the server process did not start") from None
            time.sleep(0.05)
