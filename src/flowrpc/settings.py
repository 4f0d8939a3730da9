"""One settings object, read from FLOWRPC_* environment variables (or given explicitly)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowrpc.log_format import LogFormat


class Settings(BaseSettings):
    # NaN or infinity in a span would stop a loop or a timer, not say what is wrong.
    model_config = SettingsConfigDict(env_prefix="FLOWRPC_", extra="ignore", allow_inf_nan=False)

    home: Path = Field(default=Path("~/.flowrpc"), description="Where the default database lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: a SQLite file, $FLOWRPC_HOME/flowrpc.db (WAL mode).",
    )
    database_pool_size: int = Field(default=8, description="PostgreSQL connections per replica.")
    statement_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="The longest a statement may run (on SQLite: a call's reads); past it the "
        "call answers RESOURCE_EXHAUSTED.",
    )
    max_history_intervals: int = Field(
        default=500, ge=1, description="The most intervals one flow-run history call may ask for."
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="SQLite: NORMAL (WAL) survives a crash of the server; a power loss may lose "
        "the last commits but never corrupts. FULL syncs every commit to disk as well.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=4250, ge=0, le=65535, description="0: any free port.")
    api_key: str | None = Field(
        default=None,
        description="An admin key, besides those in the database (`flowrpc api-key create`).",
    )
    api_keys_refresh_seconds: float = Field(
        default=1.0, description="Keys created or revoked take effect within this long."
    )
    open_reflection: bool = Field(
        default=False, description="Serve reflection without a key even once keys exist."
    )
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain; with tls_key, serve TLS only."
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(
        default=None, description="PEM CA certificates; clients must present one they signed."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics over HTTP at /metrics on this port; none: off.",
    )
    metrics_host: str | None = Field(
        default=None, description="Address the metrics port binds; default: host."
    )
    tracing_enabled: bool = Field(
        default=True,
        description="Trace calls when the OTEL_* variables ask for it (docs/operations.md).",
    )
    log_format: LogFormat = Field(
        default="text", description="The log: text lines for people, or one JSON object a line."
    )
    grace_seconds: float = Field(default=10.0, description="How long in-flight calls may finish.")
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="After SIGTERM/SIGINT, how long health reports NOT_SERVING while calls are "
        "still served (load balancers move traffic away); 0 stops at once.",
    )

    # Request limits (server/limits.py): each bounds what one call may send, so no caller can make
    # an object that breaks reads for the others.
    max_request_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1,
        description="Largest request message (bytes); larger ones get RESOURCE_EXHAUSTED.",
    )
    max_string_length: int = Field(
        default=10_000,
        ge=1,
        description="Longest name, tag, key, id or other string field (characters).",
    )
    max_json_bytes: int = Field(
        default=512 * 1024,
        ge=1,
        description="Largest JSON field (parameters, context, state data, job variables, ...) "
        "and free text (description, state message), in encoded bytes.",
    )
    max_list_length: int = Field(
        default=10_000, ge=1, description="Most items in any list or map field (tags, any_of, ...)."
    )
    max_like_length: int = Field(
        default=1_000, ge=1, description="Longest `like` filter pattern (characters)."
    )

    # Background services (semantics §7).
    late_runs_enabled: bool = True
    late_runs_loop_seconds: float = 5.0
    late_runs_after_seconds: float = Field(
        default=15.0, description="A Scheduled run this far past its time becomes Late."
    )
    pause_expirations_enabled: bool = True
    pause_expirations_loop_seconds: float = 5.0
    batch_size: int = Field(default=400, description="Runs per background write transaction.")

    # WatchFlowRuns (server/watch.py, storage/changes.py).
    watch_retention_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long state changes are kept for watchers resuming from a cursor; an "
        "older cursor gets OUT_OF_RANGE (WATCH_CURSOR_EXPIRED).",
    )
    watch_prune_loop_seconds: float = Field(
        default=60.0, gt=0, description="How often the leader prunes changes past retention."
    )
    watch_max_watchers: int = Field(
        default=1000, ge=0, description="Most WatchFlowRuns streams one server serves at once."
    )
    watch_buffer: int = Field(
        default=10_000,
        ge=1,
        description="Changes held for a watcher that reads slower than they come; past it the "
        "watcher reads them from the change log at its own pace instead.",
    )
    watch_progress_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A watcher with no matching change this long gets a progress cursor.",
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home.expanduser() / 'flowrpc.db'}"
