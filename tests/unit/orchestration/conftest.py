"""Builders for orchestration tests, served by the `build` fixture.

(A fixture rather than an importable module: conftest.py files are not reliably importable by name
when several test directories have one.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from flowrpc.server.ids import new_id
from flowrpc.server.orchestration.records import (
    FlowRunPolicy,
    FlowRunRecord,
    State,
    StateDetails,
    StateType,
    TaskRunPolicy,
    TaskRunRecord,
    default_state_name,
)

SECOND = 1_000_000
NOW = 1_800_000_000 * SECOND  # fixed "now" for every test
EARLIER = NOW - 60 * SECOND  # default timestamp of an initial state


def make_state(
    state_type: StateType | str,
    name: str | None = None,
    *,
    ts: int = EARLIER,
    message: str | None = None,
    data: Any = None,
    **details: Any,
) -> State:
    state_type = StateType(state_type)
    if state_type is StateType.SCHEDULED:
        details.setdefault("scheduled_time", ts)
    return State(
        id=new_id(),
        type=state_type,
        name=name or default_state_name(state_type),
        timestamp=ts,
        message=message,
        data=data,
        details=StateDetails(**details),
    )


def make_proposal(state_type: StateType | str, name: str | None = None, **kw: Any) -> State:
    """A proposal as the servicer hands it over: fresh id, timestamp now, name defaulted."""
    kw.setdefault("ts", NOW)
    return make_state(state_type, name, **kw)


def _with_current_state(record: Any, initial: State | None) -> Any:
    if initial is not None:
        record.state_id, record.state_type = initial.id, initial.type
        record.state_name, record.state_timestamp = initial.name, initial.timestamp
    return record


def make_flow_run(initial: State | None = None, *, policy: dict | None = None, **fields: Any):
    run = FlowRunRecord(
        id=new_id(), flow_id=new_id(), empirical_policy=FlowRunPolicy(**(policy or {})), **fields
    )
    return _with_current_state(run, initial)


def make_task_run(initial: State | None = None, *, policy: dict | None = None, **fields: Any):
    fields.setdefault("flow_run_id", new_id())
    run = TaskRunRecord(id=new_id(), empirical_policy=TaskRunPolicy(**(policy or {})), **fields)
    return _with_current_state(run, initial)


@pytest.fixture
def build() -> SimpleNamespace:
    return SimpleNamespace(
        now=NOW,
        second=SECOND,
        earlier=EARLIER,
        state=make_state,
        proposal=make_proposal,
        flow_run=make_flow_run,
        task_run=make_task_run,
    )
