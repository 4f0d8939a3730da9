"""Without FLOWRPC_TEST_DATABASE_URL the PostgreSQL tests skip, and pytest says in one line how
to run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parents[1]
ONE_TEST = "service/client/test_client_gaps.py::test_delete_deployment_keeps_its_runs"


def test_skipped_postgres_tests_print_how_to_run_them():
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWRPC_TEST")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
        + [str(TESTS / ONE_TEST)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout
    hints = [line for line in done.stdout.splitlines() if "PostgreSQL tests skipped" in line]
    assert hints == [
        "2 PostgreSQL tests skipped; to run them: "
        "FLOWRPC_TEST_DATABASE_URL=postgresql+psycopg://USER@HOST:5432/DB make test "
        "(see the README, Testing)"
    ]
