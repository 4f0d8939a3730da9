"""State constructors and State methods (Prefect semantics §1.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flowrpc import states
from flowrpc.schemas.objects import State, StateDetails, StateType

WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _close_to_now(value: datetime) -> bool:
    return abs(datetime.now(UTC) - value) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("constructor", "state_type", "name"),
    [
        (states.Scheduled, StateType.SCHEDULED, "Scheduled"),
        (states.Late, StateType.SCHEDULED, "Late"),
        (states.AwaitingRetry, StateType.SCHEDULED, "AwaitingRetry"),
        (states.AwaitingConcurrencySlot, StateType.SCHEDULED, "AwaitingConcurrencySlot"),
        (states.Pending, StateType.PENDING, "Pending"),
        (states.Submitting, StateType.PENDING, "Submitting"),
        (states.InfrastructurePending, StateType.PENDING, "InfrastructurePending"),
        (states.Running, StateType.RUNNING, "Running"),
        (states.Retrying, StateType.RUNNING, "Retrying"),
        (states.Completed, StateType.COMPLETED, "Completed"),
        (states.Failed, StateType.FAILED, "Failed"),
        (states.Crashed, StateType.CRASHED, "Crashed"),
        (states.Cancelled, StateType.CANCELLED, "Cancelled"),
        (states.Cancelling, StateType.CANCELLING, "Cancelling"),
        (states.Paused, StateType.PAUSED, "Paused"),
        (states.Suspended, StateType.PAUSED, "Suspended"),
    ],
)
def test_constructors_set_type_and_name(constructor, state_type, name):
    state = constructor(message="hello")
    assert state.type == state_type
    assert state.name == name
    assert state.message == "hello"
    assert _close_to_now(state.timestamp)


def test_scheduled_time_defaults_to_now_and_takes_the_argument():
    assert _close_to_now(states.Scheduled().state_details.scheduled_time)
    assert states.Scheduled(scheduled_time=WHEN).state_details.scheduled_time == WHEN
    assert states.Late(scheduled_time=WHEN).state_details.scheduled_time == WHEN
    given = states.Scheduled(state_details={"scheduled_time": WHEN})
    assert given.state_details.scheduled_time == WHEN


def test_scheduled_time_given_twice_is_an_error():
    with pytest.raises(ValueError, match="extra scheduled_time"):
        states.Scheduled(scheduled_time=WHEN, state_details={"scheduled_time": WHEN})


def test_a_raw_scheduled_state_gets_a_scheduled_time():
    assert _close_to_now(State(type="SCHEDULED").state_details.scheduled_time)
    assert State(type="PENDING").state_details.scheduled_time is None


def test_name_defaults_from_type():
    assert State(type=StateType.CANCELLING).name == "Cancelling"
    assert State(type="COMPLETED", name="Cached").name == "Cached"


def test_paused_with_timeout_seconds():
    state = states.Paused(timeout_seconds=60, pause_key="k1")
    details = state.state_details
    expected = datetime.now(UTC) + timedelta(seconds=60)
    assert abs(details.pause_timeout - expected) < timedelta(seconds=5)
    assert details.pause_key == "k1"
    assert details.pause_reschedule is False


def test_paused_with_expiration_time_and_reschedule():
    state = states.Paused(pause_expiration_time=WHEN, reschedule=True)
    assert state.state_details.pause_timeout == WHEN
    assert state.state_details.pause_reschedule is True
    assert states.Paused().state_details.pause_timeout is None


def test_paused_refuses_two_deadlines():
    with pytest.raises(ValueError, match="both"):
        states.Paused(timeout_seconds=5, pause_expiration_time=WHEN)
    with pytest.raises(ValueError, match="extra pause timeout"):
        states.Paused(state_details=StateDetails(pause_timeout=WHEN))


def test_suspended_is_a_rescheduling_pause():
    state = states.Suspended(timeout_seconds=10, pause_key="p")
    assert state.is_paused()
    assert state.name == "Suspended"
    assert state.state_details.pause_reschedule is True
    assert state.state_details.pause_key == "p"


def test_predicates():
    checks = {
        "is_scheduled": StateType.SCHEDULED,
        "is_pending": StateType.PENDING,
        "is_running": StateType.RUNNING,
        "is_completed": StateType.COMPLETED,
        "is_failed": StateType.FAILED,
        "is_crashed": StateType.CRASHED,
        "is_cancelled": StateType.CANCELLED,
        "is_cancelling": StateType.CANCELLING,
        "is_paused": StateType.PAUSED,
    }
    for state_type in StateType:
        state = State(type=state_type)
        for predicate, matching in checks.items():
            assert getattr(state, predicate)() == (state_type == matching)
        assert state.is_final() == (
            state_type
            in {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
        )


def test_copy_with_update_as_prefect_scripts_do():
    original = states.Running(message="working")
    original = original.model_copy(update={"timestamp": WHEN})
    copied = original.copy(update={"name": "Cancelled", "type": StateType.CANCELLED})
    assert copied.type == StateType.CANCELLED
    assert copied.is_cancelled()
    assert copied.name == "Cancelled"
    assert copied.message == "working"
    assert copied.timestamp != WHEN  # reset like Prefect's model_copy
    assert original.type == StateType.RUNNING


def test_copy_coerces_a_string_type():
    copied = states.Running().copy(update={"type": "CANCELLED"})
    assert copied.type is StateType.CANCELLED


def test_model_copy_resets_timestamp_and_fresh_copy_the_id():
    original = states.Completed().model_copy(update={"timestamp": WHEN})
    assert original.timestamp == WHEN
    assert original.model_copy().timestamp != WHEN
    fresh = original.fresh_copy()
    assert fresh.id != original.id
    assert fresh.type == original.type
