"""The server's Prometheus metrics (docs/operations.md lists them): instruments in a registry of
this server's own, so that several servers in one process do not mix their figures, served over
HTTP at /metrics when the metrics_port setting is given."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
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
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        self.calls = CallStats()
        registry.register(self.calls)
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


class CallStats(Collector):
    """Calls by method: counts by status code, a latency histogram, and the calls in flight.
    They are plain numbers, changed only on the server's event loop, and made into metrics at
    each scrape: prometheus-client's instruments take a lock at every change, and with them the
    interceptor cost 7-10 µs of CPU a call; with these, 4-5.5 (this 2-core machine)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._methods: dict[str, MethodStats] = {}
        self._bounds = [floatToGoString(bound) for bound in (*LATENCY_BUCKETS, float("inf"))]

    def method(self, name: str) -> MethodStats:
        stats = self._methods.get(name)
        if stats is None:
            stats = self._methods[name] = MethodStats()
        return stats

    def collect(self) -> Iterator[Metric]:
        # On the scrape's thread: list() copies a dict in one step, while calls may add keys.
        calls = CounterMetricFamily(
            "flowrpc_calls",
            "Calls finished, by method and gRPC status code.",
            labels=["method", "code"],
        )
        latency = HistogramMetricFamily(
            "flowrpc_call_duration_seconds",
            "Time from a call's start to its end (a stream's: its last message), by method.",
            labels=["method"],
        )
        for name, stats in list(self._methods.items()):
            for code, count in list(stats.codes.items()):
                calls.add_metric([name, code], count)
            counts = list(accumulate(stats.buckets))
            if counts[-1]:
                latency.add_metric(
                    [name], list(zip(self._bounds, counts, strict=True)), stats.seconds
                )
        yield calls
        yield latency
        yield GaugeMetricFamily(
            "flowrpc_calls_in_flight", "Calls started and not yet finished.", self.in_flight
        )


class MethodStats:
    __slots__ = ("codes", "buckets", "seconds")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: over every bound
        self.seconds = 0.0

    def record(self, code: str, seconds: float) -> None:
        self.count(code)
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def count(self, code: str) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1
