"""What proposing a state does under Prefect's CoreFlowPolicy: every row of the outcomes table of
prefect-semantics.md §5.6, the ordering notes of §5.3 and the checks §5.6 alludes to ("name ≠
Resuming", "subject to timeout/deployment checks", suspending, duplicate transition ids).

Plain data shared by the unit test of the engine (tests/unit/orchestration/test_flow_outcomes.py)
and the test over gRPC on a real server (tests/service/test_orchestration_api.py), so it is
written in a neutral form:

* state types and statuses are their names ("SCHEDULED", "REJECT");
* times are offsets in seconds from the moment of the proposal ("now");
* a row lists the run facts it needs (deployment, infrastructure_pid, retries, run_count), and
  what it says about the run afterwards (`after`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TYPES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")

PERSISTED = {"type": "reference", "storage_key": "/results/abc"}  # a result-record dict
UNPERSISTED = {"type": "unpersisted"}
TRANSITION_ID = "0190a000-0000-7000-8000-000000000001"
OTHER_TRANSITION_ID = "0190a000-0000-7000-8000-000000000002"
WAIT_SECONDS = 45  # scheduled_in of the "future" rows, and the delay they answer with

CANCELLING_ONLY = "Cannot transition flows that are cancelling to a state other than Cancelled."
NOT_RUNNING = "Cannot pause flows that are not currently running."
NO_INFRA = "Scheduled flow run has no infrastructure to terminate."
NOT_PENDING = "This run is in a {} state and cannot transition to a PENDING state."
TERMINAL_ABORT = "Run is already in terminal state {}."


def default_name(state_type: str) -> str:
    """Prefect's default state name: "CANCELLING" -> "Cancelling"."""
    return " ".join(part.capitalize() for part in state_type.split("_"))


@dataclass(frozen=True)
class StateSpec:
    """A state to set up (forced) or to propose."""

    type: str
    name: str | None = None  # None: the type's default name
    scheduled_in: float | None = (
        None  # scheduled_time, s from now; None: not given (SCHEDULED: now)
    )
    pause_timeout_in: float | None = None  # pause_timeout, s from now
    pause_reschedule: bool = False  # a "Suspended" pause
    transition_id: str | None = None
    data: Any = None  # the result payload (JSON); None: no data

    @property
    def state_name(self) -> str:
        return self.name or default_name(self.type)


