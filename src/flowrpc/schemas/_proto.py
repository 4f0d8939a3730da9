"""One generic converter between Python values and flowrpc.v1 protobuf messages.

The schemas mirror the protos field for field, so conversion is driven by the message
descriptors alone: no per-class code. The rules:

* Names: Prefect's operator names lose their trailing underscore (`like_` -> `like`, `id_` -> `id`),
  and the list operators are renamed (`any_` -> `any_of`, `not_any_` -> `not_any_of`,
  `all_` -> `all_of`).
* A message whose only field is a repeated field (StringList, StateTypeList, TaskRunInputs) is a
  "list wrapper": it stands for a Python list. Wrapping lets proto3 tell "not given" from "empty".
* Enums travel by name without their prefix: StateType.COMPLETED <-> STATE_TYPE_COMPLETED,
  Operator.or_ <-> FILTER_OPERATOR_OR.
* Well-known types: Timestamp <-> aware UTC datetime, Duration <-> timedelta, Struct/Value <-> JSON.
* Decoding lists only fields that are set (proto3 drops zero values), so the pydantic model's
  defaults fill the rest (an empty id string becomes the model's None).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

_LIST_OPERATORS = {"any": "any_of", "not_any": "not_any_of", "all": "all_of"}

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_FIELD_MASK = "google.protobuf.FieldMask"


def proto_name(key: str) -> str:
    """The proto field name of a Prefect attribute name (`any_` -> `any_of`, `like_` -> `like`)."""
    if not key.endswith("_"):
        return key
    stripped = key.rstrip("_")
    return _LIST_OPERATORS.get(stripped, stripped)


def enum_prefix(enum: EnumDescriptor) -> str:
    # Every flowrpc enum starts with <PREFIX>_UNSPECIFIED = 0 (buf STANDARD lint enforces it).
    return enum.values_by_number[0].name.removesuffix("UNSPECIFIED")


def enum_number(enum: EnumDescriptor, value: Any) -> int:
    """The number of a Python enum member, name or number in a proto enum."""
    if isinstance(value, int) and not isinstance(value, Enum):
        return value
    raw = value.value if isinstance(value, Enum) else value
    name = enum_prefix(enum) + str(raw).rstrip("_").upper()
    if name not in enum.values_by_name:
        raise ValueError(f"{raw!r} is not a valid {enum.name}")
    return enum.values_by_name[name].number


def enum_name(enum: EnumDescriptor, number: int) -> str | None:
    """The unprefixed name of a proto enum number; None for UNSPECIFIED or unknown numbers."""
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return None
    return value.name.removeprefix(enum_prefix(enum))


def _list_wrapper_field(descriptor: Descriptor) -> FieldDescriptor | None:
    fields = descriptor.fields
    if len(fields) == 1 and fields[0].is_repeated and not _is_map(fields[0]):
        return fields[0]
    return None


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


# Struct and Value hold every number as a double: integers are exact up to this magnitude only.
EXACT_INTEGERS = 2**53


def jsonable(value: Any) -> Any:
    """A value for a Struct or Value field: JSON data (UUIDs, datetimes, models... converted).
    ValueError for an integer the double would round: sent, it would come back changed."""
    data = to_jsonable_python(value)
    if (number := inexact_integer(data)) is not None:
        raise ValueError(
            f"{number} cannot be sent exactly: JSON fields (google.protobuf.Struct) hold numbers "
            f"as doubles, exact to ±2**53 only; send it as a string"
        )
    return data


def inexact_integer(data: Any) -> int | None:
    """The first integer in JSON data beyond ±EXACT_INTEGERS, or None."""
    if type(data) is int:
        return data if abs(data) > EXACT_INTEGERS else None
    items = data.values() if isinstance(data, dict) else data if isinstance(data, list) else ()
    for item in items:
        if (number := inexact_integer(item)) is not None:
            return number
    return None


# ---- Python -> protobuf ----


def to_message(message_cls: type[Message], data: Mapping[str, Any] | BaseModel) -> Message:
    """Build a message from a dict (or pydantic model) whose keys are attribute names.

    None values are skipped (unset). Unknown keys raise ValueError: a silently dropped filter
    criterion would widen a query, so we never drop one.
    """
    message = message_cls()
    fill(message, data)
    return message


def fill(message: Message, data: Any) -> None:
    """Write a Python value into an (empty) message, dispatching on the message type."""
    descriptor = message.DESCRIPTOR
    full_name = descriptor.full_name
    if full_name == _TIMESTAMP:
        message.FromDatetime(_as_utc(data))
    elif full_name == _DURATION:
        message.FromTimedelta(data if isinstance(data, timedelta) else timedelta(seconds=data))
    elif full_name in (_STRUCT, _VALUE):
        json_format.ParseDict(jsonable(data), message)
    elif full_name == _FIELD_MASK:
        message.paths.extend(data)
    elif (wrapped := _list_wrapper_field(descriptor)) is not None:
        message.SetInParent()
        _set_repeated(message, wrapped, data)
    else:
        if isinstance(data, BaseModel):
            data = data.model_dump(exclude_none=True)
        for key, value in data.items():
            if value is None:
                continue
            name = proto_name(key)
            field = descriptor.fields_by_name.get(name)
            if field is None:
                raise ValueError(f"{descriptor.name} has no field {name!r} (from {key!r})")
            _set_field(message, field, value)


def _set_field(message: Message, field: FieldDescriptor, value: Any) -> None:
    if _is_map(field):
        target = getattr(message, field.name)
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                fill(target[key], item)
            else:
                target[key] = _scalar(value_field, item)
    elif field.is_repeated:
        _set_repeated(message, field, value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        sub = getattr(message, field.name)
        sub.SetInParent()  # an empty filter object is still "given"
        fill(sub, value)
    else:
        setattr(message, field.name, _scalar(field, value))


def _set_repeated(message: Message, field: FieldDescriptor, value: Any) -> None:
    # A scalar given for a list field (TaskRunPolicy.retry_delay=5) is a list of one.
    items = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    target = getattr(message, field.name)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        for item in items:
            fill(target.add(), item)
    else:
        target.extend(_scalar(field, item) for item in items)


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_number(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_STRING:
        return value.value if isinstance(value, Enum) else str(value)  # UUIDs travel as strings
    return value


def _as_utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC, as protobuf's FromDatetime does.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ---- protobuf -> Python ----

Decode = Callable[[Any], Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_python(message: Message) -> Any:
    """A message as plain Python: dicts keyed by proto field name, lists, datetimes, timedeltas.

    Feed the result to a pydantic model's model_validate; unset fields are left out so the
    model's defaults apply.
    """
    return _decoder(message.DESCRIPTOR)(message)


@functools.cache
def _decoder(descriptor: Descriptor) -> Decode:
    """How to decode messages of one type, worked out once per type (a page of 200 runs decodes
    about 3,000 messages)."""
    full_name = descriptor.full_name
    # timedelta(days, seconds, microseconds): positional arguments cost less than keywords.
    if full_name == _TIMESTAMP:
        return lambda m: _EPOCH + timedelta(0, m.seconds, m.nanos // 1000)
    if full_name == _DURATION:
        return lambda m: timedelta(0, m.seconds, m.nanos // 1000)
    if full_name == _STRUCT:
        return _struct
    if full_name == _VALUE:
        return _json_value
    if (wrapped := _list_wrapper_field(descriptor)) is not None:
        items = _field_decoder(wrapped)
        return lambda m: items(getattr(m, wrapped.name))
    return _fields_decoder(descriptor)


def _fields_decoder(descriptor: Descriptor) -> Decode:
    """Decodes the set fields into a dict. Its plan (name and decoder per field descriptor, None
    for scalars, taken as they are) is made on first use: message types may nest themselves."""
    plan: dict[FieldDescriptor, tuple[str, Decode | None]] = {}

    def decode(message: Any) -> dict[str, Any]:
        if not plan:
            plan.update({field: (field.name, _field_decoder(field)) for field in descriptor.fields})
        data = {}
        for field, value in message.ListFields():
            name, item = plan[field]
            data[name] = value if item is None else item(value)
        return data

    return decode


def _field_decoder(field: FieldDescriptor) -> Decode | None:
    if _is_map(field):
        item = _value_decoder(field.message_type.fields_by_name["value"]) or _same
        return lambda value: {key: item(v) for key, v in value.items()}
    item = _value_decoder(field)
    if field.is_repeated:
        return list if item is None else lambda values: [item(v) for v in values]
    return item


def _value_decoder(field: FieldDescriptor) -> Decode | None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _decoder(field.message_type)
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        names = {number: enum_name(enum, number) for number in enum.values_by_number}
        return names.get
    return None


def _same(value: Any) -> Any:
    return value


def _struct(message: Any) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in message.fields.items()}


def _json_value(message: Any) -> Any:
    """A Value as JSON. Struct stores every number as a double; integral ones come back as ints,
    so `parameters={"n": 3}` round-trips as 3 rather than 3.0, as it would through Prefect's
    JSON."""
    kind = message.WhichOneof("kind")
    if kind == "number_value":
        number = message.number_value
        return int(number) if number.is_integer() and abs(number) <= EXACT_INTEGERS else number
    if kind == "struct_value":
        return _struct(message.struct_value)
    if kind == "list_value":
        return [_json_value(item) for item in message.list_value.values]
    if kind == "null_value" or kind is None:
        return None
    return getattr(message, kind)  # string_value, bool_value
