"""Rows to orchestration records and back."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy.engine import Result

from flowrpc.server.orchestration.records import (
    FlowRunPolicy,
    FlowRunRecord,
    State,
    StateDetails,
    StateType,
    TaskRunPolicy,
    TaskRunRecord,
)

R = TypeVar("R")
_DETAIL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StateDetails)}


def plain(result: Result[Any]) -> list[SimpleNamespace]:
    """Result rows as plain objects, for pages that are converted field by field: attribute
    access on a SQLAlchemy Row costs about 0.5 µs, and a run's conversion reads 40 of them."""
    keys = result.keys()
    return [SimpleNamespace(**dict(zip(keys, row, strict=True))) for row in result]


def details_to_json(details: StateDetails) -> dict[str, Any]:
    """Only the fields that differ from their defaults: most states carry two or three."""
    return {k: v for k, v in vars(details).items() if v != _DETAIL_DEFAULTS[k]}


def details_from_json(value: dict[str, Any] | None) -> StateDetails:
    return StateDetails(**{k: v for k, v in (value or {}).items() if k in _DETAIL_DEFAULTS})


def state_from_row(row: Any, prefix: str = "") -> State:
    """A row of a state table, or a state's columns labelled with `prefix` in a wider row."""
    m = row._mapping
    return State(
        id=m[prefix + "id"],
        type=StateType(m[prefix + "type"]),
        name=m[prefix + "name"],
        timestamp=m[prefix + "timestamp"],
        message=m[prefix + "message"],
        data=m[prefix + "data"],
        details=details_from_json(m[prefix + "state_details"]),
    )


def state_values(state: State) -> dict[str, Any]:
    return {
        "id": state.id,
        "type": state.type.value,
        "name": state.name,
        "timestamp": state.timestamp,
        "message": state.message,
        "data": state.data,
        "state_details": details_to_json(state.details),
    }


def policy_from_json(cls: type[R], value: dict[str, Any] | None) -> R:
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in (value or {}).items() if k in known})


def policy_to_json(policy: Any) -> dict[str, Any]:
    return dataclasses.asdict(policy)


def _record(cls: type[R], row: Any, policy_cls: type) -> R:
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(row, f.name)
        if f.name == "empirical_policy":
            value = policy_from_json(policy_cls, value)
        elif f.name == "state_type" and value is not None:
            value = StateType(value)
        values[f.name] = value
    return cls(**values)


def flow_run_record(row: Any) -> FlowRunRecord:
    return _record(FlowRunRecord, row, FlowRunPolicy)


def task_run_record(row: Any) -> TaskRunRecord:
    return _record(TaskRunRecord, row, TaskRunPolicy)


def _column(name: str, value: Any) -> Any:
    if name == "empirical_policy":
        return policy_to_json(value)
    if name == "state_type" and value is not None:
        return value.value
    return value


def record_columns(record: Any) -> dict[str, Any]:
    """Every field of a record as column values."""
    return {f.name: _column(f.name, getattr(record, f.name)) for f in dataclasses.fields(record)}


def record_changes(before: Any, after: Any) -> dict[str, Any]:
    """Column values of `after` that differ from `before` (records of the same run)."""
    return {
        f.name: _column(f.name, getattr(after, f.name))
        for f in dataclasses.fields(after)
        if getattr(before, f.name) != getattr(after, f.name)
    }


def copy_record(record: R) -> R:
    return copy.deepcopy(record)
