"""Cache policies: what a task's cache key is made of (Prefect's `prefect.cache_policies`).

A task whose cache key matches a completed, unexpired run's key completes as "Cached" without
running; the server keeps the keys (its CacheRetrieval and CacheInsertion rules), so a key made
in one process is found by another. Policies combine with `+` (all parts make the key) and
`INPUTS - "name"` leaves an input out.

    INPUTS           the task's arguments
    TASK_SOURCE      the task function's source code
    RUN_ID           the flow run the task runs in
    FLOW_PARAMETERS  the enclosing flow run's parameters
    NO_CACHE         never cache
    DEFAULT          INPUTS + TASK_SOURCE + RUN_ID
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
from pydantic_core import to_jsonable_python


def hash_objects(*objects: Any) -> str | None:
    """A stable hash of JSON-able objects (pickled when JSON cannot say them); None if neither
    can, which means "do not cache"."""
    try:
        blob = json.dumps(objects, sort_keys=True, default=to_jsonable_python).encode()
    except (TypeError, ValueError):
        try:
            blob = cloudpickle.dumps(objects)
        except Exception:
            return None
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class KeyContext:
    """What a policy may read to make a key."""

    task: Any
    inputs: dict[str, Any]
    flow_run_id: Any = None
    flow_parameters: dict[str, Any] = field(default_factory=dict)
    task_run_context: Any = None


class CachePolicy:
    """Makes a cache key (a string) from a KeyContext, or None for "do not cache"."""

    def compute_key(self, context: KeyContext) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        parts = [*_parts(self), *_parts(other)]
        if any(isinstance(part, _NoCache) for part in parts):
            return NO_CACHE
        return CompoundCachePolicy(tuple(parts))

    def __sub__(self, name: str) -> CachePolicy:
        return CompoundCachePolicy(tuple(_without(part, name) for part in _parts(self)))


def _parts(policy: CachePolicy) -> tuple[CachePolicy, ...]:
    return policy.policies if isinstance(policy, CompoundCachePolicy) else (policy,)


def _without(policy: CachePolicy, name: str) -> CachePolicy:
    if isinstance(policy, Inputs):
        return Inputs(exclude=(*policy.exclude, name))
    return policy


@dataclass(frozen=True)
class CompoundCachePolicy(CachePolicy):
    """Every part's key hashed together; no key if any part has none."""

    policies: tuple[CachePolicy, ...] = ()

    def compute_key(self, context: KeyContext) -> str | None:
        keys = [policy.compute_key(context) for policy in self.policies]
        if not keys or any(key is None for key in keys):
            return None
        return hash_objects(keys)


@dataclass(frozen=True)
class Inputs(CachePolicy):
    """The task's arguments, except those named in `exclude`."""

    exclude: tuple[str, ...] = ()

    def compute_key(self, context: KeyContext) -> str | None:
        inputs = {k: v for k, v in context.inputs.items() if k not in self.exclude}
        return hash_objects(inputs)


@dataclass(frozen=True)
class TaskSource(CachePolicy):
    """The task function's source code (a changed function misses the old cache)."""

    def compute_key(self, context: KeyContext) -> str | None:
        return hash_objects(source_of(context.task.fn))


@dataclass(frozen=True)
class RunId(CachePolicy):
    """The enclosing flow run: a cache shared only by the tasks of one run."""

    def compute_key(self, context: KeyContext) -> str | None:
        return str(context.flow_run_id) if context.flow_run_id else None


@dataclass(frozen=True)
class FlowParameters(CachePolicy):
    """The enclosing flow run's parameters."""

    def compute_key(self, context: KeyContext) -> str | None:
        return hash_objects(context.flow_parameters)


@dataclass(frozen=True)
class _NoCache(CachePolicy):
    def compute_key(self, context: KeyContext) -> str | None:
        return None


@dataclass(frozen=True)
class CacheKeyFnPolicy(CachePolicy):
    """A task's cache_key_fn(task_run_context, parameters) -> str | None."""

    cache_key_fn: Callable[..., str | None]

    def compute_key(self, context: KeyContext) -> str | None:
        return self.cache_key_fn(context.task_run_context, context.inputs)


def source_of(fn: Callable[..., Any]) -> str:
    """The function's source, or its qualified name when the source is unavailable."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return getattr(fn, "__qualname__", repr(fn))


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
NO_CACHE = _NoCache()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "Inputs",
]
