"""Shared fixtures: a real flowrpc server on 127.0.0.1:0, over a fresh temporary SQLite file and,
when FLOWRPC_TEST_DATABASE_URL names a PostgreSQL database, over an emptied schema in it too."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import postgres_schema, running_server, sqlite_settings

from flowrpc.server.storage.database import Database
from flowrpc.server.storage.tables import metadata
from flowrpc.settings import Settings

POSTGRES_URL = os.environ.get("FLOWRPC_TEST_DATABASE_URL")
# CI sets this so that a missing database fails the run instead of skipping half of it.
REQUIRE_POSTGRES = os.environ.get("FLOWRPC_TEST_REQUIRE_POSTGRES") == "1"

# A run started in the background by a non-interactive shell (`cmd &`) inherits SIGINT ignored,
# and so would the CLI processes that tests stop with Ctrl-C (they would never stop): give this
# process Python's own handler back, which its children then start with.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after the short summary's skips
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """One line saying how to run the PostgreSQL tests, when they skipped for want of a URL."""
    yield
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "FLOWRPC_TEST_DATABASE_URL" in str(report.longrepr)
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} PostgreSQL tests skipped; to run them: "
            "FLOWRPC_TEST_DATABASE_URL=postgresql+psycopg://USER@HOST:5432/DB make test "
            "(see the README, Testing)",
            yellow=True,
        )


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[sa.Engine]:
    """One migrated schema for the session; tests empty it rather than rebuild it."""
    with postgres_schema(_postgres_url()) as url:
        db = Database(url)
        db.migrate()
        db.close()
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        yield engine
        engine.dispose()


def _postgres_url() -> str:
    """The PostgreSQL database to test on: a skip without one, a failure when CI requires it."""
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("FLOWRPC_TEST_REQUIRE_POSTGRES=1 but FLOWRPC_TEST_DATABASE_URL is not set")
        pytest.skip("set FLOWRPC_TEST_DATABASE_URL to a PostgreSQL URL to run the PostgreSQL suite")
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for servers in child processes: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flowrpc.db'}"
        return
    with postgres_schema(_postgres_url()) as url:
        yield url


# Background services off: a run scheduled in the past must not turn Late under a test's feet
# (test_background and test_replicas turn them on).
QUIET = {"late_runs_enabled": False, "pause_expirations_enabled": False}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Server settings on an empty database of each kind."""
    if request.param == "sqlite":
        yield sqlite_settings(tmp_path, **QUIET)
        return
    engine = request.getfixturevalue("postgres_engine")
    on_postgres = [name for name, table in metadata.tables.items() if not table.info.get("dialect")]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(on_postgres)} CASCADE")
    url = engine.url.render_as_string(hide_password=False)
    yield Settings(database_url=url, port=0, **QUIET)


@pytest.fixture
def flowrpc_server(database: Settings) -> Iterator[str]:
    """The address ("127.0.0.1:PORT") of a real server on an empty database."""
    with running_server(database) as server:
        yield f"127.0.0.1:{server.port}"
