"""`flowrpc api-key create / ls / revoke` against a temporary database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowrpc.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flowrpc.db'}"


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[str, str]:
    main(["api-key", *args, "--database-url", url])
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_create_prints_a_key_once_and_keeps_only_its_hash(capsys, url: str):
    out, err = run(capsys, url, "create", "--name", "ci", "--role", "write")
    key = out.strip()
    assert key.startswith("frpc_") and len(key) > 40
    assert "shown only now" in err
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, role, key_hash FROM api_key")).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("ci", "write", hashlib.sha256(key.encode()).hexdigest())
    ]

    second, _ = run(capsys, url, "create", "--name", "reader", "--role", "read")
    assert second.strip() != key
    listing, _ = run(capsys, url, "ls")
    lines = listing.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "CREATED"]
    assert [line.split()[:2] for line in lines[1:]] == [["ci", "write"], ["reader", "read"]]
    assert rows[0].key_hash not in listing and key not in listing


def test_revoke_removes_the_key_and_warns_when_none_is_left(capsys, url: str):
    run(capsys, url, "create", "--name", "a", "--role", "admin")
    run(capsys, url, "create", "--name", "b", "--role", "read")
    _, err = run(capsys, url, "revoke", "a")
    assert "revoked 'a'" in err and "warning" not in err
    assert [line.split()[0] for line in run(capsys, url, "ls")[0].splitlines()[1:]] == ["b"]
    _, err = run(capsys, url, "revoke", "b")
    assert "no API key is left" in err
    assert run(capsys, url, "ls")[0].splitlines() == [
        "NAME                             ROLE   CREATED"
    ]


def test_a_duplicate_or_unknown_name_fails_with_a_message(capsys, url: str):
    run(capsys, url, "create", "--name", "ci", "--role", "write")
    with pytest.raises(SystemExit) as failed:
        run(capsys, url, "create", "--name", "ci", "--role", "admin")
    assert failed.value.code == "flowrpc: An API key named 'ci' already exists."
    with pytest.raises(SystemExit) as failed:
        run(capsys, url, "revoke", "nobody")
    assert failed.value.code == "flowrpc: No API key is named 'nobody'."
    # The command line refuses an unknown role or an empty name (exit status 2, usage on stderr).
    for bad in (["--name", "x", "--role", "root"], ["--name", "", "--role", "read"]):
        with pytest.raises(SystemExit) as failed:
            run(capsys, url, "create", *bad)
        assert failed.value.code == 2
    listing, _ = run(capsys, url, "ls")
    assert [line.split()[:2] for line in listing.splitlines()[1:]] == [["ci", "write"]]