@dataclass(frozen=True)
class Row:
    id: str
    initial: StateSpec | None  # None: the run has no state
    proposed: StateSpec
    status: str  # ACCEPT / REJECT / WAIT / ABORT
    result: tuple[str, str] | None  # (type, name) of the state written; None: nothing written
    reason: str | None  # None for ACCEPT
    # run facts when the proposal arrives
    deployment: bool = False
    infrastructure_pid: str | None = None
    retries: int | None = None  # empirical_policy.retries
    run_count: int | None = None  # when the proposal arrives; None: 1 if initial RUNNING else 0
    # what the row says about the outcome besides status, state and reason
    wait_seconds: int | None = None
    scheduled_time_copied: bool = False  # the written state keeps the initial's scheduled_time
    # run fields afterwards: run_count, end_time / next_scheduled_start_time (only None: unset),
    # and the empirical_policy's retry_type (None: unset) and resuming
    after: Mapping[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        """The run's run_count when the proposal arrives (each entry into RUNNING counted one)."""
        if self.run_count is not None:
            return self.run_count
        return 1 if self.initial is not None and self.initial.type == "RUNNING" else 0


def st(state_type: str, name: str | None = None, **kw: Any) -> StateSpec:
    return StateSpec(state_type, name, **kw)


def row(
    case_id: str,
    initial: StateSpec | None,
    proposed: StateSpec,
    status: str,
    result: tuple[str, str | None] | None = None,
    reason: str | None = None,
    **facts: Any,
) -> Row:
    """`result` (type, None) means the proposal itself was written, under its own name."""
    if result is not None and result[1] is None:
        result = (result[0], proposed.state_name)
    return Row(case_id, initial, proposed, status, result, reason, **facts)  # type: ignore[arg-type]


ROWS: list[Row] = [
    # none -> any type except PAUSED: ACCEPT; none -> PAUSED: ABORT
    *[row(f"none->{t}", None, st(t), "ACCEPT", (t, None)) for t in TYPES if t != "PAUSED"],
    row("none->PAUSED", None, st("PAUSED"), "ABORT", None, "Cannot pause flows with no state."),
    # SCHEDULED -> PENDING: ACCEPT (scheduled_time copied)
    row(
        "SCHEDULED->PENDING",
        st("SCHEDULED", scheduled_in=-3),
        st("PENDING"),
        "ACCEPT",
        ("PENDING", "Pending"),
        scheduled_time_copied=True,
        after={"next_scheduled_start_time": None},
    ),
    # SCHEDULED/PENDING (scheduled_time in future) -> RUNNING: WAIT
    *[
        row(
            f"{t}(future)->RUNNING",
            st(t, scheduled_in=WAIT_SECONDS),
            st("RUNNING"),
            "WAIT",
            None,
            "Scheduled time is in the future",
            wait_seconds=WAIT_SECONDS,
            after={"run_count": 0},
        )
        for t in ("SCHEDULED", "PENDING")
    ],
    # SCHEDULED/PENDING (scheduled_time past/absent) -> RUNNING: ACCEPT
    row(
        "SCHEDULED(past)->RUNNING",
        st("SCHEDULED"),
        st("RUNNING"),
        "ACCEPT",
        ("RUNNING", None),
        after={"run_count": 1},
    ),
    row(
        "PENDING(past)->RUNNING",
        st("PENDING", scheduled_in=-5),
        st("RUNNING"),
        "ACCEPT",
        ("RUNNING", None),
        after={"run_count": 1},
    ),
    row(
        "PENDING(absent)->RUNNING",
        st("PENDING"),
        st("RUNNING"),
        "ACCEPT",
        ("RUNNING", None),
        after={"run_count": 1},
    ),
    # Late marking
    row("Scheduled->Late", st("SCHEDULED"), st("SCHEDULED", "Late"), "ACCEPT", ("SCHEDULED", None)),
    row(
        "Late->Late",
        st("SCHEDULED", "Late"),
        st("SCHEDULED", "Late"),
        "REJECT",
        None,
        "This flow run is already marked late.",
    ),
    *[
        row(
            f"{t}->Late",
            st(t),
            st("SCHEDULED", "Late"),
            "REJECT",
            None,
            "Only scheduled flows can be marked late.",
        )
        for t in ("RUNNING", "PENDING")
    ],
    row(
        "CANCELLING->Late",
        st("CANCELLING"),
        st("SCHEDULED", "Late"),
        "REJECT",
        None,
        CANCELLING_ONLY,
    ),
    # cancelling scheduled runs
    row(
        "SCHEDULED(no pid)->CANCELLING",
        st("SCHEDULED"),
        st("CANCELLING"),
        "REJECT",
        ("CANCELLED", "Cancelled"),
        NO_INFRA,
    ),
    row(
        "SCHEDULED(pid)->CANCELLING",
        st("SCHEDULED"),
        st("CANCELLING"),
        "ACCEPT",
        ("CANCELLING", None),
        infrastructure_pid="pid-1",
    ),
    row(
        "Resuming(pid)->CANCELLING",
        st("SCHEDULED", "Resuming"),
        st("CANCELLING"),
        "REJECT",
        ("CANCELLED", "Cancelled"),
        NO_INFRA,
        infrastructure_pid="pid-1",
    ),
    # pending sub-states
    row(
        "Pending->Pending",
        st("PENDING"),
        st("PENDING"),
        "ABORT",
        None,
        NOT_PENDING.format("PENDING"),
    ),
    row(
        "Pending->Submitting",
        st("PENDING"),
        st("PENDING", "Submitting"),
        "ACCEPT",
        ("PENDING", None),
    ),
    row(
        "Submitting->Pending",
        st("PENDING", "Submitting"),
        st("PENDING"),
        "ABORT",
        None,
        NOT_PENDING.format("PENDING"),
    ),
    *[
        row(f"{t}->PENDING", st(t), st("PENDING"), "ABORT", None, NOT_PENDING.format(t))
        for t in ("RUNNING", "CANCELLED")
    ],
    # CANCELLING -> anything but CANCELLED: REJECT (stays CANCELLING)
    *[
        row(f"CANCELLING->{t}", st("CANCELLING"), st(t), "REJECT", None, CANCELLING_ONLY)
        for t in TYPES
        if t != "CANCELLED"
    ],
    row("CANCELLING->CANCELLED", st("CANCELLING"), st("CANCELLED"), "ACCEPT", ("CANCELLED", None)),
    # retries
    row(
        "RUNNING->FAILED(retries left)",
        st("RUNNING"),
        st("FAILED"),
        "REJECT",
        ("SCHEDULED", "AwaitingRetry"),
        "Retrying",
        run_count=1,
        retries=1,
        after={"run_count": 1, "retry_type": "in_process"},
    ),
    row(
        "RUNNING->FAILED(retries null)",
        st("RUNNING"),
        st("FAILED"),
        "ACCEPT",
        ("FAILED", None),
        run_count=1,
        after={"run_count": 1, "retry_type": None},
    ),
    row(
        "RUNNING->FAILED(exhausted)",
        st("RUNNING"),
        st("FAILED"),
        "ACCEPT",
        ("FAILED", None),
        run_count=2,
        retries=1,
        after={"run_count": 2, "retry_type": None},
    ),
    # pausing
    row(
        "RUNNING->PAUSED",
        st("RUNNING"),
        st("PAUSED"),
        "ACCEPT",
        ("PAUSED", "Paused"),
        run_count=1,
        after={"run_count": 1},
    ),
    *[
        row(f"{t}->PAUSED", st(t), st("PAUSED"), "REJECT", None, NOT_RUNNING)
        for t in ("SCHEDULED", "PENDING")
    ],
    row(
        "RUNNING->Suspended(deployment)",
        st("RUNNING"),
        st("PAUSED", "Suspended", pause_reschedule=True),
        "ACCEPT",
        ("PAUSED", None),
        deployment=True,
    ),
    row(
        "RUNNING->Suspended(no deployment)",
        st("RUNNING"),
        st("PAUSED", "Suspended", pause_reschedule=True),
        "ABORT",
        None,
        "Cannot suspend flows without a deployment.",
    ),
    row(
        "SCHEDULED->Suspended",
        st("SCHEDULED"),
        st("PAUSED", "Suspended", pause_reschedule=True),
        "REJECT",
        None,
        "Cannot suspend flows that are not currently running.",
        deployment=True,
    ),
    # resuming / finishing from PAUSED (a blocking resume counts a run, then marks `resuming`)
    row(
        "PAUSED->RUNNING",
        st("PAUSED"),
        st("RUNNING"),
        "ACCEPT",
        ("RUNNING", None),
        run_count=1,
        after={"run_count": 2, "resuming": True},
    ),
    *[
        row(f"PAUSED->{t}", st("PAUSED"), st(t), "ACCEPT", (t, None))
        for t in ("SCHEDULED", *TERMINAL)
    ],
    row(
        "PAUSED->PENDING",
        st("PAUSED"),
        st("PENDING"),
        "REJECT",
        None,
        "This run cannot transition to the PENDING state from the PAUSED state.",
    ),
    row("PAUSED->PAUSED", st("PAUSED"), st("PAUSED"), "REJECT", None, NOT_RUNNING),
    row(
        "PAUSED(blocking)->CANCELLING",
        st("PAUSED"),
        st("CANCELLING"),
        "REJECT",
        None,
        "This run cannot transition to the CANCELLING state from the PAUSED state.",
    ),
    row(
        "PAUSED(suspended)->CANCELLING",
        st("PAUSED", "Suspended", pause_reschedule=True),
        st("CANCELLING"),
        "REJECT",
        ("CANCELLED", "Cancelled"),
        "Suspended flow run has no infrastructure to terminate.",
        deployment=True,
    ),
    # ... subject to timeout/deployment checks
    row(
        "PAUSED(timed out)->RUNNING",
        st("PAUSED", pause_timeout_in=-5),
        st("RUNNING"),
        "REJECT",
        ("FAILED", "Failed"),
        "The flow run pause has timed out and can no longer resume.",
    ),
    row(
        "PAUSED(not timed out)->RUNNING",
        st("PAUSED", pause_timeout_in=300),
        st("RUNNING"),
        "ACCEPT",
        ("RUNNING", None),
    ),
    row(
        "PAUSED(suspended, no deployment)->RUNNING",
        st("PAUSED", "Suspended", pause_reschedule=True),
        st("RUNNING"),
        "REJECT",
        None,
        "Cannot reschedule a running flow run without a deployment.",
    ),
    # terminal -> CRASHED/CANCELLING/PAUSED: ABORT
    *[
        row(f"{t}->{p}", st(t), st(p), "ABORT", None, TERMINAL_ABORT.format(t))
        for t in TERMINAL
        for p in ("CRASHED", "CANCELLING", "PAUSED")
    ],
    # COMPLETED (persisted result) -> non-terminal: REJECT
    *[
        row(
            f"COMPLETED(persisted)->{t}",
            st("COMPLETED", data=PERSISTED),
            st(t),
            "REJECT",
            None,
            "Run is already COMPLETED.",
            deployment=True,
        )
        for t in ("SCHEDULED", "PENDING", "RUNNING")
    ],
    row(
        "COMPLETED(persisted)->COMPLETED(unpersisted)",
        st("COMPLETED", data=PERSISTED),
        st("COMPLETED", data=UNPERSISTED),
        "REJECT",
        None,
        "Cannot overwrite a COMPLETED state that carries persisted result data with one that "
        "does not.",
    ),
    # terminal (unpersisted) -> RUNNING: ACCEPT (end_time cleared; a flow keeps its run_count)
    *[
        row(
            f"{t}(unpersisted)->RUNNING",
            st(t, data=UNPERSISTED),
            st("RUNNING"),
            "ACCEPT",
            ("RUNNING", None),
            run_count=1,
            after={"run_count": 2, "end_time": None, "retry_type": None},
        )
        for t in TERMINAL
    ],
    row(
        "COMPLETED(no data)->RUNNING",
        st("COMPLETED"),
        st("RUNNING"),
        "ACCEPT",
        ("RUNNING", None),
        run_count=1,
        after={"run_count": 2, "end_time": None},
    ),
    # terminal -> SCHEDULED: ABORT without a deployment; with one: ACCEPT, "reschedule",
    # run_count kept
    *[
        row(
            f"{t}->SCHEDULED(no deployment)",
            st(t),
            st("SCHEDULED"),
            "ABORT",
            None,
            "Cannot reschedule a run without an associated deployment.",
        )
        for t in TERMINAL
    ],
    *[
        row(
            f"{t}->SCHEDULED(deployment)",
            st(t),
            st("SCHEDULED"),
            "ACCEPT",
            ("SCHEDULED", "Scheduled"),
            deployment=True,
            run_count=2,
            after={"run_count": 2, "retry_type": "reschedule", "end_time": None},
        )
        for t in TERMINAL
    ],
    # PreventDuplicateTransitions (§5.3 rule 2): a repeated transition_id moves the run only once
    row(
        "RUNNING->COMPLETED(same transition_id)",
        st("RUNNING", transition_id=TRANSITION_ID),
        st("COMPLETED", transition_id=TRANSITION_ID),
        "REJECT",
        None,
        "This run has already made this state transition.",
    ),
    row(
        "RUNNING->COMPLETED(other transition_id)",
        st("RUNNING", transition_id=TRANSITION_ID),
        st("COMPLETED", transition_id=OTHER_TRANSITION_ID),
        "ACCEPT",
        ("COMPLETED", None),
    ),
]

assert len({r.id for r in ROWS}) == len(ROWS), "row ids must be unique"
