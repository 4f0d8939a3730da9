"""Hypothesis strategies that build any flowrpc request from its descriptor, field by field, with
the values that break servers: huge and odd strings, integers and floats at their edges, NaN and
infinities, Structs of every kind, Timestamps and Durations far outside what anyone stores, long
and empty lists, unknown enum numbers. Plus the RPCs themselves, found from the descriptors of
flowrpc.v1, so a new RPC is fuzzed without touching the fuzz."""

from __future__ import annotations

import functools
import importlib
import pkgutil
import random
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor as d
from google.protobuf import message_factory, struct_pb2
from google.protobuf.message import Message
from hypothesis import strategies as st

import flowrpc.v1

# ---- the RPCs ----


@dataclass(frozen=True)
class Rpc:
    service: str  # "FlowService"
    name: str  # "GetFlow"
    request: type[Message]
    response: type[Message]
    streaming: bool

    @property
    def path(self) -> str:
        return f"/flowrpc.v1.{self.service}/{self.name}"


def all_rpcs() -> list[Rpc]:
    """Every method of every service declared in flowrpc.v1."""
    rpcs = []
    for module_info in pkgutil.iter_modules(flowrpc.v1.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"flowrpc.v1.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rpcs.append(
                    Rpc(
                        service.name,
                        method.name,
                        message_factory.GetMessageClass(method.input_type),
                        message_factory.GetMessageClass(method.output_type),
                        method.server_streaming,
                    )
                )
    return sorted(rpcs, key=lambda rpc: rpc.path)


# ---- scalar values ----

INT32_EDGES = [0, 1, -1, 2**31 - 1, -(2**31), 2**15, 10**9]
INT64_EDGES = [*INT32_EDGES, 2**63 - 1, -(2**63), 2**53, 10**13, 10**18]
UINT32_EDGES = [0, 1, 2**32 - 1, 2**31]
UINT64_EDGES = [0, 1, 2**64 - 1, 2**63]
FLOAT_EDGES = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324]
# Seconds of 0001-01-01 and 9999-12-31: the range a Timestamp may hold.
TIMESTAMP_EDGES = [0, -1, -62135596800, 253402300799, 10**13, -(10**13), 2**63 - 1, -(2**63)]
NANOS_EDGES = [0, 1, 999_999_999, 10**9, -1, -(10**9), 2**31 - 1, -(2**31)]
DURATION_EDGES = [0, 1, -1, 315_576_000_000, -315_576_000_000, 2**63 - 1, -(2**63), 10**13]
# Repeated values of these lengths are made by repeating one element: cheap to build.
LONG_LENGTHS = [1_000, 10_000]
HUGE_LENGTHS = [1_001, 7_000, 50_000, 70_000]

# A string that does not compress: PostgreSQL keeps index entries up to 2,704 bytes, and a long
# name of one repeated character would compress below that and hide the limit.
VARIED = "".join(chr(random.Random(14).randrange(0x20, 0x2FF)) for _ in range(9_000))
# Any Unicode text but surrogates (which no protobuf string can hold).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
ODD_STRINGS = [
    "",
    " ",
    "%",
    "_",
    "%_%",
    "\\",
    "'",
    '"',
    "\x00",
    "NULL",
    "null",
    "../../etc/passwd",
    "'; DROP TABLE flow_run; --",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "0190-not-a-uuid",
    "\u202e\ufeff\U0001f600",
    "a" * 255,
]


@functools.cache
def strings(known: tuple[str, ...], huge: bool = True) -> st.SearchStrategy[str]:
    """Known ids and names (so calls reach storage), odd and huge strings, any text."""
    options = [TEXT, st.sampled_from(ODD_STRINGS), st.uuids().map(str)]
    if huge:
        options.append(st.just(VARIED))
        lengths = st.sampled_from(HUGE_LENGTHS)
        options.append(st.builds(lambda char, n: char * n, st.sampled_from("fa_%é"), lengths))
    if known:
        options.append(st.sampled_from(known))
    return st.one_of(options)


