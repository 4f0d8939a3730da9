"""Every row of the outcomes table (§5.6) and the ordering notes of §5.3, under CoreFlowPolicy."""

import pytest

from flowrpc.server.orchestration import FlowPolicy, orchestrate_flow_run
from flowrpc.server.orchestration.records import SetStateStatus, StateType

S = StateType
ACCEPT, REJECT, WAIT, ABORT = (
    SetStateStatus.ACCEPT,
    SetStateStatus.REJECT,
    SetStateStatus.WAIT,
    SetStateStatus.ABORT,
)
SECOND = 1_000_000
PERSISTED = {"type": "reference", "storage_key": "/results/abc"}
UNPERSISTED = {"type": "unpersisted"}
NON_TERMINAL = [S.SCHEDULED, S.PENDING, S.RUNNING, S.PAUSED, S.CANCELLING]
TERMINAL = [S.COMPLETED, S.FAILED, S.CANCELLED, S.CRASHED]

CANCELLING_ONLY = "Cannot transition flows that are cancelling to a state other than Cancelled."
NOT_RUNNING = "Cannot pause flows that are not currently running."
NO_INFRA = "Scheduled flow run has no infrastructure to terminate."


def st(state_type, name=None, **kw):
    """A state spec: build.state(**spec) makes it. scheduled_in=N puts scheduled_time N s ahead."""
    return {"state_type": state_type, "name": name, **kw}


def row(case_id, initial, proposed, status, result=None, reason=None, **run_fields):
    """`result`: (type, name) of the state written, or None when nothing is written."""
    return pytest.param(initial, proposed, run_fields, status, result, reason, id=case_id)


