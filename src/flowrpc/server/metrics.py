"""The server's Prometheus metrics (docs/operations.md lists them): instruments in a registry of
this server's own, so that several servers in one process do not mix their figures, served over
HTTP at /metrics when the metrics_port setting is given."""

from __future__ import annotations

from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

# No *_created series (a timestamp per counter and label set): they double what a scrape
# carries and say only when the server started. Process-wide, as prometheus-client has it.
disable_created_metrics()

if TYPE_CHECKING:
    from flowrpc.server.storage.database import Database

# Call latency: from a cached read (~0.5 ms) to a bulk call near the statement budget (30 s).
LATENCY_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0),
)
# Calls per SQLite group commit: one to the writer's MAX_GROUP (256).
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.calls = Counter(
            "flowrpc_calls",
            "Calls finished, by method and gRPC status code.",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "flowrpc_call_duration_seconds",
            "Time from a call's start to its last response, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "flowrpc_calls_in_flight", "Calls started and not yet finished.", registry=registry
        )
        self.passes = Counter(
            "flowrpc_background_passes",
            "Passes of a background service run by this replica (failed ones included).",
            ["service"],
            registry=registry,
        )
        self.failures = Counter(
            "flowrpc_background_failures",
            "Passes of a background service that failed (the server log says why).",
            ["service"],
            registry=registry,
        )
        self.leader = Gauge(
            "flowrpc_leader",
            "1 while this replica runs the background services, else 0.",
            registry=registry,
        )
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
        self._http: WSGIServer | None = None

    def watch_writer(self, db: Database) -> None:
        """The SQLite writer's queue depth (read at each scrape, nothing per write) and the size
        of each group it commits. Not on PostgreSQL, which has no single writer."""
        if db.dialect != "sqlite":
            return
        group_commit = Histogram(
            "flowrpc_sqlite_group_commit_size",
            "Write calls committed in one SQLite transaction.",
            buckets=GROUP_BUCKETS,
            registry=self.registry,
        )
        queue_depth = Gauge(
            "flowrpc_sqlite_writer_queue_depth",
            "Write calls waiting for the SQLite writer thread.",
            registry=self.registry,
        )
        queue_depth.set_function(db.watch_writes(group_commit.observe))

    def show_service(self, name: str) -> None:
        """Shows a background service's counters (at 0) before its first pass."""
        self.passes.labels(name)
        self.failures.labels(name)

    def serve(self, host: str, port: int) -> int:
        """Serves /metrics over HTTP on a daemon thread; returns the port bound."""
        self._http, _thread = start_http_server(port, host, self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
