"""The schema, as SQLModel tables.

Conventions: ids are UUID strings; times are BIGINT microseconds since the epoch (UTC) and spans
BIGINT microseconds, so filters, sorts and history arithmetic are plain integer SQL on SQLite and
PostgreSQL alike; JSON values use JSONB on PostgreSQL. A run row carries its current state's type,
name and timestamp, so filters and sorts never join the state history.
"""

import math
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JsonType = JSON().with_variant(JSONB(), "postgresql")
INT64 = range(-(2**63), 2**63)


def _sqlite_json_dumps(value: Any) -> Any:
    """On SQLite a JSON column (declared JSON) has NUMERIC affinity: the text "42" would be
    stored as the number 42, and SQLite's text-to-number conversion rounds some doubles wrongly
    (-2.0488198407975285e-302). So a number document is bound as the number, stored exactly."""
    kind = type(value)
    if (kind is float and math.isfinite(value)) or (kind is int and value in INT64):
        return value
    return orjson.dumps(value).decode()


def _sqlite_json_loads(value: Any) -> Any:
    """An SQL number in a JSON column is that JSON number; rows that earlier versions wrote as
    text read back too, the affinity having made them numbers."""
    return value if type(value) in (int, float) else orjson.loads(value)


# How SQLite engines encode and decode JSON columns; JSONB keeps numbers as numbers by itself.
SQLITE_JSON_CODEC = {"json_serializer": _sqlite_json_dumps, "json_deserializer": _sqlite_json_loads}


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JsonType, nullable=nullable))


def _time(index: bool = False) -> Any:
    return Field(default=None, sa_type=BigInteger, index=index)


def _gin(name: str, column: str) -> Index:
    """A GIN index for tag-list operators (?|, @>): PostgreSQL only."""
    return Index(name, column, postgresql_using="gin").ddl_if(dialect="postgresql")


def _sort_index(name: str, key: str, *covered: str) -> tuple[Index, Index]:
    """An index serving ORDER BY key, id in both directions, NULLs as the smallest key (first
    ascending, last descending): SQLite's natural order; PostgreSQL needs NULLS FIRST. `covered`
    columns let queries that need only them skip the table."""
    column = key if key.isidentifier() else text(key)
    return (
        Index(name, column, "id", *covered).ddl_if(dialect="sqlite"),
        Index(f"{name}_pg", text(f"{key} NULLS FIRST"), "id", *covered).ddl_if(
            dialect="postgresql"
        ),
    )


# What history reads of each run, so it is answered from the index alone.
HISTORY_COLUMNS = ("state_type", "state_name", "start_time", "total_run_time", "state_timestamp")


def _parent(target: str, nullable: bool = False, index: bool = True) -> Any:
    """A foreign key whose rows go when the parent goes."""
    return Field(
        default=None,
        sa_column=Column(
            String(36), ForeignKey(target, ondelete="CASCADE"), nullable=nullable, index=index
        ),
    )


class Flow(SQLModel, table=True):
    __tablename__ = "flow"
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    updated: int = Field(sa_type=BigInteger)
    name: str = Field(unique=True)
    tags: Any = _json()
    labels: Any = _json()


class WorkPool(SQLModel, table=True):
    __tablename__ = "work_pool"
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    updated: int = Field(sa_type=BigInteger)
    name: str = Field(unique=True)
    description: str | None = None
    type: str
    base_job_template: Any = _json()
    is_paused: bool = False
    concurrency_limit: int | None = None
    default_queue_id: str | None = Field(default=None, max_length=36)


class WorkQueue(SQLModel, table=True):
    __tablename__ = "work_queue"
    __table_args__ = (UniqueConstraint("work_pool_id", "name"),)
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    updated: int = Field(sa_type=BigInteger)
    name: str
    description: str | None = None
    is_paused: bool = False
    concurrency_limit: int | None = None
    priority: int = 1
    work_pool_id: str = _parent("work_pool.id")


class Deployment(SQLModel, table=True):
    __tablename__ = "deployment"
    __table_args__ = (UniqueConstraint("flow_id", "name"), _gin("ix_deployment_tags_gin", "tags"))
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    updated: int = Field(sa_type=BigInteger)
    name: str = Field(index=True)
    flow_id: str = _parent("flow.id")
    version: str | None = None
    description: str | None = None
    paused: bool = False
    tags: Any = _json()
    labels: Any = _json()
    parameters: Any = _json()
    job_variables: Any = _json()
    work_queue_name: str | None = None
    work_queue_id: str | None = Field(default=None, max_length=36)
    entrypoint: str | None = None
    path: str | None = None