ROWS = [
    # none -> any type except PAUSED: ACCEPT; none -> PAUSED: ABORT
    *[
        row(f"none->{t.value}", None, st(t), ACCEPT, (t, None))
        for t in StateType
        if t is not S.PAUSED
    ],
    row("none->PAUSED", None, st(S.PAUSED), ABORT, None, "Cannot pause flows with no state."),
    # SCHEDULED -> PENDING: ACCEPT (scheduled_time copied: see the dedicated test below)
    row("SCHEDULED->PENDING", st(S.SCHEDULED), st(S.PENDING), ACCEPT, (S.PENDING, "Pending")),
    # SCHEDULED/PENDING (scheduled_time in future) -> RUNNING: WAIT
    *[
        row(
            f"{t.value}(future)->RUNNING",
            st(t, scheduled_in=45),
            st(S.RUNNING),
            WAIT,
            None,
            "Scheduled time is in the future",
        )
        for t in (S.SCHEDULED, S.PENDING)
    ],
    # SCHEDULED/PENDING (scheduled_time past/absent) -> RUNNING: ACCEPT
    row("SCHEDULED(past)->RUNNING", st(S.SCHEDULED), st(S.RUNNING), ACCEPT, (S.RUNNING, None)),
    row(
        "PENDING(past)->RUNNING",
        st(S.PENDING, scheduled_in=-5),
        st(S.RUNNING),
        ACCEPT,
        (S.RUNNING, None),
    ),
    row("PENDING(absent)->RUNNING", st(S.PENDING), st(S.RUNNING), ACCEPT, (S.RUNNING, None)),
    # Late marking
    row("Scheduled->Late", st(S.SCHEDULED), st(S.SCHEDULED, "Late"), ACCEPT, (S.SCHEDULED, "Late")),
    row(
        "Late->Late",
        st(S.SCHEDULED, "Late"),
        st(S.SCHEDULED, "Late"),
        REJECT,
        None,
        "This flow run is already marked late.",
    ),
    *[
        row(
            f"{t.value}->Late",
            st(t),
            st(S.SCHEDULED, "Late"),
            REJECT,
            None,
            "Only scheduled flows can be marked late.",
        )
        for t in (S.RUNNING, S.PENDING)
    ],
    row(
        "CANCELLING->Late", st(S.CANCELLING), st(S.SCHEDULED, "Late"), REJECT, None, CANCELLING_ONLY
    ),
    # cancelling scheduled runs
    row(
        "SCHEDULED(no pid)->CANCELLING",
        st(S.SCHEDULED),
        st(S.CANCELLING),
        REJECT,
        (S.CANCELLED, "Cancelled"),
        NO_INFRA,
    ),
    row(
        "SCHEDULED(pid)->CANCELLING",
        st(S.SCHEDULED),
        st(S.CANCELLING),
        ACCEPT,
        (S.CANCELLING, "Cancelling"),
        infrastructure_pid="pid-1",
    ),
    # pending sub-states
    row(
        "Pending->Pending",
        st(S.PENDING),
        st(S.PENDING),
        ABORT,
        None,
        "This run is in a PENDING state and cannot transition to a PENDING state.",
    ),
    row(
        "Pending->Submitting",
        st(S.PENDING),
        st(S.PENDING, "Submitting"),
        ACCEPT,
        (S.PENDING, "Submitting"),
    ),
    row(
        "Submitting->Pending",
        st(S.PENDING, "Submitting"),
        st(S.PENDING),
        ABORT,
        None,
        "This run is in a PENDING state and cannot transition to a PENDING state.",
    ),
    *[
        row(
            f"{t.value}->PENDING",
            st(t),
            st(S.PENDING),
            ABORT,
            None,
            f"This run is in a {t.value} state and cannot transition to a PENDING state.",
        )
        for t in (S.RUNNING, S.CANCELLED)
    ],
    # CANCELLING -> anything but CANCELLED: REJECT (stays CANCELLING)
    *[
        row(f"CANCELLING->{t.value}", st(S.CANCELLING), st(t), REJECT, None, CANCELLING_ONLY)
        for t in StateType
        if t is not S.CANCELLED
    ],
    row("CANCELLING->CANCELLED", st(S.CANCELLING), st(S.CANCELLED), ACCEPT, (S.CANCELLED, None)),
    # retries
    row(
        "RUNNING->FAILED(retries left)",
        st(S.RUNNING),
        st(S.FAILED),
        REJECT,
        (S.SCHEDULED, "AwaitingRetry"),
        "Retrying",
        run_count=1,
        policy={"retries": 1},
    ),
    row(
        "RUNNING->FAILED(retries null)",
        st(S.RUNNING),
        st(S.FAILED),
        ACCEPT,
        (S.FAILED, None),
        run_count=1,
    ),
    row(
        "RUNNING->FAILED(exhausted)",
        st(S.RUNNING),
        st(S.FAILED),
        ACCEPT,
        (S.FAILED, None),
        run_count=2,
        policy={"retries": 1},
    ),
    # pausing
    row("RUNNING->PAUSED", st(S.RUNNING), st(S.PAUSED), ACCEPT, (S.PAUSED, "Paused")),
    *[
        row(f"{t.value}->PAUSED", st(t), st(S.PAUSED), REJECT, None, NOT_RUNNING)
        for t in (S.SCHEDULED, S.PENDING)
    ],
    # resuming / finishing from PAUSED
    *[
        row(f"PAUSED->{t.value}", st(S.PAUSED), st(t), ACCEPT, (t, None))
        for t in (S.RUNNING, S.SCHEDULED, *TERMINAL)
    ],
    row(
        "PAUSED->PENDING",
        st(S.PAUSED),
        st(S.PENDING),
        REJECT,
        None,
        "This run cannot transition to the PENDING state from the PAUSED state.",
    ),
    row("PAUSED->PAUSED", st(S.PAUSED), st(S.PAUSED), REJECT, None, NOT_RUNNING),
    row(
        "PAUSED(blocking)->CANCELLING",
        st(S.PAUSED),
        st(S.CANCELLING),
        REJECT,
        None,
        "This run cannot transition to the CANCELLING state from the PAUSED state.",
    ),
    row(
        "PAUSED(suspended)->CANCELLING",
        st(S.PAUSED, "Suspended", pause_reschedule=True),
        st(S.CANCELLING),
        REJECT,
        (S.CANCELLED, "Cancelled"),
        "Suspended flow run has no infrastructure to terminate.",
        deployment_id="d",
    ),
    # terminal -> CRASHED/CANCELLING/PAUSED: ABORT
    *[
        row(
            f"{t.value}->{p.value}",
            st(t),
            st(p),
            ABORT,
            None,
            f"Run is already in terminal state {t.value}.",
        )
        for t in TERMINAL
        for p in (S.CRASHED, S.CANCELLING, S.PAUSED)
    ],
    # COMPLETED (persisted result) -> non-terminal: REJECT
    *[
        row(
            f"COMPLETED(persisted)->{t.value}",
            st(S.COMPLETED, data=PERSISTED),
            st(t),
            REJECT,
            None,
            "Run is already COMPLETED.",
            deployment_id="d",
        )
        for t in (S.SCHEDULED, S.PENDING, S.RUNNING)
    ],
    # terminal (unpersisted) -> RUNNING: ACCEPT
    *[
        row(
            f"{t.value}(unpersisted)->RUNNING",
            st(t, data=UNPERSISTED),
            st(S.RUNNING),
            ACCEPT,
            (S.RUNNING, None),
        )
        for t in TERMINAL
    ],
    row("COMPLETED(no data)->RUNNING", st(S.COMPLETED), st(S.RUNNING), ACCEPT, (S.RUNNING, None)),
    # terminal -> SCHEDULED
    *[
        row(
            f"{t.value}->SCHEDULED(no deployment)",
            st(t),
            st(S.SCHEDULED),
            ABORT,
            None,
            "Cannot reschedule a run without an associated deployment.",
        )
        for t in TERMINAL
    ],
    *[
        row(
            f"{t.value}->SCHEDULED(deployment)",
            st(t),
            st(S.SCHEDULED),
            ACCEPT,
            (S.SCHEDULED, "Scheduled"),
            deployment_id="d",
        )
        for t in TERMINAL
    ],
]


