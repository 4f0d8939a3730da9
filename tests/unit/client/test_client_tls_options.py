"""Which channel the TLS options make (the handshakes themselves: test_client_tls.py)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from flowrpc.client.channel import ChannelConfig, TlsFiles

TLS_VARIABLES = ("FLOWRPC_API_TLS_CA", "FLOWRPC_API_TLS_CERT", "FLOWRPC_API_TLS_KEY")


@pytest.fixture(autouse=True)
def no_tls_environment(monkeypatch):
    for name in (*TLS_VARIABLES, "FLOWRPC_API_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "any.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")  # read, not parsed, when configuring
    return path


def test_plaintext_unless_asked():
    assert ChannelConfig.from_settings("127.0.0.1:4250").credentials is None


def test_a_ca_file_argument_or_variable_or_https_makes_a_tls_channel(pem: Path, monkeypatch):
    assert ChannelConfig.from_settings("h:1", tls=TlsFiles(ca=pem)).credentials is not None
    https = ChannelConfig.from_settings("https://flowrpc.example.com:443")
    assert https.credentials is not None and https.target == "flowrpc.example.com:443"
    monkeypatch.setenv("FLOWRPC_API_TLS_CA", str(pem))
    assert ChannelConfig.from_settings("h:1").credentials is not None


def test_a_client_certificate_needs_its_key(pem: Path, monkeypatch):
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        ChannelConfig.from_settings("h:1", tls=TlsFiles(cert=pem))
    monkeypatch.setenv("FLOWRPC_API_TLS_KEY", str(pem))
    config = ChannelConfig.from_settings("h:1", tls=TlsFiles(cert=pem))
    assert config.credentials is not None


def test_credentials_or_files_not_both(pem: Path):
    with pytest.raises(ValueError, match="not both"):
        ChannelConfig.from_settings(
            "h:1", credentials=grpc.ssl_channel_credentials(), tls=TlsFiles(ca=pem)
        )


def test_a_missing_file_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere.pem"):
        ChannelConfig.from_settings("h:1", tls=TlsFiles(ca=tmp_path / "nowhere.pem"))
