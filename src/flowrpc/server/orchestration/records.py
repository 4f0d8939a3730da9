"""Plain records that orchestration decides over.

Storage loads them from rows and writes them back; servicers convert them to and from protobuf.
Times are integer microseconds since the Unix epoch (UTC) and spans are integer microseconds:
exact, cheap to compare and to store, and free of time-zone mistakes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

Micros = int
MICROS_PER_SECOND = 1_000_000
# The bounds of the policy numbers that make retry delays (the API refuses more): retry_delay's
# own int32 range of seconds (68 years), and a jitter factor that spreads delays up to 11-fold.
MAX_RETRY_DELAY_SECONDS = 2**31 - 1
MAX_RETRY_JITTER_FACTOR = 10.0
R = TypeVar("R")


def shallow_copy(record: R) -> R:
    """copy.copy for these plain dataclasses, without its reduce protocol: a quarter of the cost
    (a bulk call copies six records a run)."""
    clone = object.__new__(type(record))
    clone.__dict__.update(record.__dict__)
    return clone


class StateType(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


TERMINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


def default_state_name(state_type: StateType) -> str:
    """Prefect's default name: "CANCELLING" -> "Cancelling"."""
    return " ".join(part.capitalize() for part in state_type.value.split("_"))


class SetStateStatus(enum.StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    WAIT = "WAIT"
    ABORT = "ABORT"


@dataclass
class StateDetails:
    flow_run_id: str | None = None
    task_run_id: str | None = None
    child_flow_run_id: str | None = None
    scheduled_time: Micros | None = None
    cache_key: str | None = None
    cache_expiration: Micros | None = None
    deferred: bool = False
    untrackable_result: bool = False
    pause_timeout: Micros | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    refresh_cache: bool | None = None
    retriable: bool | None = None
    transition_id: str | None = None
    task_parameters_id: str | None = None
    traceparent: str | None = None
    deployment_concurrency_lease_id: str | None = None


@dataclass
class State:
    id: str
    type: StateType
    name: str
    timestamp: Micros
    message: str | None = None
    data: Any = None  # JSON value; None means no data
    details: StateDetails = field(default_factory=StateDetails)

    def copy(self, **changes: Any) -> State:
        """A deep enough copy: the details are copied too, so the copy can be changed freely.
        (Not dataclasses.replace, which runs __init__: bulk calls copy two states per run.)"""
        clone = shallow_copy(self)
        clone.details = shallow_copy(self.details)
        for name, value in changes.items():
            setattr(clone, name, value)
        return clone


@dataclass
class FlowRunPolicy:
    retries: int | None = None
    retry_delay: int | None = None  # seconds
    pause_keys: list[str] = field(default_factory=list)
    resuming: bool = False
    retry_type: str | None = None  # "in_process" | "reschedule" | None
    max_retries: int = 0  # deprecated alias of retries
    retry_delay_seconds: float = 0  # deprecated alias of retry_delay


@dataclass
class FlowRunRecord:
    """The fields of a flow run that orchestration reads or maintains."""

    id: str
    flow_id: str
    deployment_id: str | None = None
    parent_task_run_id: str | None = None
    infrastructure_pid: str | None = None
    empirical_policy: FlowRunPolicy = field(default_factory=FlowRunPolicy)
    state_id: str | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    state_timestamp: Micros | None = None
    run_count: int = 0
    start_time: Micros | None = None
    end_time: Micros | None = None
    total_run_time: Micros = 0
    expected_start_time: Micros | None = None
    next_scheduled_start_time: Micros | None = None


@dataclass
class TaskRunPolicy:
    retries: int | None = None
    retry_delay: int | list[int] | None = None  # seconds, or one entry per retry
    retry_jitter_factor: float | None = None
    max_retries: int = 0  # deprecated alias of retries
    retry_delay_seconds: float = 0  # deprecated alias of retry_delay


@dataclass
class TaskRunRecord:
    """The fields of a task run that orchestration reads or maintains."""

    id: str
    flow_run_id: str | None = None
    empirical_policy: TaskRunPolicy = field(default_factory=TaskRunPolicy)
    state_id: str | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    state_timestamp: Micros | None = None
    run_count: int = 0
    flow_run_run_count: int = 0
    start_time: Micros | None = None
    end_time: Micros | None = None
    total_run_time: Micros = 0
    expected_start_time: Micros | None = None
    next_scheduled_start_time: Micros | None = None