def _state(build, spec):
    spec = dict(spec)
    scheduled_in = spec.pop("scheduled_in", None)
    if scheduled_in is not None:
        spec["scheduled_time"] = build.now + scheduled_in * SECOND
    return build.state(**spec)


@pytest.mark.parametrize("initial, proposed, run_fields, status, result, reason", ROWS)
def test_outcome(build, initial, proposed, run_fields, status, result, reason):
    initial_state = _state(build, initial) if initial else None
    proposed_state = _state(build, {"ts": build.now, **proposed})
    run = build.flow_run(initial_state, **run_fields)

    decision = orchestrate_flow_run(
        run, initial_state, proposed_state, policy=FlowPolicy.CORE, now=build.now
    )

    assert decision.status is status
    assert decision.reason == reason
    if result is None:
        assert decision.state is None
        assert run.state_id == (initial_state.id if initial_state else None)
    else:
        expected_type, expected_name = result
        assert decision.state.type is expected_type
        assert decision.state.name == (expected_name or proposed_state.name)
        assert (run.state_id, run.state_type) == (decision.state.id, expected_type)
    if status is WAIT:
        assert decision.delay_seconds == 45


def test_scheduled_to_pending_copies_the_scheduled_time(build):
    initial = build.state(S.SCHEDULED, scheduled_time=build.now - 3 * SECOND)
    run = build.flow_run(initial)
    decision = orchestrate_flow_run(
        run, initial, build.proposal(S.PENDING), policy=FlowPolicy.CORE, now=build.now
    )
    assert decision.state.details.scheduled_time == build.now - 3 * SECOND
    assert run.next_scheduled_start_time is None


@pytest.mark.parametrize("terminal", TERMINAL)
def test_rerun_from_terminal_clears_end_time(build, terminal):
    initial = build.state(terminal)
    run = build.flow_run(initial, start_time=build.earlier, end_time=build.earlier, run_count=1)
    orchestrate_flow_run(
        run, initial, build.proposal(S.RUNNING), policy=FlowPolicy.CORE, now=build.now
    )
    assert (run.end_time, run.run_count) == (None, 2)


@pytest.mark.parametrize("terminal", TERMINAL)
def test_reschedule_from_terminal_marks_a_reschedule_and_keeps_run_count(build, terminal):
    initial = build.state(terminal)
    run = build.flow_run(initial, deployment_id="d", run_count=2)
    orchestrate_flow_run(
        run, initial, build.proposal(S.SCHEDULED), policy=FlowPolicy.CORE, now=build.now
    )
    assert (run.empirical_policy.retry_type, run.run_count) == ("reschedule", 2)
