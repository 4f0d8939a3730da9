"""Small helpers for the states that rules mint or inspect."""

from __future__ import annotations

from typing import Any

from flowrpc.server.ids import new_id

from .records import State, StateDetails, StateType, default_state_name


def new_state(
    state_type: StateType,
    now: int,
    *,
    name: str | None = None,
    message: str | None = None,
    data: Any = None,
    **details: Any,
) -> State:
    """A server-minted state: fresh id, timestamp `now`, default name; SCHEDULED defaults to now."""
    if state_type is StateType.SCHEDULED:
        details.setdefault("scheduled_time", now)
    return State(
        id=new_id(),
        type=state_type,
        name=name or default_state_name(state_type),
        timestamp=now,
        message=message,
        data=data,
        details=StateDetails(**details),
    )


def fresh_copy(state: State, now: int, **changes: Any) -> State:
    """The same state under a new id and timestamp (details copied, so they can be changed)."""
    return state.copy(id=new_id(), timestamp=now, **changes)


def has_persisted_result(state: State) -> bool:
    """Persisted results are result-record dicts; {"type": "unpersisted"} means no result."""
    return isinstance(state.data, dict) and state.data.get("type") != "unpersisted"


def private_copy(proposed: State) -> State:
    """The proposal as the engine works on it: a copy (rules mutate it) in which a SCHEDULED
    state always carries its scheduled time (StateCreate defaults it to now)."""
    state = proposed.copy()
    if state.type is StateType.SCHEDULED and state.details.scheduled_time is None:
        state.details.scheduled_time = state.timestamp
    return state