class FlowRun(SQLModel, table=True):
    __tablename__ = "flow_run"
    __table_args__ = (
        Index("uq_flow_run_flow_id_idempotency_key", "flow_id", "idempotency_key", unique=True),
        Index("ix_flow_run_state_name_next_start", "state_name", "next_scheduled_start_time"),
        Index("ix_flow_run_name_id", "name", "id"),
        *_sort_index("ix_flow_run_expected_start_time_id", "expected_start_time", *HISTORY_COLUMNS),
        *_sort_index("ix_flow_run_next_scheduled_start_time_id", "next_scheduled_start_time"),
        *_sort_index("ix_flow_run_end_time_id", "end_time"),
        *_sort_index("ix_flow_run_start_id", "coalesce(start_time, expected_start_time)"),
        _gin("ix_flow_run_tags_gin", "tags"),
    )
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    updated: int = Field(sa_type=BigInteger)
    name: str
    flow_id: str = _parent("flow.id")
    deployment_id: str | None = Field(default=None, max_length=36, index=True)
    deployment_version: str | None = None
    work_queue_name: str | None = Field(default=None, index=True)
    work_queue_id: str | None = Field(default=None, max_length=36, index=True)
    flow_version: str | None = None
    parameters: Any = _json()
    idempotency_key: str | None = None
    context: Any = _json()
    empirical_policy: Any = _json()
    tags: Any = _json()
    labels: Any = _json()
    parent_task_run_id: str | None = Field(default=None, max_length=36, index=True)
    state_id: str | None = Field(default=None, max_length=36)
    state_type: str | None = Field(default=None, index=True)
    state_name: str | None = None
    state_timestamp: int | None = _time()
    run_count: int = 0
    expected_start_time: int | None = _time()
    next_scheduled_start_time: int | None = _time()
    start_time: int | None = _time()
    end_time: int | None = _time()
    total_run_time: int = Field(default=0, sa_type=BigInteger)
    auto_scheduled: bool = False
    infrastructure_document_id: str | None = Field(default=None, max_length=36)
    infrastructure_pid: str | None = None
    created_by: Any = _json()
    job_variables: Any = _json()


class FlowRunState(SQLModel, table=True):
    __tablename__ = "flow_run_state"
    __table_args__ = (Index("ix_flow_run_state_run_timestamp", "flow_run_id", "timestamp"),)
    id: str = Field(primary_key=True, max_length=36)
    flow_run_id: str = _parent("flow_run.id", index=False)
    type: str
    name: str
    timestamp: int = Field(sa_type=BigInteger)
    message: str | None = None
    data: Any = _json()
    state_details: Any = _json()


# The granule of expected start time that flow_run_history_granule sums over: 5 minutes
# (migration 0003 builds its triggers with the same number).
HISTORY_GRANULE = 300_000_000


class FlowRunHistoryGranule(SQLModel, table=True):
    """What history sums, per granule of expected start time and (state type, state name), so
    that a history over many runs reads a few rows per granule instead of every run. SQLite only:
    triggers on flow_run keep it (migration 0003); PostgreSQL sums the runs themselves. Runs
    without a state count under ''. The sums that move with the clock are kept relative to the
    granule's start."""

    __tablename__ = "flow_run_history_granule"
    __table_args__ = {"info": {"dialect": "sqlite"}, "sqlite_with_rowid": False}
    granule: int = Field(primary_key=True, sa_type=BigInteger)  # expected_start_time // GRANULE
    state_type: str = Field(primary_key=True)
    state_name: str = Field(primary_key=True)
    count_runs: int = Field(sa_type=BigInteger)
    total_run_time: int = Field(sa_type=BigInteger)
    running: int = Field(sa_type=BigInteger)  # RUNNING runs (with a state timestamp)
    running_since: int = Field(sa_type=BigInteger)  # and their state_timestamp - start
    late_started: int = Field(sa_type=BigInteger)  # runs started late: start_time - expected
    unstarted: int = Field(sa_type=BigInteger)  # runs not started
    unstarted_offset: int = Field(sa_type=BigInteger)  # and their expected - start


class TaskRun(SQLModel, table=True):
    __tablename__ = "task_run"
    __table_args__ = (
        Index(
            "uq_task_run_flow_run_task_key", "flow_run_id", "task_key", "dynamic_key", unique=True
        ),
    )
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    updated: int = Field(sa_type=BigInteger)
    name: str
    flow_run_id: str | None = _parent("flow_run.id", nullable=True, index=False)
    task_key: str
    dynamic_key: str
    cache_key: str | None = None
    cache_expiration: int | None = _time()
    task_version: str | None = None
    empirical_policy: Any = _json()
    tags: Any = _json()
    labels: Any = _json()
    task_inputs: Any = _json()
    state_id: str | None = Field(default=None, max_length=36)
    state_type: str | None = Field(default=None, index=True)
    state_name: str | None = None
    state_timestamp: int | None = _time()
    run_count: int = 0
    flow_run_run_count: int = 0
    expected_start_time: int | None = _time()
    next_scheduled_start_time: int | None = _time()
    start_time: int | None = _time()
    end_time: int | None = _time()
    total_run_time: int = Field(default=0, sa_type=BigInteger)


