"""Shared fixtures: a real flowrpc server on 127.0.0.1:0 over a fresh temporary SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import running_server, sqlite_settings


@pytest.fixture
def flowrpc_server(tmp_path: Path) -> Iterator[str]:
    """The address ("127.0.0.1:PORT") of a real server on a fresh SQLite file."""
    with running_server(sqlite_settings(tmp_path)) as server:
        yield f"127.0.0.1:{server.port}"
