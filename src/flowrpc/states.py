"""State constructors with Prefect's names and behaviour (`prefect.states`).

Each returns a `flowrpc.schemas.objects.State`; keyword arguments (name, message, data,
state_details) pass through to it. `cls` lets a caller build a State subclass, as in Prefect.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flowrpc.schemas._base import now
from flowrpc.schemas.objects import State, StateDetails, StateType

__all__ = [
    "AwaitingConcurrencySlot",
    "AwaitingRetry",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "InfrastructurePending",
    "Late",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "Submitting",
    "Suspended",
]


def _details(kwargs: dict[str, Any]) -> StateDetails:
    return StateDetails.model_validate(kwargs.pop("state_details", None) or {})


def Scheduled(
    cls: type[State] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State:
    """SCHEDULED, to start at scheduled_time (default now)."""
    state_details = _details(kwargs)
    if scheduled_time is None:
        scheduled_time = state_details.scheduled_time or now()
    elif state_details.scheduled_time:
        raise ValueError("An extra scheduled_time was provided in state_details")
    state_details.scheduled_time = scheduled_time
    return cls(type=StateType.SCHEDULED, state_details=state_details, **kwargs)


def Late(cls: type[State] = State, scheduled_time: datetime | None = None, **kwargs: Any) -> State:
    return Scheduled(cls=cls, scheduled_time=scheduled_time, name="Late", **kwargs)


def AwaitingRetry(
    cls: type[State] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State:
    return Scheduled(cls=cls, scheduled_time=scheduled_time, name="AwaitingRetry", **kwargs)


def AwaitingConcurrencySlot(
    cls: type[State] = State, scheduled_time: datetime | None = None, **kwargs: Any
) -> State:
    return Scheduled(
        cls=cls, scheduled_time=scheduled_time, name="AwaitingConcurrencySlot", **kwargs
    )


def Pending(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.PENDING, **kwargs)


def Submitting(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.PENDING, name="Submitting", **kwargs)


def InfrastructurePending(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.PENDING, name="InfrastructurePending", **kwargs)


def Running(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.RUNNING, **kwargs)


def Retrying(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.RUNNING, name="Retrying", **kwargs)


def Completed(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.COMPLETED, **kwargs)


def Failed(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.FAILED, **kwargs)


def Crashed(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.CRASHED, **kwargs)


def Cancelled(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.CANCELLED, **kwargs)


def Cancelling(cls: type[State] = State, **kwargs: Any) -> State:
    return cls(type=StateType.CANCELLING, **kwargs)


def Paused(
    cls: type[State] = State,
    timeout_seconds: int | None = None,
    pause_expiration_time: datetime | None = None,
    reschedule: bool = False,
    pause_key: str | None = None,
    **kwargs: Any,
) -> State:
    """PAUSED until resumed; pause_timeout = pause_expiration_time or now + timeout_seconds."""
    state_details = _details(kwargs)
    if state_details.pause_timeout:
        raise ValueError("An extra pause timeout was provided in state_details")
    if pause_expiration_time is not None and timeout_seconds is not None:
        raise ValueError("Cannot supply both a pause_expiration_time and timeout_seconds")
    if pause_expiration_time is not None:
        state_details.pause_timeout = pause_expiration_time
    elif timeout_seconds is not None:
        state_details.pause_timeout = now() + timedelta(seconds=timeout_seconds)
    state_details.pause_reschedule = reschedule
    state_details.pause_key = pause_key
    return cls(type=StateType.PAUSED, state_details=state_details, **kwargs)


def Suspended(
    cls: type[State] = State,
    timeout_seconds: int | None = None,
    pause_expiration_time: datetime | None = None,
    pause_key: str | None = None,
    **kwargs: Any,
) -> State:
    """A Paused state named "Suspended": the process exits and the run is rescheduled on resume."""
    return Paused(
        cls=cls,
        timeout_seconds=timeout_seconds,
        pause_expiration_time=pause_expiration_time,
        reschedule=True,
        pause_key=pause_key,
        name="Suspended",
        **kwargs,
    )
