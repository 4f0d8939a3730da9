"""`flowrpc --version`, and a command given without its action lists the actions (exit 2)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from flowrpc.cli import main


def test_version_prints_the_package_version():
    done = subprocess.run(
        [sys.executable, "-m", "flowrpc.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout == f"flowrpc {importlib.metadata.version('flowrpc')}\n"


@pytest.mark.parametrize(
    ("argv", "listed"),
    [
        ([], ["server", "database", "api-key"]),
        (["server"], ["start"]),
        (["database"], ["upgrade"]),
        (["api-key"], ["create", "ls", "revoke"]),
    ],
)
def test_a_command_alone_lists_its_subcommands(capsys, argv, listed):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    help_text = capsys.readouterr().err
    assert help_text.startswith(f"usage: {' '.join(['flowrpc', *argv])} ")
    assert "required" not in help_text
    for name in listed:
        assert f"\n    {name} " in help_text
