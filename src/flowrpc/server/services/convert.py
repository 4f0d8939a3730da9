"""Protobuf <-> storage rows and orchestration records, and request validation.

Times are microseconds inside the server; Timestamp/Duration on the wire. Nested messages of
responses are built as dicts, which message constructors take directly: a run of a 200-run page
is built in one constructor call, with no intermediate message objects to copy.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from flowrpc.server.errors import QUOTED, InvalidArgument, quote
from flowrpc.server.ids import new_id
from flowrpc.server.orchestration import Decision
from flowrpc.server.orchestration.records import (
    MAX_RETRY_DELAY_SECONDS,
    MAX_RETRY_JITTER_FACTOR,
    TERMINAL_STATES,
    SetStateStatus,
    State,
    StateDetails,
    StateType,
    default_state_name,
)
from flowrpc.server.storage.rows import DETAIL_DEFAULTS
from flowrpc.v1 import (
    deployment_pb2,
    flow_pb2,
    flow_run_pb2,
    orchestration_pb2,
    state_pb2,
    task_run_pb2,
    work_pool_pb2,
)

MAX_LIMIT = 200
MAX_INT32 = 2**31 - 1

# ---- scalars ----


Seconds = dict[str, int]  # a Timestamp or Duration, as its constructor takes it


def timestamp(micros: int | None) -> Seconds | None:
    if micros is None:
        return None
    return {"seconds": micros // 1_000_000, "nanos": micros % 1_000_000 * 1000}


def duration(micros: int) -> Seconds:
    return {"seconds": micros // 1_000_000, "nanos": micros % 1_000_000 * 1000}


# The times the server keeps (BIGINT microseconds, with room for their arithmetic): Timestamps
# of the years 1 to 9999, and Durations of at most 10,000 years either way (both are protobuf's
# documented ranges). Anything else is INVALID_ARGUMENT, not an overflow in a query.
MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS = 315_576_000_000
NANOS = 1_000_000_000


def micros(message: Message, field: str, path: str | None = None) -> int | None:
    """A Timestamp or Duration field in microseconds; None when unset. `path` names the field in
    a violation (default: `field`)."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    seconds, nanos = value.seconds, value.nanos
    if isinstance(value, timestamp_pb2.Timestamp):
        valid = MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS and 0 <= nanos < NANOS
        rule = "must be a time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
    else:
        valid = abs(seconds) <= MAX_DURATION_SECONDS and abs(nanos) < NANOS and seconds * nanos >= 0
        rule = (
            f"must be a duration of at most {MAX_DURATION_SECONDS} s (10,000 years) either way,"
            " its seconds and nanos of the same sign"
        )
    if not valid:
        raise InvalidArgument({path or field: f"{rule}; got seconds={seconds}, nanos={nanos}"})
    return seconds * 1_000_000 + nanos // 1000


