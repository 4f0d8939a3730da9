"""Results: how a run's return value is serialized and where it is kept.

A persisted result travels in the Completed state's data, so any process that talks to the same
server can read it (a cached task in another process, `state.result()` later). The record is a
small JSON object:

    {"type": "result", "serializer": "pickle", "payload": "<base64>"}     through the server
    {"type": "reference", "serializer": "json", "path": "/shared/ab12..."}  a shared directory

Through the server a result is bounded by the server's max_json_bytes (512 KiB by default);
larger ones need a result storage directory every process can read (`result_storage=` on the
flow or task, or FLOWRPC_RESULT_STORAGE_PATH).

Trust: the default serializer is pickle (cloudpickle), as in Prefect. Unpickling runs code, so a
process that reads a pickled result trusts whoever could write it: anyone whose API key may set
task run states on the server, or write to the storage directory. Use
`result_serializer="json"` for results that must be safe to read from less trusted writers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import cloudpickle
from pydantic_core import to_jsonable_python

from flowrpc.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    MissingResult,
    ResultTooLarge,
    UnfinishedRun,
)

RECORD_TYPES = ("result", "reference")
# What the SDK lets travel through the server by default; the server's max_json_bytes (512 KiB
# unless configured) bounds the whole state data, and base64 adds a third.
DEFAULT_INLINE_LIMIT = 360 * 1024
TOO_LARGE_ADVICE = (
    "Set result_storage= on the flow or task (or FLOWRPC_RESULT_STORAGE_PATH) to a directory "
    "every process can read, or persist_result=False."
)


class Serializer:
    """Turns a value into bytes and back. Subclass and name it to add one."""

    type: str = ""

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def loads(self, blob: bytes) -> Any:
        raise NotImplementedError


class PickleSerializer(Serializer):
    """cloudpickle: any Python object, including functions and local classes."""

    type = "pickle"

    def dumps(self, value: Any) -> bytes:
        return cloudpickle.dumps(value)

    def loads(self, blob: bytes) -> Any:
        return cloudpickle.loads(blob)


class JSONSerializer(Serializer):
    """JSON (pydantic's encoder for dates, UUIDs, models...): safe to read from anyone."""

    type = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(to_jsonable_python(value)).encode()

    def loads(self, blob: bytes) -> Any:
        return json.loads(blob)


SERIALIZERS: dict[str, type[Serializer]] = {"pickle": PickleSerializer, "json": JSONSerializer}


def resolve_serializer(serializer: str | Serializer | None) -> Serializer:
    """A serializer from its name ("pickle", "json") or an instance; None means pickle."""
    if serializer is None:
        return PickleSerializer()
    if isinstance(serializer, Serializer):
        return serializer
    try:
        return SERIALIZERS[serializer]()
    except KeyError:
        raise ValueError(
            f"unknown result_serializer {serializer!r}: use one of {sorted(SERIALIZERS)} "
            "or a flowrpc.results.Serializer"
        ) from None


def storage_path(result_storage: str | Path | None) -> Path | None:
    """The directory results go to: the option, else FLOWRPC_RESULT_STORAGE_PATH, else none
    (results travel through the server)."""
    path = result_storage or os.environ.get("FLOWRPC_RESULT_STORAGE_PATH")
    return Path(path).expanduser() if path else None


def persist(
    value: Any,
    serializer: Serializer,
    result_storage: Path | None,
    *,
    key: str | None = None,
    inline_limit: int = DEFAULT_INLINE_LIMIT,
) -> dict[str, Any]:
    """Serializes `value` and returns the record that goes in the state's data."""
    blob = serializer.dumps(value)
    if result_storage is not None:
        name = key or hashlib.sha256(blob).hexdigest()
        name = hashlib.sha256(name.encode()).hexdigest() if not _safe_name(name) else name
        result_storage.mkdir(parents=True, exist_ok=True)
        path = result_storage / name
        temporary = path.with_name(f".{name}.{os.getpid()}.tmp")
        temporary.write_bytes(blob)
        os.replace(temporary, path)  # readers never see half a file
        return {"type": "reference", "serializer": serializer.type, "path": str(path)}
    if len(blob) > inline_limit:
        raise ResultTooLarge(
            f"the result is {len(blob):,} bytes serialized, more than the {inline_limit:,} that "
            "may travel through the server in a state (its max_json_bytes setting bounds state "
            f"data). {TOO_LARGE_ADVICE}"
        )
    payload = base64.b64encode(blob).decode() if serializer.type != "json" else blob.decode()
    return {"type": "result", "serializer": serializer.type, "payload": payload}


def _safe_name(name: str) -> bool:
    return 0 < len(name) <= 128 and all(c.isalnum() or c in "-_." for c in name)


def is_record(data: Any) -> bool:
    """Whether state data is a persisted result record."""
    return isinstance(data, dict) and data.get("type") in RECORD_TYPES


def load(record: dict[str, Any]) -> Any:
    """The value a result record holds."""
    serializer = resolve_serializer(record.get("serializer"))
    if record["type"] == "reference":
        path = Path(record["path"])
        try:
            blob = path.read_bytes()
        except OSError as error:
            raise MissingResult(f"the result stored at {path} cannot be read: {error}") from error
    elif serializer.type == "json":
        blob = record["payload"].encode()
    else:
        blob = base64.b64decode(record["payload"])
    return serializer.loads(blob)


def state_result(state: Any, raise_on_failure: bool = True) -> Any:
    """What `state.result()` returns: the value of a Completed state (kept in memory by the run
    that made it, else loaded from its persisted record), or, for a Failed, Crashed or Cancelled
    state, its exception (raised unless raise_on_failure=False)."""
    if state.is_completed():
        if state._has_value:
            return state._value
        if is_record(state.data):
            return load(state.data)
        if state.data is None:
            raise MissingResult(
                "State data is missing: the result was not persisted (persist_result=False, or "
                "the default for runs without caching). Set persist_result=True to keep it."
            )
        return state.data
    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        error = state._exception
        if error is None:
            kind = FailedRun if state.is_failed() else CrashedRun
            kind = CancelledRun if state.is_cancelled() else kind
            error = kind(state.message or f"Run ended {state.name}")
        if raise_on_failure:
            raise error
        return error
    if state._exception is not None:  # the run stopped early (NotReady, aborted)
        if raise_on_failure:
            raise state._exception
        return state._exception
    raise UnfinishedRun(f"Run is in {state.type.value} state, its result is not available.")
