"""How client commands reach a server: --api-url/--api-key/--tls-* or the FLOWRPC_* variables,
API keys and roles, TLS, and one-line failures with exit status 1 (2 for usage)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from certificates import Authority
from cli_support import flowrpc, serve
from harness import free_port, server_process

from flowrpc import get_client

COMMANDS = [
    ("flow-run", "ls"),
    ("flow-run", "history"),
    ("flow-run", "inspect", "00000000-0000-7000-8000-000000000000"),
    ("flow-run", "cancel", "--all", "--yes"),
    ("flow-run", "delete", "--all", "--yes"),
    ("flow", "ls"),
    ("deployment", "ls"),
    ("work-pool", "ls"),
]


@pytest.fixture
def address(tmp_path: Path):
    yield from serve(tmp_path)


def test_the_flag_wins_over_the_variable(address):
    dead = f"127.0.0.1:{free_port()}"
    with get_client(sync_client=True, api_url=address) as client:
        client.create_flow_from_name("etl")
    by_flag = flowrpc(dead, "flow", "ls", "--json", "--api-url", address)
    assert by_flag.exit_code == 0 and '"name": "etl"' in by_flag.stdout
    by_variable = flowrpc(address, "flow", "ls", "--json")
    assert by_variable.stdout == by_flag.stdout


@pytest.mark.parametrize("command", [*COMMANDS, ("server", "status")], ids=" ".join)
def test_an_unreachable_server_is_one_line_and_status_1(command):
    dead = f"127.0.0.1:{free_port()}"
    result = flowrpc(dead, *command)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"flowrpc: error: cannot reach the server at {dead}: ")
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_server_status_says_serving_and_not_serving_while_draining(tmp_path: Path):
    import signal
    import time

    with server_process(f"sqlite:///{tmp_path / 'flowrpc.db'}", drain_seconds=5) as (
        process,
        address,
    ):
        serving = flowrpc(address, "server", "status")
        assert (serving.exit_code, serving.stdout) == (0, f"{address}: SERVING\n")
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (draining := flowrpc(address, "server", "status")).exit_code == 0:
            assert time.monotonic() < deadline, "still SERVING after SIGTERM"
            time.sleep(0.05)
        assert (draining.exit_code, draining.stdout) == (1, f"{address}: NOT_SERVING\n")


def test_the_real_command_exits_1_without_a_traceback():
    dead = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "flowrpc.cli", "flow-run", "ls", "--api-url", dead],
        capture_output=True,
        text=True,
        env={"FLOWRPC_RETRY_ATTEMPTS": "1", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("flowrpc: error: cannot reach the server")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_every_command_needs_the_key_once_the_server_asks(tmp_path: Path):
    for address in serve(tmp_path, api_key="s3cret"):
        # Health is open to all, as for load balancers.
        assert flowrpc(address, "server", "status").exit_code == 0
        with get_client(sync_client=True, api_url=address, api_key="s3cret") as client:
            client.create_flow_run(type("Flow", (), {"name": "etl"}))
        for command in COMMANDS:
            refused = flowrpc(address, *command)
            assert refused.exit_code == 1, (command, refused.output)
            assert refused.stderr.startswith("flowrpc: error: ")
            assert "(give a key with --api-key or FLOWRPC_API_KEY)" in refused.stderr
        wrong = flowrpc(address, "flow", "ls", "--api-key", "nope")
        assert wrong.exit_code == 1
        by_flag = flowrpc(address, "flow-run", "ls", "--json", "--api-key", "s3cret")
        assert by_flag.exit_code == 0 and by_flag.stdout.count('"flow_id"') == 1
        by_variable = flowrpc(address, "flow", "ls", "--json", FLOWRPC_API_KEY="s3cret")
        assert by_variable.exit_code == 0 and '"name": "etl"' in by_variable.stdout


def test_a_read_key_may_list_but_not_delete(tmp_path: Path, capsys):
    from flowrpc.cli import main

    url = f"sqlite:///{tmp_path / 'flowrpc.db'}"
    main(["api-key", "create", "--name", "reader", "--role", "read", "--database-url", url])
    read_key = capsys.readouterr().out.strip()
    for address in serve(tmp_path, api_key="s3cret"):
        with get_client(sync_client=True, api_url=address, api_key="s3cret") as client:
            client.create_flow_run(type("Flow", (), {"name": "etl"}))
        listed = flowrpc(address, "flow-run", "ls", "--json", FLOWRPC_API_KEY=read_key)
        assert listed.exit_code == 0
        refused = flowrpc(address, "flow-run", "delete", "--all", "--yes", FLOWRPC_API_KEY=read_key)
        assert refused.exit_code == 1
        assert "(the API key's role does not allow this call)" in refused.stderr
        with get_client(sync_client=True, api_url=address, api_key="s3cret") as client:
            assert client.count_flow_runs() == 1


def test_tls_by_flag_or_variable(tmp_path: Path):
    (tmp_path / "pki").mkdir()
    ca = Authority.create(tmp_path / "pki")
    server = ca.issue("server", server=True)
    for address in serve(tmp_path, tls_cert=server.cert, tls_key=server.key):
        by_flag = flowrpc(address, "flow", "ls", "--json", "--tls-ca", str(ca.cert))
        assert (by_flag.exit_code, by_flag.stdout) == (0, "[]\n")
        by_variable = flowrpc(address, "flow", "ls", "--json", FLOWRPC_API_TLS_CA=str(ca.cert))
        assert (by_variable.exit_code, by_variable.stdout) == (0, "[]\n")
        plain = flowrpc(address, "flow", "ls")
        assert plain.exit_code == 1 and "cannot reach the server" in plain.stderr
        missing = flowrpc(address, "flow", "ls", "--tls-ca", str(tmp_path / "none.pem"))
        assert missing.exit_code == 2 and "does not exist" in missing.stderr
        unpaired = flowrpc(
            address, "flow", "ls", "--tls-ca", str(ca.cert), "--tls-cert", str(ca.cert)
        )
        assert unpaired.exit_code == 2
        assert "flowrpc: error: tls_cert and tls_key go together" in unpaired.stderr
