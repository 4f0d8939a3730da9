"""The embedded default server: where flows report when FLOWRPC_API_URL is not set.

`python my_flow.py` must work on a machine with nothing running, so the first flow or task that
needs a server starts one for the process: a real flowrpc server on 127.0.0.1 (a free port),
over the default SQLite file under FLOWRPC_HOME (FLOWRPC_DATABASE_URL, when set, names another
database), in a child process (engine/embedded_process.py) so that its work does not compete
with the script's threads for one interpreter lock. The child serves until this process closes
the pipe to it: at interpreter exit, after the callbacks registered with `before_stop`, it stops
gracefully (calls in flight finish and the writer commits what it holds, so nothing recorded is
lost); if this process dies, the pipe closes with it and the child stops the same way. The child
is in a session of its own, so a Ctrl-C in the terminal reaches the script (which records its
runs as Crashed through the server) and not the server. Several processes may embed a server on
the same file at once; a server started later on that FLOWRPC_HOME (`flowrpc server start`)
shows all their runs. API keys apply as on any server: once the database holds keys,
FLOWRPC_API_KEY must name one (the client sends it).

Background services (Late runs, expired pauses) do not run in an embedded server: it lives only
as long as its script, the runs its SDK creates are never Scheduled (they start at once), and
every process embedding a server on one file would run the same passes over the same rows. A
standing server on that FLOWRPC_HOME runs them.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
from collections.abc import Callable

from flowrpc.client.channel import use_process_api_url
from flowrpc.settings import Settings
from flowrpc.utilities.processes import process_lock

_lock = process_lock(globals(), "_lock")  # a new one in a forked child
_running: _Embedded | None = None
_before_stop: list[Callable[[], None]] = []
log = logging.getLogger(__name__)
STOP_MARGIN_SECONDS = 10  # beyond the server's grace period, for its final commit and exit


class EmbeddedServerError(RuntimeError):
    """The embedded server could not start (its message says why)."""


class _Embedded:
    """The process's embedded server: a child process serving until its stdin closes."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowrpc.engine.embedded_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        first = self.process.stdout.readline().strip()  # type: ignore[union-attr]
        if not first.startswith("serving "):
            self.process.wait()
            raise EmbeddedServerError(first or "the embedded server exited at its start")
        self.url = first.removeprefix("serving ")
        self.grace_seconds = embedded_settings().grace_seconds
        self.pid = os.getpid()

    def stop(self) -> None:
        """Closes the pipe, so the server stops gracefully, and waits until it has."""
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=self.grace_seconds + STOP_MARGIN_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the embedded server did not stop in time: killed")
            self.process.kill()
            self.process.wait()


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
    embedded.stop()
