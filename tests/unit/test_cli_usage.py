"""`flowrpc --version`, and a command given without its action lists the actions (exit 2).

The listing is typer's help (on stdout, as typer prints it), so the test reads its panels rather
than argparse's `usage:` lines on stderr."""

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
        ([], ["server", "database", "api-key", "flow-run", "flow", "deployment", "work-pool"]),
        (["server"], ["start", "status"]),
        (["database"], ["upgrade"]),
        (["api-key"], ["create", "ls", "revoke"]),
        (["flow-run"], ["ls", "inspect", "cancel", "delete", "history"]),
        (["flow"], ["ls"]),
        (["deployment"], ["ls"]),
        (["work-pool"], ["ls"]),
    ],
)
def test_a_command_alone_lists_its_subcommands(capsys, argv, listed):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    help_text = capsys.readouterr().out
    assert f"Usage: {' '.join(['flowrpc', *argv])} [OPTIONS] COMMAND [ARGS]..." in help_text
    assert "required" not in help_text
    commands = help_text[help_text.index("─ Commands ─") :]
    rows = [line for line in commands.splitlines()[1:-1] if line[2] != " "]  # not wrapped help
    assert [row.split()[1] for row in rows] == listed


def test_the_api_key_roles_are_the_servers():
    from flowrpc.cli.api_key import RoleName
    from flowrpc.server.access import Role

    assert [name.value for name in RoleName] == [role.label for role in Role]