@functools.cache
def floats(width: int) -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(width=width))


@functools.cache
def json_values(known: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Any JSON-like value, numbers including NaN, infinities and the largest doubles."""
    leaves = st.one_of(
        st.none(), st.booleans(), floats(64), st.integers(-(2**53), 2**53), strings(known)
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(strings(known), inner, max_size=4)
        ),
        max_leaves=12,
    )


def to_value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int | float):
        out.number_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, list):
        out.list_value.values.extend(to_value(item) for item in value)
    else:
        for key, item in value.items():
            out.struct_value.fields[key].CopyFrom(to_value(item))
    return out


# ---- messages ----

SCALARS = {
    d.FieldDescriptor.TYPE_INT32: st.sampled_from(INT32_EDGES) | st.integers(-(2**31), 2**31 - 1),
    d.FieldDescriptor.TYPE_SINT32: st.sampled_from(INT32_EDGES),
    d.FieldDescriptor.TYPE_SFIXED32: st.sampled_from(INT32_EDGES),
    d.FieldDescriptor.TYPE_INT64: st.sampled_from(INT64_EDGES) | st.integers(-(2**63), 2**63 - 1),
    d.FieldDescriptor.TYPE_SINT64: st.sampled_from(INT64_EDGES),
    d.FieldDescriptor.TYPE_SFIXED64: st.sampled_from(INT64_EDGES),
    d.FieldDescriptor.TYPE_UINT32: st.sampled_from(UINT32_EDGES),
    d.FieldDescriptor.TYPE_FIXED32: st.sampled_from(UINT32_EDGES),
    d.FieldDescriptor.TYPE_UINT64: st.sampled_from(UINT64_EDGES),
    d.FieldDescriptor.TYPE_FIXED64: st.sampled_from(UINT64_EDGES),
    d.FieldDescriptor.TYPE_DOUBLE: floats(64),
    d.FieldDescriptor.TYPE_FLOAT: floats(32),
    d.FieldDescriptor.TYPE_BOOL: st.booleans(),
    d.FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
}
MAX_DEPTH = 6


@st.composite
def messages(draw: Any, cls: type[Message], known: tuple[str, ...], depth: int = 0) -> Message:
    """A message of `cls` with a random subset of its fields set (deeper levels sparser)."""
    message = cls()
    fill(draw, message, known, depth)
    return message


def fill(draw: Any, message: Message, known: tuple[str, ...], depth: int) -> None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        message.seconds = draw(st.sampled_from(TIMESTAMP_EDGES) | st.integers(0, 4_102_444_800))
        message.nanos = draw(st.sampled_from(NANOS_EDGES))
        return
    if name == "google.protobuf.Duration":
        message.seconds = draw(st.sampled_from(DURATION_EDGES) | st.integers(0, 10**6))
        message.nanos = draw(st.sampled_from(NANOS_EDGES))
        return
    if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
        fill_json(draw, message, known)
        return
    if name == "google.protobuf.FieldMask":
        paths = st.sampled_from(FIELD_NAMES) | strings(known)  # real field names and junk
        message.paths.extend(draw(st.lists(paths, max_size=5)))
        return
    fields = list(message.DESCRIPTOR.fields)
    if depth >= MAX_DEPTH or not fields:
        return
    chosen = draw(st.lists(st.sampled_from(fields), max_size=max(1, 6 - depth), unique=True))
    for field in chosen:
        set_field(draw, message, field, known, depth)


def fill_json(draw: Any, message: Message, known: tuple[str, ...]) -> None:
    value = draw(json_values(known))
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Value":
        message.CopyFrom(to_value(value))
    elif name == "google.protobuf.ListValue":
        message.values.extend(
            to_value(item) for item in (value if isinstance(value, list) else [value])
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            message.fields[key].CopyFrom(to_value(item))


def set_field(
    draw: Any, message: Message, field: d.FieldDescriptor, known: tuple[str, ...], depth: int
) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        set_map(draw, message, field, known, depth)
    elif field.is_repeated:
        values = draw(repeated(field, known, depth))
        container = getattr(message, field.name)
        if field.message_type is not None:
            for value in values:
                container.add().CopyFrom(value)
        else:
            container.extend(values)
    elif field.message_type is not None:
        fill(draw, getattr(message, field.name), known, depth + 1)
        getattr(message, field.name).SetInParent()
    else:
        setattr(message, field.name, draw(scalar(field, known)))


def set_map(
    draw: Any, message: Message, field: d.FieldDescriptor, known: tuple[str, ...], depth: int
) -> None:
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    container = getattr(message, field.name)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(scalar(key_field, known))
        if value_field.message_type is not None:
            fill(draw, container[key], known, depth + 1)
        else:
            container[key] = draw(scalar(value_field, known))


@functools.cache
def scalar(
    field: d.FieldDescriptor, known: tuple[str, ...], huge: bool = True
) -> st.SearchStrategy[Any]:
    if field.type == d.FieldDescriptor.TYPE_STRING:
        return strings(known, huge)
    if field.type == d.FieldDescriptor.TYPE_ENUM:
        numbers = [value.number for value in field.enum_type.values]
        unknown = st.sampled_from([-1, max(numbers) + 1, 2**31 - 1, -(2**31)])
        return st.sampled_from(numbers) | unknown
    return SCALARS[field.type]


def repeated(
    field: d.FieldDescriptor, known: tuple[str, ...], depth: int
) -> st.SearchStrategy[list[Any]]:
    """Empty, short or (of scalars, each of ordinary size) long lists: long lists of huge values,
    or of messages holding long lists, would only test the fuzz's own memory."""
    if field.message_type:
        cls = message_factory.GetMessageClass(field.message_type)
        return st.lists(messages(cls, known, depth + 1), max_size=3)
    short = st.lists(scalar(field, known), max_size=4)
    element = scalar(field, known, huge=False)
    long = st.builds(lambda value, n: [value] * n, element, st.sampled_from(LONG_LENGTHS))
    return st.one_of(short, short, long)


def _field_names() -> list[str]:
    names: set[str] = set()
    for rpc in all_rpcs():
        for message in (rpc.request.DESCRIPTOR, rpc.response.DESCRIPTOR):
            for field in message.fields:
                names.add(field.name)
                if field.message_type is not None:
                    names.update(f.name for f in field.message_type.fields)
    return sorted(names)


FIELD_NAMES = _field_names()  # update_mask paths: real field names as well as junk


# ---- mutations and raw bytes ----


@st.composite
def mutated(draw: Any, seed: Message, known: tuple[str, ...]) -> Message:
    """A valid request with a few fields overwritten by random values, or cleared."""
    message = type(seed)()
    message.CopyFrom(seed)
    fields = list(message.DESCRIPTOR.fields)
    for field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            message.ClearField(field.name)
        elif field.message_type is not None and not field.is_repeated:
            # Mutate inside: keep what the seed set there, overwrite some of it.
            sub = getattr(message, field.name)
            noise = draw(messages(type(sub), known, depth=1))
            sub.MergeFrom(noise)
        else:
            message.ClearField(field.name)
            set_field(draw, message, field, known, 0)
    return message


@st.composite
def raw_bytes(draw: Any, seed: Message) -> bytes:
    """Bytes a protobuf decoder refuses or misreads: noise, truncations, flipped bytes, bad
    lengths, invalid UTF-8 in a string field."""
    valid = seed.SerializeToString()
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.binary(min_size=1, max_size=64))
    if choice == 1 and valid:
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if choice == 2 and valid:
        at = draw(st.integers(0, len(valid) - 1))
        return valid[:at] + bytes([draw(st.integers(0, 255))]) + valid[at + 1 :]
    if choice == 3:
        return bytes([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + draw(st.binary(max_size=8))
    # Field 1 as a length-delimited string of invalid UTF-8 (most requests' field 1 is a string).
    return b"\x0a\x04\xff\xfe\xc0\x80" + valid
