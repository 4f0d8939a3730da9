"""Where and how the client connects: target resolution, channel options, call metadata.

Both clients build their channel from `ChannelConfig`, so the sync and async channels behave the
same: keepalive, message size limits, round-robin over several addresses, TLS, and transparent
retries of idempotent calls on UNAVAILABLE through grpc's service config (the retry loop lives in
grpc core, not here).
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

from flowrpc.v1 import (
    deployment_service_pb2,
    flow_run_service_pb2,
    flow_service_pb2,
    task_run_service_pb2,
    work_pool_service_pb2,
)

DEFAULT_API_URL = "127.0.0.1:4250"
DEFAULT_TIMEOUT = 30.0
TLS_SCHEMES = ("https://", "grpcs://")  # TLS with the system's CA certificates
MAX_MESSAGE_BYTES = (
    64 * 1024 * 1024
)  # a page of 200 runs with large parameters exceeds grpc's 4 MiB

_SERVICE_MODULES = (
    flow_run_service_pb2,
    flow_service_pb2,
    deployment_service_pb2,
    work_pool_service_pb2,
    task_run_service_pb2,
)
# Reads never change anything, so replaying them after UNAVAILABLE is safe; writes are not retried
# (a create whose response was lost could otherwise run twice).
_IDEMPOTENT_PREFIXES = ("Get", "List", "Count", "Stream")


def idempotent_methods() -> list[dict[str, str]]:
    """Service-config names of every read-only RPC, found from the service descriptors."""
    names = [{"service": "grpc.health.v1.Health", "method": "Check"}]
    for module in _SERVICE_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            names.extend(
                {"service": service.full_name, "method": method.name}
                for method in service.methods
                if method.name.startswith(_IDEMPOTENT_PREFIXES)
            )
    return names


def service_config(load_balanced: bool) -> str:
    config: dict[str, Any] = {
        "methodConfig": [
            {
                "name": idempotent_methods(),
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    if load_balanced:
        config["loadBalancingConfig"] = [{"round_robin": {}}]
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
    extra_options: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def from_settings(
        cls,
        api_url: str | None = None,
        api_key: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        tls: TlsFiles | None = None,
    ) -> ChannelConfig:
        """Arguments win over FLOWRPC_API_URL / FLOWRPC_API_KEY / FLOWRPC_API_TLS_*, which win
        over the default."""
        url = api_url or os.environ.get("FLOWRPC_API_URL") or DEFAULT_API_URL
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
            ("grpc.enable_retries", 1),
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
