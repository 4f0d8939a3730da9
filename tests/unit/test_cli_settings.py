"""Settings the CLI cannot use are a usage error naming the setting, not a traceback."""

from __future__ import annotations

import pytest

from flowrpc.cli import main


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_an_unusable_span_is_a_usage_error(monkeypatch, capsys, tmp_path, value):
    monkeypatch.setenv("FLOWRPC_HOME", str(tmp_path))
    monkeypatch.setenv("FLOWRPC_DRAIN_SECONDS", value)
    with pytest.raises(SystemExit) as exited:
        main(["database", "upgrade"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("flowrpc: error: invalid settings: drain_seconds: ")
    assert not (tmp_path / "flowrpc.db").exists()


@pytest.mark.parametrize("port", ["65536", "-1"])
def test_a_port_out_of_range_is_a_usage_error(monkeypatch, capsys, tmp_path, port):
    # Before: gRPC bound 99999 as 99999 % 65536 and the server started on that port.
    monkeypatch.setenv("FLOWRPC_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        main(["server", "start", "--port", port])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("flowrpc: error: invalid settings: port: ")
    assert not (tmp_path / "flowrpc.db").exists()
