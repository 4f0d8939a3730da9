"""Where and how the client connects: target resolution, channel options, call metadata.

Both clients build their channel from `ChannelConfig`, so the sync and async channels behave the
same: keepalive, message size limits, round-robin over several addresses, TLS, and the retry
policy the clients apply to calls that are safe to repeat (see `retries`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from flowrpc.client.retries import RetryPolicy

DEFAULT_API_URL = "127.0.0.1:4250"
_process_api_url: str | None = None  # use_process_api_url
DEFAULT_TIMEOUT = 30.0
TLS_SCHEMES = ("https://", "grpcs://")  # TLS with the system's CA certificates
MAX_MESSAGE_BYTES = (
    64 * 1024 * 1024
)  # a page of 200 runs with large parameters exceeds grpc's 4 MiB


def use_process_api_url(api_url: str | None) -> None:
    """Makes `api_url` the address of this process's clients that are given none and see no
    FLOWRPC_API_URL (the SDK's embedded server registers itself here, so `get_client()` inside a
    flow reaches it); None restores the default."""
    global _process_api_url
    _process_api_url = api_url


def service_config(load_balanced: bool) -> str:
    config = {"loadBalancingConfig": [{"round_robin": {}}]} if load_balanced else {}
    return json.dumps(config)


def resolve_target(api_url: str) -> tuple[str, bool]:
    """A grpc target for an address, and whether to balance calls over several backends.

    Accepts "host:port", "host:port,host:port" (a static list) and any grpc target URI such as
    "dns:///name:port" (every address DNS returns). A leading http:// or grpc:// is dropped so a
    Prefect-style URL works.
    """
    url = api_url.strip()
    for scheme in ("http://", "grpc://", *TLS_SCHEMES):
        url = url.removeprefix(scheme)
    url = url.rstrip("/")
    if url.startswith("dns:"):
        return url, True
    if ":///" in url or url.startswith(("ipv4:", "ipv6:", "unix:", "unix-abstract:")):
        return url, "," in url
    if "," not in url:
        return url, False
    return _static_list_target([part.strip() for part in url.split(",") if part.strip()]), True


def _static_list_target(addresses: list[str]) -> str:
    # grpc has a static-list resolver only for IP literals ("ipv4:a:p,b:p"), so host names are
    # resolved once, here.
    v4: list[str] = []
    v6: list[str] = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        for ip in _ips(host, port):
            (v4 if ip.version == 4 else v6).append(
                f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"
            )
    if v4:
        return "ipv4:" + ",".join(dict.fromkeys(v4))
    return "ipv6:" + ",".join(dict.fromkeys(v6))


def _ips(host: str, port: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        return [ipaddress.ip_address(info[4][0]) for info in infos]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS channel: the CA certificates that signed the server's certificate
    (default: the system's), and a client certificate with its key for servers that ask (mTLS)."""

    ca: str | Path | None = None
    cert: str | Path | None = None
    key: str | Path | None = None

    def or_environment(self) -> TlsFiles:
        """Each file not given from FLOWRPC_API_TLS_CA / _CERT / _KEY."""
        env = os.environ.get
        return TlsFiles(
            self.ca or env("FLOWRPC_API_TLS_CA") or None,
            self.cert or env("FLOWRPC_API_TLS_CERT") or None,
            self.key or env("FLOWRPC_API_TLS_KEY") or None,
        )

    @property
    def given(self) -> bool:
        return bool(self.ca or self.cert or self.key)

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert) != bool(self.key):
            raise ValueError("tls_cert and tls_key go together: a client certificate and its key")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca),
            private_key=_read(self.key),
            certificate_chain=_read(self.cert),
        )


def _read(path: str | Path | None) -> bytes | None:
    return Path(path).expanduser().read_bytes() if path else None


@dataclass(frozen=True)
class ChannelConfig:
    """Everything needed to open a channel and make calls on it."""

    target: str
    load_balanced: bool = False
    api_key: str | None = None
    credentials: grpc.ChannelCredentials | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    extra_options: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def from_settings(
        cls,
        api_url: str | None = None,
        api_key: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry_attempts: int | None = None,
        retry_backoff: float | None = None,
        tls: TlsFiles | None = None,
    ) -> ChannelConfig:
        """Arguments win over FLOWRPC_API_URL / FLOWRPC_API_KEY / FLOWRPC_RETRY_* /
        FLOWRPC_API_TLS_*, which win over the defaults."""
        url = api_url or os.environ.get("FLOWRPC_API_URL") or _process_api_url or DEFAULT_API_URL
        target, balanced = resolve_target(url)
        files = (tls or TlsFiles()).or_environment()
        if credentials is not None and files.given:
            raise ValueError("give either credentials or tls_ca/tls_cert/tls_key, not both")
        if credentials is None and (files.given or url.strip().startswith(TLS_SCHEMES)):
            credentials = files.credentials()
        return cls(
            target=target,
            load_balanced=balanced,
            api_key=api_key or os.environ.get("FLOWRPC_API_KEY") or None,
            credentials=credentials,
            timeout=timeout,
            retry=RetryPolicy.from_settings(retry_attempts, retry_backoff),
        )

    @property
    def options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Detect a dead connection during long calls; no pings while idle, which servers
            # with default settings would punish (GOAWAY too_many_pings).
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 0),
            # Reconnect to a server that went away at least every 2 s (grpc's backoff grows to
            # 120 s), so one back after a restart is found within the retry window.
            ("grpc.max_reconnect_backoff_ms", 2_000),
            ("grpc.service_config", service_config(self.load_balanced)),
            ("grpc.primary_user_agent", "flowrpc-python"),
            *self.extra_options,
        ]

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata sent with every call (per call, because call credentials need TLS)."""
        if self.api_key:
            return (("authorization", f"Bearer {self.api_key}"),)
        return ()

    def open_sync(self) -> grpc.Channel:
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials, options=self.options)
        return grpc.insecure_channel(self.target, options=self.options)

    def open_async(self) -> grpc.aio.Channel:
        if self.credentials is not None:
            return grpc.aio.secure_channel(self.target, self.credentials, options=self.options)
        return grpc.aio.insecure_channel(self.target, options=self.options)