def struct(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Struct field's value as message constructors take it: the dict itself, which the
    constructor fills in place (no Struct built first and then copied); None (unset, which reads
    as empty) for None or an empty dict."""
    return value or None


def plain_struct(message: Message, field: str, path: str | None = None) -> dict[str, Any] | None:
    """A Struct field as a dict; None when unset. `path` names the field in a violation."""
    if not message.HasField(field):
        return None
    return plain_json(getattr(message, field), path or field)


def plain_json(value: Message, path: str) -> Any:
    """A Struct or Value as plain JSON data. NaN and Infinity have no JSON form: they are
    INVALID_ARGUMENT, naming where they are (looked for only when conversion fails)."""
    try:
        return json_format.MessageToDict(value)
    except ValueError as error:
        where = _not_finite(value, path)
        if where is None:  # not expected: MessageToDict fails on non-finite numbers only
            raise InvalidArgument({path: f"is not JSON data: {str(error)[:100]}"}) from None
        raise InvalidArgument(
            {where: "must be a finite number (NaN and Infinity have no JSON form)"}
        ) from None


def _not_finite(value: Message, path: str) -> str | None:
    """The path of the first NaN or Infinity in a Struct, ListValue or Value; None if none."""
    if isinstance(value, struct_pb2.Struct):
        items: Any = ((f"{path}.{_short(key)}", item) for key, item in value.fields.items())
    elif isinstance(value, struct_pb2.ListValue):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value.values))
    else:
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            return None if math.isfinite(value.number_value) else path
        if kind in ("struct_value", "list_value"):
            return _not_finite(getattr(value, kind), path)
        return None
    for where, item in items:
        if (found := _not_finite(item, where)) is not None:
            return found
    return None


def _short(key: str) -> str:
    """A Struct key as quoted in a field path: a bad value's path stays short."""
    return key if len(key) <= QUOTED else f"{key[:QUOTED]}..."


def optional(message: Message, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def require_id(value: str, field: str) -> str:
    """A UUID string in canonical form, or INVALID_ARGUMENT naming the field."""
    try:
        return _canonical_id(value)
    except ValueError:
        raise InvalidArgument({field: f"must be a UUID, got {quote(value)}"}) from None


@functools.lru_cache(maxsize=1024)
def _canonical_id(value: str) -> str:
    """Cached: the runs of a bulk create mostly name the same few flows and deployments."""
    return str(uuid.UUID(value))


def optional_id(value: str, field: str) -> str | None:
    return require_id(value, field) if value else None


def within(path: str, field: str) -> str:
    """A field path of a part of a request (a message at `path`) as a path from the whole
    request ("request": the part as a whole)."""
    return path if field == "request" else f"{path}.{field}"


@contextlib.contextmanager
def fields_within(path: str) -> Iterator[None]:
    """Violations raised inside, by checks written for the part at `path` as if it were the
    request, name their fields from the whole request."""
    try:
        yield
    except InvalidArgument as error:
        violations = {within(path, field): problem for field, problem in error.violations.items()}
        raise InvalidArgument(violations, error.reason) from None


def limit_of(request: Message, field: str = "limit") -> int:
    if not request.HasField(field):
        return MAX_LIMIT
    limit = getattr(request, field)
    if not 0 <= limit <= MAX_LIMIT:
        raise InvalidArgument({field: f"must be between 0 and {MAX_LIMIT}, got {limit}"})
    return limit


def optional_count(message: Message, field: str) -> int | None:
    """An optional number that may not be negative (priorities, concurrency limits)."""
    value = optional(message, field)
    if value is not None and value < 0:
        raise InvalidArgument({field: f"must be at least 0, got {value}"})
    return value


def offset_of(request: Message) -> int:
    if request.offset < 0:
        raise InvalidArgument({"offset": f"must be at least 0, got {request.offset}"})
    return request.offset


def enum_name(enum: EnumDescriptor, number: int, field: str) -> str:
    """The value's name without the enum's prefix (STATE_TYPE_RUNNING -> RUNNING)."""
    value = enum.values_by_number.get(number)
    if value is None:
        raise InvalidArgument({field: f"unknown {enum.name} value {number}"})
    return value.name.removeprefix(_value_prefix(enum.name))


@functools.cache
def _value_prefix(enum_name: str) -> str:
    """StateType -> STATE_TYPE_ (cached: every create and transition names a state type)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"


def state_type_of(number: int, field: str) -> StateType:
    if (known := _STATE_TYPES_BY_NUMBER.get(number)) is not None:
        return known  # every proposal names one: a dict, not the descriptor (1.6 µs)
    name = enum_name(state_pb2.StateType.DESCRIPTOR, number, field)
    if name == "UNSPECIFIED":
        raise InvalidArgument({field: "a state type is required"})
    return StateType(name)


# ---- filters ----

_LISTS = {"StringList", "StateTypeList"}


def filters(message: Message, path: str = "filter") -> dict[str, Any]:
    """A filter message as the plain nested dict storage compiles (see storage/filters.py):
    set fields only, lists unwrapped, times in microseconds, enum names without prefix."""
    plain: dict[str, Any] = {}
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.message_type is None:
            plain[field.name] = (
                enum_name(field.enum_type, value, where) if field.enum_type else value
            )
        elif field.message_type.full_name == "google.protobuf.Timestamp":
            plain[field.name] = micros(message, field.name, where)
        elif field.message_type.name in _LISTS:
            plain[field.name] = _list(message, field, value, where)
        else:
            plain[field.name] = filters(value, where)
    return plain


def _list(owner: Message, field: FieldDescriptor, value: Message, where: str) -> list[Any]:
    values = list(value.values)
    if field.message_type.name == "StateTypeList":
        return [state_type_of(v, f"{where}.values").value for v in values]
    if owner.DESCRIPTOR.name.endswith("Id"):  # lists of ids: reject what cannot be an id
        return [require_id(v, f"{where}.values") for v in values]
    return values


# ---- states ----

_DETAIL_TIMES = ("scheduled_time", "cache_expiration", "pause_timeout")


def details_to_proto(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A StateDetails message, as its constructor takes it, from a record's fields."""
    message = {}
    for name, value in fields.items():
        if value is not None and name in DETAIL_DEFAULTS:
            message[name] = timestamp(value) if name in _DETAIL_TIMES else value
    return message


def stored_details_to_proto(value: dict[str, Any] | None) -> dict[str, Any]:
    """The same from the stored JSON, which holds the fields that differ from their defaults
    (read without making a StateDetails record: a page of runs has 200)."""
    return details_to_proto({**DETAIL_DEFAULTS, **(value or {})})


def details_from_proto(message: state_pb2.StateDetails, path: str) -> StateDetails:
    values: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.name in _DETAIL_TIMES:
            values[field.name] = micros(message, field.name, f"{path}.{field.name}")
        elif field.name == "run_input_keyset":
            values[field.name] = dict(value)
        else:
            values[field.name] = value
    return StateDetails(**values)


def data_to_proto(data: Any) -> struct_pb2.Value | None:
    return None if data is None else json_format.ParseDict(data, struct_pb2.Value())


def state_to_proto(state: State) -> state_pb2.State:
    return state_pb2.State(
        id=state.id,
        type=STATE_TYPES[state.type.value],
        name=state.name,
        timestamp=timestamp(state.timestamp),
        message=state.message,
        data=data_to_proto(state.data),
        state_details=details_to_proto(vars(state.details)),
    )


def proposed_state(message: state_pb2.State, now: int, field: str = "state") -> State:
    """A proposal from a request: a fresh id and timestamp whatever it carried, the default name,
    and a SCHEDULED state's scheduled_time defaulting to now."""
    state_type = state_type_of(message.type, f"{field}.type")
    details = details_from_proto(message.state_details, f"{field}.state_details")
    if state_type == StateType.SCHEDULED and details.scheduled_time is None:
        details.scheduled_time = now
    data = plain_json(message.data, f"{field}.data") if message.HasField("data") else None
    return State(
        id=new_id(),
        type=state_type,
        name=message.name or default_state_name(state_type),
        timestamp=now,
        message=optional(message, "message"),
        data=data,
        details=details,
    )


def state_from_row(row: Any) -> dict[str, Any] | None:
    """The current state carried by a run row (run columns plus state_message/data/details), as
    the State constructor takes it."""
    if row.state_id is None:
        return None
    return {
        "id": row.state_id,
        "type": STATE_TYPES[row.state_type],
        "name": row.state_name,
        "timestamp": timestamp(row.state_timestamp),
        "message": row.state_message,
        "data": data_to_proto(row.state_data),
        "state_details": stored_details_to_proto(row.state_details),
    }


def state_row_to_proto(row: Any) -> state_pb2.State:
    """A row of a state table."""
    return state_pb2.State(
        id=row.id,
        type=STATE_TYPES[row.type],
        name=row.name,
        timestamp=timestamp(row.timestamp),
        message=row.message,
        data=data_to_proto(row.data),
        state_details=stored_details_to_proto(row.state_details),
    )


def result_to_proto(
    decision: Decision, state: State | None
) -> orchestration_pb2.OrchestrationResult:
    result = orchestration_pb2.OrchestrationResult(
        status=orchestration_pb2.SetStateStatus.Value(f"SET_STATE_STATUS_{decision.status.value}"),
        state=state_to_proto(state) if state is not None else None,
    )
    reason = decision.reason or ""
    if decision.status == SetStateStatus.ACCEPT:
        result.accept.SetInParent()
    elif decision.status == SetStateStatus.REJECT:
        result.reject.reason = reason
    elif decision.status == SetStateStatus.WAIT:
        result.wait.reason = reason
        # int32 on the wire: a run scheduled decades ahead waits "as long as can be said".
        result.wait.delay_seconds = min(decision.delay_seconds or 0, MAX_INT32)
    else:
        result.abort.reason = reason
    return result


# ---- runs ----


def _estimates(row: Any, now: int) -> tuple[int, int]:
    """(estimated_run_time, estimated_start_time_delta) at `now` (semantics §2.1)."""
    run_time = row.total_run_time
    if row.state_type == "RUNNING" and row.state_timestamp is not None:
        run_time += max(0, now - row.state_timestamp)
    expected, start = row.expected_start_time, row.start_time
    lateness = 0
    if expected is not None:
        if start is not None:
            lateness = max(0, start - expected)
        elif row.state_type not in TERMINAL_STATES and expected < now:
            lateness = now - expected
    return run_time, lateness


STATE_TYPES = {t.value: state_pb2.StateType.Value(f"STATE_TYPE_{t.value}") for t in StateType}
_STATE_TYPES_BY_NUMBER = {number: StateType(name) for name, number in STATE_TYPES.items()}


def state_type_number(value: str | None) -> int:
    return STATE_TYPES[value] if value else 0


def _identity(row: Any) -> dict[str, Any]:
    """The fields every stored object has."""
    return {
        "id": row.id,
        "created": timestamp(row.created),
        "updated": timestamp(row.updated),
        "name": row.name,
    }


def _run_fields(row: Any, now: int) -> dict[str, Any]:
    """What flow runs and task runs share: identity, current state and its bookkeeping."""
    run_time, lateness = _estimates(row, now)
    return {
        **_identity(row),
        "tags": row.tags or [],
        "labels": struct(row.labels),
        "state_id": row.state_id or "",
        "state_type": state_type_number(row.state_type),
        "state_name": row.state_name,
        "run_count": row.run_count,
        "expected_start_time": timestamp(row.expected_start_time),
        "next_scheduled_start_time": timestamp(row.next_scheduled_start_time),
        "start_time": timestamp(row.start_time),
        "end_time": timestamp(row.end_time),
        "total_run_time": duration(row.total_run_time),
        "estimated_run_time": duration(run_time),
        "estimated_start_time_delta": duration(lateness),
        "state": state_from_row(row),
    }


def flow_run_fields(row: Any, now: int) -> dict[str, Any]:
    """A FlowRun message, as constructors take it: a page's response is built from these in one
    call, not from FlowRun messages it would copy."""
    return {
        **_run_fields(row, now),
        "flow_id": row.flow_id,
        "deployment_id": row.deployment_id or "",
        "deployment_version": row.deployment_version,
        "work_queue_name": row.work_queue_name,
        "work_queue_id": row.work_queue_id or "",
        "work_pool_id": row.work_pool_id or "",
        "work_pool_name": row.work_pool_name,
        "flow_version": row.flow_version,
        "parameters": struct(row.parameters),
        "idempotency_key": row.idempotency_key,
        "context": struct(row.context),
        "empirical_policy": row.empirical_policy or {},
        "parent_task_run_id": row.parent_task_run_id or "",
        "auto_scheduled": row.auto_scheduled,
        "infrastructure_document_id": row.infrastructure_document_id or "",
        "infrastructure_pid": row.infrastructure_pid,
        "created_by": row.created_by or None,
        "job_variables": struct(row.job_variables),
    }


def flow_run_policy(
    message: flow_run_pb2.FlowRunPolicy, path: str = "empirical_policy"
) -> dict[str, Any]:
    return {
        "retries": optional(message, "retries"),
        "retry_delay": optional(message, "retry_delay"),
        "pause_keys": list(message.pause_keys),
        "resuming": message.resuming,
        "retry_type": optional(message, "retry_type"),
        "max_retries": message.max_retries,
        "retry_delay_seconds": _bounded(message, "retry_delay_seconds", path),
    }


def task_run_policy(message: task_run_pb2.TaskRunPolicy) -> dict[str, Any]:
    delays = list(message.retry_delay)
    path = "empirical_policy"
    return {
        "retries": optional(message, "retries"),
        "retry_delay": delays[0] if len(delays) == 1 else (delays or None),
        "retry_jitter_factor": (
            _bounded(message, "retry_jitter_factor", path)
            if message.HasField("retry_jitter_factor")
            else None
        ),
        "max_retries": message.max_retries,
        "retry_delay_seconds": _bounded(message, "retry_delay_seconds", path),
    }


_POLICY_BOUNDS = {
    "retry_delay_seconds": MAX_RETRY_DELAY_SECONDS,
    "retry_jitter_factor": MAX_RETRY_JITTER_FACTOR,
}


def _bounded(message: Message, field: str, path: str) -> float:
    """A policy number that becomes a delay: from 0 to its bound (NaN and Infinity fail too)."""
    value = getattr(message, field)
    most = _POLICY_BOUNDS[field]
    if not 0 <= value <= most:
        raise InvalidArgument({f"{path}.{field}": f"must be from 0 to {most:g}, got {value:.6g}"})
    return value


def task_run_to_proto(row: Any, now: int) -> task_run_pb2.TaskRun:
    policy = dict(row.empirical_policy or {})
    delay = policy.get("retry_delay")
    policy["retry_delay"] = [] if delay is None else delay if isinstance(delay, list) else [delay]
    return task_run_pb2.TaskRun(
        **_run_fields(row, now),
        flow_run_id=row.flow_run_id or "",
        task_key=row.task_key,
        dynamic_key=row.dynamic_key,
        cache_key=row.cache_key,
        cache_expiration=timestamp(row.cache_expiration),
        task_version=row.task_version,
        empirical_policy=task_run_pb2.TaskRunPolicy(**policy),
        flow_run_run_count=row.flow_run_run_count,
        task_inputs={
            # Stored as task_inputs() below makes them: field names and enum names, which the
            # constructors take directly (a tenth of json_format.ParseDict's cost).
            name: task_run_pb2.TaskRunInputs(
                inputs=[task_run_pb2.TaskRunInput(**i) for i in inputs]
            )
            for name, inputs in (row.task_inputs or {}).items()
        },
    )


def task_inputs(message: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [
            json_format.MessageToDict(item, preserving_proto_field_name=True)
            for item in inputs.inputs
        ]
        for name, inputs in message.items()
    }


def flow_to_proto(row: Any) -> flow_pb2.Flow:
    return flow_pb2.Flow(
        **_identity(row),
        tags=row.tags or [],
        labels=struct(row.labels),
    )


def deployment_to_proto(row: Any) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        **_identity(row),
        flow_id=row.flow_id,
        version=row.version,
        description=row.description,
        paused=row.paused,
        tags=row.tags or [],
        labels=struct(row.labels),
        parameters=struct(row.parameters),
        job_variables=struct(row.job_variables),
        work_pool_name=row.work_pool_name,
        work_queue_name=row.work_queue_name,
        work_queue_id=row.work_queue_id or "",
        entrypoint=row.entrypoint,
        path=row.path,
    )


def work_pool_to_proto(row: Any) -> work_pool_pb2.WorkPool:
    return work_pool_pb2.WorkPool(
        **_identity(row),
        description=row.description,
        type=row.type,
        base_job_template=struct(row.base_job_template),
        is_paused=row.is_paused,
        concurrency_limit=row.concurrency_limit,
        default_queue_id=row.default_queue_id or "",
    )


def work_queue_to_proto(row: Any) -> work_pool_pb2.WorkQueue:
    return work_pool_pb2.WorkQueue(
        **_identity(row),
        description=row.description,
        is_paused=row.is_paused,
        concurrency_limit=row.concurrency_limit,
        # int32 on the wire; SQLite rows written before priorities were bounded may hold more.
        priority=max(-MAX_INT32 - 1, min(row.priority, MAX_INT32)),
        work_pool_id=row.work_pool_id,
        work_pool_name=row.work_pool_name,
    )
