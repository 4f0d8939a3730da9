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
