"""Shared fixtures: a real flowrpc server on 127.0.0.1:0 over a fresh temporary SQLite file.

The server runs on its own event loop in a thread, so tests may call it with async and with
blocking (sync) clients alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowrpc.server.app import Server, start_server
from flowrpc.settings import Settings


@contextmanager
def running_server(settings: Settings) -> Iterator[Server]:
    loop = asyncio.new_event_loop()
    started: asyncio.Future[Server] = loop.create_future()

    async def main() -> None:
        try:
            started.set_result(await start_server(settings))
        except Exception as error:  # surface start-up failures in the test
            started.set_exception(error)

    thread = threading.Thread(target=loop.run_forever, name="flowrpc-test-server", daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(_await(main(), started), loop).result(timeout=30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(grace=1), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


async def _await(start: object, started: asyncio.Future[Server]) -> Server:
    await start  # type: ignore[misc]
    return await started


def sqlite_settings(directory: Path, **overrides: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{directory / 'flowrpc.db'}", port=0, **overrides  # type: ignore[arg-type]
    )


@pytest.fixture
def flowrpc_server(tmp_path: Path) -> Iterator[str]:
    """The address ("127.0.0.1:PORT") of a real server on a fresh SQLite file."""
    with running_server(sqlite_settings(tmp_path)) as server:
        yield f"127.0.0.1:{server.port}"
