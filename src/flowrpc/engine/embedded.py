"""The embedded default server: where flows report when FLOWRPC_API_URL is not set.

`python my_flow.py` must work on a machine with nothing running, so the first flow or task that
needs a server starts one inside the process: a real flowrpc server on 127.0.0.1 (a free port),
on its own event loop in a daemon thread, over the default SQLite file under FLOWRPC_HOME
(FLOWRPC_DATABASE_URL, when set, names another database). At interpreter exit it stops
gracefully: calls in flight finish and the writer commits what it holds, so nothing recorded is
lost. Several processes may embed a server on the same file at once; a server started later on
that FLOWRPC_HOME (`flowrpc server start`) shows all their runs. API keys apply as on any server:
once the database holds keys, FLOWRPC_API_KEY must name one (the client sends it).

Background services (Late runs, expired pauses) do not run in an embedded server: it lives only
as long as its script, the runs its SDK creates are never Scheduled (they start at once), and
every process embedding a server on one file would run the same passes over the same rows. A
standing server on that FLOWRPC_HOME runs them.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable

from flowrpc.client.channel import use_process_api_url
from flowrpc.settings import Settings
from flowrpc.utilities.processes import process_lock

_lock = process_lock(globals(), "_lock")  # a new one in a forked child
_running: _Embedded | None = None
_before_stop: list[Callable[[], None]] = []
log = logging.getLogger(__name__)


class _Embedded:
    """The process's embedded server and the settings it runs with."""

    def __init__(self) -> None:
        from flowrpc.server.app import start_in_thread  # the server only when it is needed

        self.settings = embedded_settings()
        self.thread = start_in_thread(self.settings, name="flowrpc-embedded")
        self.url = f"127.0.0.1:{self.thread.port}"
        self.pid = os.getpid()


def embedded_settings() -> Settings:
    """The server settings of an embedded server: FLOWRPC_* as for `flowrpc server start` (home,
    database, keys, limits), but on a free loopback port, in plaintext, without metrics, traces or
    background services."""
    return Settings().model_copy(
        update={
            "host": "127.0.0.1",
            "port": 0,
            "tls_cert": None,
            "tls_key": None,
            "tls_client_ca": None,
            "metrics_port": None,
            "tracing_enabled": False,
            "late_runs_enabled": False,
            "pause_expirations_enabled": False,
        }
    )


def api_url() -> str:
    """Where flows report: FLOWRPC_API_URL when set; otherwise the address of this process's
    embedded server, started on the first call (that call pays its start-up)."""
    configured = os.environ.get("FLOWRPC_API_URL")
    if configured:
        return configured
    return _start().url


def before_stop(callback: Callable[[], None]) -> None:
    """Registers `callback` to run at interpreter exit before the embedded server stops (a log
    or result flush that must still reach it); callbacks run last registered first. (Plain
    atexit callbacks registered after this module was imported run before the stop as well.)"""
    with _lock:
        _before_stop.append(callback)


def running() -> bool:
    """Whether this process has started its embedded server."""
    return _running is not None


def _start() -> _Embedded:
    global _running
    with _lock:
        if _running is None:
            _running = _Embedded()
            use_process_api_url(_running.url)  # get_client() in this process finds it too
        return _running


@atexit.register  # at import, so it runs after the atexit callbacks of what imports this module
def _stop() -> None:
    """At exit: the callbacks, then a graceful stop of the embedded server, if one runs here."""
    with _lock:
        callbacks, _before_stop[:] = list(_before_stop), []
    for callback in reversed(callbacks):
        try:
            callback()
        except Exception:  # one failing flush must not keep the server from stopping
            log.exception("a callback before the embedded server's stop failed")
    embedded = _running
    if embedded is None or embedded.pid != os.getpid():  # a forked child has no server thread
        return
    use_process_api_url(None)
    embedded.thread.stop(embedded.settings.grace_seconds)
