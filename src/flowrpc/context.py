"""Run contexts: which flow run and task run the code running now belongs to.

The engine enters a FlowRunContext around a flow's body and a TaskRunContext around a task's body;
logging, assets and nested calls read them. Each kind lives in its own context variable, so a
task's context does not hide its flow's, and threads or asyncio tasks started with a copy of the
context (as the task runners do) see the run that started them.
"""

from __future__ import annotations

import itertools
import threading
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from uuid import UUID

from flowrpc.schemas.objects import FlowRun, TaskRun


class MissingContextError(RuntimeError):
    """Raised by get_run_context() outside any flow or task run."""


@dataclass(eq=False)
class RunContext:
    """Base of the run contexts: `with context:` makes it current; `Kind.get()` reads it."""

    _current: ClassVar[ContextVar[Any]]
    _tokens: list[Token[Any]] = field(default_factory=list, init=False, repr=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._current = ContextVar(cls.__name__, default=None)

    @classmethod
    def get(cls) -> Self | None:
        """The current context of this kind, or None."""
        return cls._current.get()

    def __enter__(self) -> Self:
        self._tokens.append(self._current.set(self))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._current.reset(self._tokens.pop())


@dataclass(eq=False)
class FlowRunContext(RunContext):
    """The flow run being executed, with what its tasks need from it."""

    flow: Any
    flow_run: FlowRun
    parameters: dict[str, Any] = field(default_factory=dict)
    log_prints: bool = False
    task_runner: Any = None
    # Result defaults the flow passes to its tasks (None: decided by each task).
    persist_result: bool | None = None
    result_serializer: Any = None
    result_storage: Any = None
    # The flow run's first attempt: none of its task runs exist yet (a rerun finds its earlier
    # attempt's runs by their keys), so the engine may start new ones without asking the server.
    first_attempt: bool = False
    # Which task run produced an object passed on to another task, for graph edges. Keyed by
    # id(); the object is kept (as Prefect keeps result states) so its id is not reused.
    task_run_results: dict[int, tuple[Any, UUID]] = field(default_factory=dict, repr=False)
    # The assets each asset task run of this flow run materialized (lineage for later ones).
    task_run_assets: dict[UUID, list[Any]] = field(default_factory=dict, repr=False)
    _counters: dict[str, itertools.count[int]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_result(self, value: Any, task_run_id: UUID) -> None:
        """Remembers that `value` came from `task_run_id` (shared singletons are skipped)."""
        if not _untrackable(value):
            self.task_run_results[id(value)] = (value, task_run_id)

    def producer_of(self, value: Any) -> UUID | None:
        """The task run that returned this very object, if one did in this flow run."""
        entry = self.task_run_results.get(id(value))
        return entry[1] if entry is not None and entry[0] is value else None

    def next_dynamic_key(self, task_key: str) -> str:
        """ "0", "1", ... per task key: one task run per call of the same task in this attempt
        (a rerun of the flow finds the same task runs again)."""
        counter = self._counters.get(task_key)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(task_key, itertools.count())
        return str(next(counter))


def _untrackable(value: Any) -> bool:
    """Values whose identity says nothing about where they came from (shared singletons)."""
    return (
        value is None or isinstance(value, bool) or (isinstance(value, int) and -5 <= value <= 256)
    )


@dataclass(eq=False)
class TaskRunContext(RunContext):
    """The task run being executed."""

    task: Any
    task_run: TaskRun
    parameters: dict[str, Any] = field(default_factory=dict)
    log_prints: bool = False
    retries: int = 0  # the attempt number - 1 within this run's own retries


def get_run_context() -> FlowRunContext | TaskRunContext:
    """The innermost run: the task run if a task is executing, else the flow run."""
    context = TaskRunContext.get() or FlowRunContext.get()
    if context is None:
        raise MissingContextError("no flow or task run is active in this thread or task")
    return context
