"""TLS and mutual TLS through a real server and the real clients, with certificates made here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from certificates import Authority
from harness import running_server, sqlite_settings

from flowrpc import get_client
from flowrpc.client import ServiceUnavailable, Unauthenticated
from flowrpc.server.app import StartupError, start_server


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    (tmp_path / "pki").mkdir()
    return Authority.create(tmp_path / "pki")


def tls_settings(tmp_path: Path, ca: Authority, **overrides):
    server = ca.issue("server", server=True)
    return sqlite_settings(tmp_path, tls_cert=server.cert, tls_key=server.key, **overrides)


async def test_tls_serves_the_async_and_the_sync_client_and_no_plaintext(
    tmp_path: Path, ca: Authority, monkeypatch
):
    with running_server(tls_settings(tmp_path, ca)) as server:
        address = f"127.0.0.1:{server.port}"
        async with get_client(api_url=address, tls_ca=ca.cert) as client:
            flow_id = await client.create_flow_from_name("etl")
            assert await client.hello() == "SERVING"
        monkeypatch.setenv("FLOWRPC_API_TLS_CA", str(ca.cert))
        with get_client(sync_client=True, api_url=f"localhost:{server.port}") as sync:
            assert sync.read_flow(flow_id).name == "etl"
        monkeypatch.delenv("FLOWRPC_API_TLS_CA")
        # Plaintext finds no server: there is no plaintext port.
        async with get_client(api_url=address, timeout=3, retry_attempts=1) as plain:
            with pytest.raises(ServiceUnavailable):
                await plain.read_flow(flow_id)
        # A server certificate from an authority the client does not trust is refused.
        (tmp_path / "other").mkdir()
        stranger = Authority.create(tmp_path / "other", "stranger")
        distrusting = get_client(
            sync_client=True, api_url=address, tls_ca=stranger.cert, timeout=3, retry_attempts=1
        )
        with distrusting as c, pytest.raises(ServiceUnavailable):
            c.read_flow(flow_id)


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    tmp_path: Path, ca: Authority, monkeypatch
):
    settings = tls_settings(tmp_path, ca, tls_client_ca=ca.cert, api_key="s3cret")
    worker = ca.issue("worker", server=False)
    with running_server(settings) as server:
        address = f"127.0.0.1:{server.port}"
        async with get_client(
            api_url=address, tls_ca=ca.cert, api_key="s3cret", timeout=3, retry_attempts=1
        ) as c:
            with pytest.raises(ServiceUnavailable):
                await c.create_flow_from_name("etl")
        async with get_client(
            api_url=address, tls_ca=ca.cert, tls_cert=worker.cert, tls_key=worker.key
        ) as client:
            # The certificate gets a connection; the API key is still required on top of it.
            with pytest.raises(Unauthenticated):
                await client.create_flow_from_name("etl")
        monkeypatch.setenv("FLOWRPC_API_TLS_CA", str(ca.cert))
        monkeypatch.setenv("FLOWRPC_API_TLS_CERT", str(worker.cert))
        monkeypatch.setenv("FLOWRPC_API_TLS_KEY", str(worker.key))
        with get_client(sync_client=True, api_url=address, api_key="s3cret") as sync:
            flow_id = sync.create_flow_from_name("etl")
            assert sync.read_flow(flow_id).name == "etl"


async def test_a_client_certificate_from_another_authority_is_refused(
    tmp_path: Path, ca: Authority
):
    (tmp_path / "other").mkdir()
    forged = Authority.create(tmp_path / "other", "stranger").issue("mallory", server=False)
    with running_server(tls_settings(tmp_path, ca, tls_client_ca=ca.cert)) as server:
        address = f"127.0.0.1:{server.port}"
        async with get_client(
            api_url=address,
            tls_ca=ca.cert,
            tls_cert=forged.cert,
            tls_key=forged.key,
            timeout=3,
            retry_attempts=1,
        ) as client:
            with pytest.raises(ServiceUnavailable):
                await client.read_flows()


async def test_missing_or_unusable_certificate_files_stop_the_start(tmp_path: Path, ca: Authority):
    server = ca.issue("server", server=True)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    cases = {
        "cannot read": dict(tls_cert=tmp_path / "missing.pem", tls_key=server.key),
        "--tls-client-ca: cannot read": dict(
            tls_cert=server.cert, tls_key=server.key, tls_client_ca=tmp_path / "no-ca.pem"
        ),
        "not usable": dict(tls_cert=garbage, tls_key=server.key),
        "the key does not belong": dict(
            tls_cert=server.cert, tls_key=ca.issue("other", server=True).key
        ),
        "--tls-client-ca: not usable": dict(
            tls_cert=server.cert, tls_key=server.key, tls_client_ca=garbage
        ),
        "both --tls-cert and --tls-key": dict(tls_cert=server.cert),
    }
    for expected, files in cases.items():
        with pytest.raises(StartupError, match=expected):
            await start_server(sqlite_settings(tmp_path, **files))


def test_the_command_exits_non_zero_naming_the_missing_file(tmp_path: Path):
    missing = tmp_path / "missing.pem"
    finished = subprocess.run(
        [sys.executable, "-m", "flowrpc.cli", "server", "start", "--port", "0"]
        + ["--database-url", f"sqlite:///{tmp_path / 'flowrpc.db'}"]
        + ["--tls-cert", str(missing), "--tls-key", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1
    assert f"cannot read {missing}" in finished.stderr
