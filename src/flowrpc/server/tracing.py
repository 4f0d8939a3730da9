"""OpenTelemetry spans for each RPC, when the `opentelemetry` extra is installed and the standard
OTEL_* variables ask for traces. Off by default: then no interceptor exists and calls pay nothing.

Tracing is on when OTEL_TRACES_EXPORTER names exporters (`otlp`, `console`, ...; `none` is off) or
an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which
mean the `otlp` exporter). The exporters read their own OTEL_EXPORTER_* variables, and the resource
reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the service name defaults to "flowrpc").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import grpc

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class TracingUnavailable(RuntimeError):
    """The OTEL_* variables ask for traces that cannot be produced (a missing extra, an unknown
    exporter): the server refuses to start rather than run silently untraced."""


def exporter_names(environ: Any = os.environ) -> list[str]:
    """The exporters the environment asks for; empty when tracing is off."""
    named = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [name for name in named if name]
    if named:
        return [] if named == ["none"] else named
    return ["otlp"] if any(environ.get(variable) for variable in ENDPOINT_VARIABLES) else []


@dataclass
class Tracing:
    """The interceptor that opens a span per call, and the provider to flush at shutdown."""

    interceptor: grpc.aio.ServerInterceptor
    provider: Any

    def shutdown(self) -> None:
        """Exports the spans still buffered."""
        self.provider.shutdown()


def start_tracing(environ: Any = os.environ) -> Tracing | None:
    """Tracing as the environment configures it, or None when it is off."""
    names = exporter_names(environ)
    if not names:
        return None
    try:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise TracingUnavailable(
            f"OTEL_* variables ask for traces but OpenTelemetry is not installed ({error.name}): "
            "pip install 'flowrpc[opentelemetry]', or unset OTEL_TRACES_EXPORTER"
        ) from error
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "flowrpc"}))
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return Tracing(aio_server_interceptor(tracer_provider=provider), provider)


def _exporter(name: str) -> Any:
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        known = sorted(entry.name for entry in entry_points(group="opentelemetry_traces_exporter"))
        raise TracingUnavailable(
            f"OTEL_TRACES_EXPORTER names {name!r}, which is not installed; known: {known}"
        )
    return next(iter(found)).load()()
