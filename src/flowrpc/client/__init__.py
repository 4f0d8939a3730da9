"""The flowrpc client: `get_client()` and the clients it returns, with typed errors.

async with get_client() as client:
    runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=10)

with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(limit=10)
"""

from __future__ import annotations

from typing import Literal, overload

import grpc

# Importing operations registers them before the client classes are built.
from flowrpc.client import operations as _operations  # noqa: F401
from flowrpc.client.async_client import FlowRPCClient
from flowrpc.client.channel import DEFAULT_API_URL, DEFAULT_TIMEOUT, ChannelConfig
from flowrpc.client.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FlowRPCError,
    InternalError,
    InvalidRequest,
    ObjectAlreadyExists,
    ObjectNotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceUnavailable,
    Unauthenticated,
)
from flowrpc.client.sync_client import SyncFlowRPCClient

__all__ = [
    "DEFAULT_API_URL",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FlowRPCClient",
    "FlowRPCError",
    "InternalError",
    "InvalidRequest",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceUnavailable",
    "SyncFlowRPCClient",
    "Unauthenticated",
    "get_client",
]


@overload
def get_client(
    sync_client: Literal[False] = False,
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    retry_attempts: int | None = None,
    retry_backoff: float | None = None,
) -> FlowRPCClient: ...


@overload
def get_client(
    sync_client: Literal[True],
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    retry_attempts: int | None = None,
    retry_backoff: float | None = None,
) -> SyncFlowRPCClient: ...


def get_client(
    sync_client: bool = False,
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    retry_attempts: int | None = None,
    retry_backoff: float | None = None,
) -> FlowRPCClient | SyncFlowRPCClient:
    """A client for the flowrpc server: the async client (an async context manager), or with
    sync_client=True the sync client (a context manager).

    api_url: "host:port", "host:port,host:port" or a grpc target such as "dns:///name:port"
    (several addresses are used round-robin); default FLOWRPC_API_URL, else 127.0.0.1:4250.
    api_key: sent as `authorization: Bearer <key>`; default FLOWRPC_API_KEY.
    timeout: seconds per unary call attempt (streams have none). credentials: TLS channel
    credentials.
    retry_attempts, retry_backoff: calls that are safe to repeat (reads, keyed creates, state
    changes with a transition id) are tried up to retry_attempts times on UNAVAILABLE, waiting
    about retry_backoff seconds, then twice that and so on (default FLOWRPC_RETRY_ATTEMPTS, else
    5; FLOWRPC_RETRY_BACKOFF_SECONDS, else 1); retry_attempts=1 turns retries off.
    """
    config = ChannelConfig.from_settings(
        api_url, api_key, credentials, timeout, retry_attempts, retry_backoff
    )
    return SyncFlowRPCClient(config) if sync_client else FlowRPCClient(config)
