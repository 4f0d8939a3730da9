"""Size limits: what one request may carry, and what one response may weigh.

Requests: every string, list, map and JSON field of every flowrpc request is checked against the
settings before its servicer runs, so no caller can store an object that breaks reads for the
others. The check walks the request by its descriptor; for each message type it first builds a
plan (field number -> check, fields that cannot break a limit left out), so a call only pays for
the fields its request sets. The rule for strings: `like` patterns get max_like_length; free text
(a description, a state message) is data, bounded like a JSON field by max_json_bytes; every
other string (names, tags, keys, ids, tokens) gets max_string_length. The whole request is
bounded by grpc.max_receive_message_length = max_request_bytes (gRPC answers
RESOURCE_EXHAUSTED before any of this runs).

Responses: a response must fit what a gRPC client accepts by default (4 MiB). List pages with a
page token hold fewer items (`fitted`), stream messages divide (`split`); any other response over
it fails with RESOURCE_EXHAUSTED (`serialized`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from flowrpc.server.errors import InvalidArgument, ResourceExhausted, quote
from flowrpc.settings import Settings

MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # gRPC's default max_receive_message_length
# Room left in a page for everything but its items (the page token, field tags).
PAGE_BUDGET = MAX_RESPONSE_BYTES - 4096
JSON_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
# Bounded like JSON data, by max_json_bytes: free text, and page tokens (the server made them;
# one holds the last item's sort key, which may be a name of max_string_length characters).
TEXT_FIELDS = {"description", "message", "page_token"}
# Lists whose items the servicer checks one by one (calling `check` on each), so that an item
# over a limit fails alone: here they are only counted.
ITEMWISE = {"flowrpc.v1.CreateFlowRunsRequest.runs"}

Check = Callable[[Any, str], None]  # (field value, field path) -> None, or raises


class RequestLimits:
    """Checks requests against the limits in settings; one instance serves every call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._plans: dict[str, dict[int, tuple[str, Check]]] = {}
        # A string of n characters, a list or map of n items, a JSON field of n bytes all take
        # at least n bytes encoded: a request no larger than every limit is within them all.
        self._within_all = min(
            settings.max_string_length,
            settings.max_like_length,
            settings.max_json_bytes,
            settings.max_list_length,
        )

    def check(self, request: Message) -> None:
        """Raises InvalidArgument naming the first field over a limit and the setting."""
        if request.ByteSize() > self._within_all:
            self._check(request, "")

    def _check(self, message: Message, path: str) -> None:
        plan = self._plan(message.DESCRIPTOR)
        if not plan:
            return
        for field, value in message.ListFields():
            entry = plan.get(field.number)
            if entry is not None:
                entry[1](value, path + entry[0])

    def _over(self, where: str, size: int, unit: str, setting: str) -> None:
        limit = getattr(self.settings, setting)
        raise InvalidArgument(
            {where: f"{size} {unit}, over {setting} ({limit}; FLOWRPC_{setting.upper()})"},
            reason="LIMIT_EXCEEDED",
        )

    # ---- plans ----

    def _plan(self, descriptor: Descriptor) -> dict[int, tuple[str, Check]]:
        plan = self._plans.get(descriptor.full_name)
        if plan is None:
            plan = self._plans[descriptor.full_name] = {}  # filled in place; ends recursion
            for field in descriptor.fields:
                check = self._field_check(field)
                if check is not None:
                    plan[field.number] = (field.name, check)
        return plan

    def _field_check(self, field: FieldDescriptor) -> Check | None:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return self._map_check(field.message_type)
        if field.full_name in ITEMWISE:
            return self._count
        if field.is_repeated and field.type == FieldDescriptor.TYPE_STRING:
            return self._strings_check(field)
        one = self._value_check(field)
        if not field.is_repeated:
            return one
        return self._list_check(one)

    def _value_check(self, field: FieldDescriptor) -> Check | None:
        """The check of one value of the field (one item, for a list)."""
        if field.type == FieldDescriptor.TYPE_STRING:
            return self._string_check(field)
        if field.message_type is None:
            return None  # numbers, bools, enums: nothing to bound
        if field.message_type.full_name in JSON_TYPES:
            return self._json
        if not self._plan(field.message_type):
            return None  # Timestamp, Duration, ...
        return lambda value, where: self._check(value, where + ".")

    def _string_check(self, field: FieldDescriptor) -> Check:
        """`like` patterns: max_like_length; free text: max_json_bytes, as UTF-8; the others
        (names, tags, keys, ids, tokens): max_string_length."""
        if field.name in TEXT_FIELDS:
            limit = self.settings.max_json_bytes

            def text(value: str, where: str) -> None:
                # A character is at most 4 bytes: encode only text that may be over.
                if len(value) > limit // 4 and (size := len(value.encode())) > limit:
                    self._over(where, size, "bytes", "max_json_bytes")

            return text
        setting = "max_like_length" if field.name == "like" else "max_string_length"
        limit = getattr(self.settings, setting)

        def string(value: str, where: str) -> None:
            if len(value) > limit:
                self._over(where, len(value), "characters", setting)

        return string

    # ---- checks ----

    def _json(self, value: Message, where: str) -> None:
        # The encoded size: what the field weighs on the wire and, within a few percent, stored.
        if (size := value.ByteSize()) > self.settings.max_json_bytes:
            self._over(where, size, "bytes", "max_json_bytes")

    def _count(self, values: Sequence[Any], where: str) -> None:
        if len(values) > self.settings.max_list_length:
            self._over(where, len(values), "items", "max_list_length")

    def _list_check(self, one: Check | None) -> Check:
        def check(values: Sequence[Any], where: str) -> None:
            self._count(values, where)
            if one is not None:
                for index, value in enumerate(values):
                    one(value, f"{where}[{index}]")

        return check

    def _strings_check(self, field: FieldDescriptor) -> Check:
        """A list of strings: counted, then its longest item measured (in C, not item by item)."""
        one = self._string_check(field)
        s = self.settings
        limit = min(s.max_string_length, s.max_like_length, s.max_json_bytes // 4)

        def check(values: Sequence[str], where: str) -> None:
            self._count(values, where)
            if values and max(map(len, values)) > limit:
                for index, value in enumerate(values):
                    one(value, f"{where}[{index}]")

        return check

    def _map_check(self, entry: Descriptor) -> Check:
        key_check = self._value_check(entry.fields_by_name["key"])
        value_check = self._value_check(entry.fields_by_name["value"])

        def check(values: Any, where: str) -> None:
            self._count(values, where)
            for key in values:
                item = f"{where}[{quote(key)}]" if isinstance(key, str) else f"{where}[{key}]"
                if key_check is not None:
                    key_check(key, item)
                if value_check is not None:
                    value_check(values[key], item)

        return check


# ---- responses ----


def run_budget(settings: Settings) -> int:
    """What a run (flow or task) may weigh without its state: with the largest state (data and
    message, max_json_bytes each) it still fits in a response alone, so no run can block the
    pages that hold it."""
    return max(PAGE_BUDGET - 2 * settings.max_json_bytes - 64 * 1024, 1024 * 1024)


def check_run_size(size: int, budget: int) -> None:
    if size > budget:
        raise InvalidArgument(
            {
                "request": f"the run would weigh {size} bytes without its state, over the "
                f"{budget} a run may (it must fit in a 4 MiB response with its state): keep "
                "less in its parameters, tags, labels or job variables"
            },
            reason="LIMIT_EXCEEDED",
        )


def run_size(run: Message) -> int:
    """A flow or task run's encoded size without its state."""
    return run.ByteSize() - run.state.ByteSize()


def too_large(size: int, what: str) -> ResourceExhausted:
    return ResourceExhausted(
        "RESPONSE_TOO_LARGE",
        f"{what} would be {size} bytes, over the {MAX_RESPONSE_BYTES} bytes (4 MiB) a gRPC "
        "client accepts by default; ask for fewer items (a smaller limit or a narrower filter).",
    )


def serialized(response: Message | bytes) -> bytes:
    """The response's bytes, or RESOURCE_EXHAUSTED when a default client could not take them.
    Bytes are a response `fitted` already made."""
    if isinstance(response, bytes):
        return response
    data = response.SerializeToString()
    if len(data) > MAX_RESPONSE_BYTES:
        raise too_large(len(data), "The response")
    return data


def fitted(response: Message, field: str, refit: Callable[[int], None]) -> bytes:
    """A page's bytes, made to fit a default client: when they would not, the trailing items of
    the list `field` go and refit(items kept) updates what depends on them (a page token).
    Serialized here, once, for the size: the interceptor passes these bytes on as they are."""
    data = response.SerializeToString()
    if len(data) <= PAGE_BUDGET:
        return data
    items = getattr(response, field)
    keep = _fitting(items)
    while True:
        del items[keep:]
        refit(keep)  # the page token may grow, by up to a long sort key
        data = response.SerializeToString()
        if len(data) <= MAX_RESPONSE_BYTES:
            return data
        if keep == 1:
            raise too_large(len(data), "One item with its page token")
        keep -= 1


def split(response: Message, field: str) -> list[Message]:
    """The response as messages that each fit a default client, the items of the list `field`
    divided among them in order (one message, mostly)."""
    if response.ByteSize() <= PAGE_BUDGET:
        return [response]
    parts, items = [], list(getattr(response, field))
    while items:
        count = _fitting(items)
        parts.append(type(response)(**{field: items[:count]}))
        items = items[count:]
    return parts


def _fitting(items: Sequence[Message]) -> int:
    """How many leading items fit in a page; RESOURCE_EXHAUSTED when not even the first does."""
    total = 0
    for count, item in enumerate(items):
        total += item.ByteSize() + 6  # with the item's tag and length prefix
        if total > PAGE_BUDGET:
            if count == 0:
                raise too_large(total, "One item")
            return count
    return len(items)