class TaskRunState(SQLModel, table=True):
    __tablename__ = "task_run_state"
    __table_args__ = (Index("ix_task_run_state_run_timestamp", "task_run_id", "timestamp"),)
    id: str = Field(primary_key=True, max_length=36)
    task_run_id: str = _parent("task_run.id", index=False)
    type: str
    name: str
    timestamp: int = Field(sa_type=BigInteger)
    message: str | None = None
    data: Any = _json()
    state_details: Any = _json()


class TaskRunStateCache(SQLModel, table=True):
    """Completed task states by cache key (Prefect's task caching)."""

    __tablename__ = "task_run_state_cache"
    __table_args__ = (Index("ix_task_run_state_cache_key", "cache_key", "created"),)
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    cache_key: str
    cache_expiration: int | None = _time()
    task_run_state_id: str = _parent("task_run_state.id", index=False)


class ApiKey(SQLModel, table=True):
    """A client's key: only its SHA-256 is kept (keys are random, so a fast hash suffices), with
    the role that bounds what the key may call."""

    __tablename__ = "api_key"
    name: str = Field(primary_key=True)
    created: int = Field(sa_type=BigInteger)
    key_hash: str = Field(unique=True)
    role: str


class ServerSecret(SQLModel, table=True):
    """Secrets every replica shares, minted once by whichever starts first (page-token keys)."""

    __tablename__ = "server_secret"
    name: str = Field(primary_key=True)
    created: int = Field(sa_type=BigInteger)
    value: str


class Log(SQLModel, table=True):
    """Log records of flow runs and their task runs; they go with their flow run."""

    __tablename__ = "log"
    __table_args__ = (
        Index("ix_log_flow_run_timestamp", "flow_run_id", "timestamp", "id"),
        Index("ix_log_timestamp", "timestamp", "id"),
    )
    id: str = Field(primary_key=True, max_length=36)
    created: int = Field(sa_type=BigInteger)
    flow_run_id: str = _parent("flow_run.id", index=False)
    task_run_id: str | None = _parent("task_run.id", nullable=True)
    name: str
    level: int
    message: str = Field(sa_type=Text)
    timestamp: int = Field(sa_type=BigInteger)


class Asset(SQLModel, table=True):
    """Assets by key, created on first sight (materialized, or named as an upstream)."""

    __tablename__ = "asset"
    key: str = Field(primary_key=True, max_length=512)
    created: int = Field(sa_type=BigInteger)


class AssetDependency(SQLModel, table=True):
    """asset_key was made from upstream_key (in at least one materialization)."""

    __tablename__ = "asset_dependency"
    asset_key: str = Field(
        sa_column=Column(String(512), ForeignKey("asset.key", ondelete="CASCADE"), primary_key=True)
    )
    upstream_key: str = Field(
        sa_column=Column(
            String(512), ForeignKey("asset.key", ondelete="CASCADE"), primary_key=True, index=True
        )
    )
    created: int = Field(sa_type=BigInteger)


class AssetMaterialization(SQLModel, table=True):
    """One time a task run made an asset. The run ids are history, not foreign keys: the record
    outlives the runs."""

    __tablename__ = "asset_materialization"
    __table_args__ = (Index("ix_asset_materialization_asset_time", "asset_key", "timestamp", "id"),)
    id: str = Field(primary_key=True, max_length=36)
    asset_key: str = Field(
        sa_column=Column(String(512), ForeignKey("asset.key", ondelete="CASCADE"), nullable=False)
    )
    task_run_id: str = Field(max_length=36, index=True)
    flow_run_id: str | None = Field(default=None, max_length=36)
    timestamp: int = Field(sa_type=BigInteger)


flow = Flow.__table__
work_pool = WorkPool.__table__
work_queue = WorkQueue.__table__
deployment = Deployment.__table__
flow_run = FlowRun.__table__
flow_run_state = FlowRunState.__table__
flow_run_history_granule = FlowRunHistoryGranule.__table__
task_run = TaskRun.__table__
task_run_state = TaskRunState.__table__
task_run_state_cache = TaskRunStateCache.__table__
api_key = ApiKey.__table__
server_secret = ServerSecret.__table__
log = Log.__table__
asset = Asset.__table__
asset_dependency = AssetDependency.__table__
asset_materialization = AssetMaterialization.__table__
metadata = SQLModel.metadata
