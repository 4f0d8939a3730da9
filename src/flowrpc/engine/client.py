"""The one client the SDK uses in a process: blocking, shared by every thread.

A sync client keeps state changes to one blocking call each (no event loop hop); async flows and
tasks call it too, so the state logic exists once. Where it points is decided by `api_url()`,
FLOWRPC_API_URL when set, else a server embedded in this process (engine/embedded.py).
"""

from __future__ import annotations

import atexit
import os

from flowrpc.client import SyncFlowRPCClient, get_client
from flowrpc.engine import embedded, known_cache
from flowrpc.utilities.processes import process_lock

_lock = process_lock(globals(), "_lock")  # a new one in a forked child
_client: SyncFlowRPCClient | None = None
_client_pid: int | None = None


def api_url() -> str:
    """The server the SDK reports to: FLOWRPC_API_URL, else this process's embedded server."""
    return embedded.api_url()


def sdk_client() -> SyncFlowRPCClient:
    """The process's open sync client (opened on first use, again after a fork)."""
    global _client, _client_pid
    client = _client
    if client is not None and _client_pid == os.getpid():
        return client
    with _lock:
        if _client is None or _client_pid != os.getpid():
            client = get_client(sync_client=True, api_url=api_url())
            client.__enter__()
            _client, _client_pid = client, os.getpid()
            _point_log_shipper()
        return _client


def _log_client() -> SyncFlowRPCClient:
    return get_client(sync_client=True, api_url=api_url())


def _point_log_shipper() -> None:
    """Run logs go where the states go (the shipper opens its own client, from api_url())."""
    from flowrpc.logging import set_client_factory

    set_client_factory(_log_client)


def reset_sdk_client() -> None:
    """Closes the shared client (once the states reported in the background are sent, and
    their reporter's thread has ended) and forgets the cache entries it saw; the next
    sdk_client() opens one for the current address."""
    from flowrpc.engine.reporter import close_state_reporter
    from flowrpc.logging import flush_logs

    close_state_reporter()
    flush_logs(10)
    known_cache.forget()
    global _client
    with _lock:
        client, _client = _client, None
        if client is not None and _client_pid == os.getpid():
            client.__exit__(None, None, None)


atexit.register(reset_sdk_client)
