"""Tasks: `@task` (Prefect's `prefect.tasks`).

Called inside a flow, a task call is a task run whose states the server orchestrates; called
outside any flow it is a plain function call. `task.submit(...)` runs it on the flow's task
runner and returns a future; `task.map(...)` submits one run per item.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
from collections.abc import Callable, Iterable
from copy import copy
from pathlib import Path
from typing import Any

from flowrpc import results
from flowrpc.cache_policies import DEFAULT, NO_CACHE, CacheKeyFnPolicy, CachePolicy, source_of
from flowrpc.context import FlowRunContext, TaskRunContext
from flowrpc.exceptions import ParameterBindError
from flowrpc.futures import PrefectFuture, PrefectFutureList


class _NotSet:
    def __repr__(self) -> str:
        return "NotSet"


NotSet: Any = _NotSet()


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """retry_delay_seconds that doubles each time: backoff_factor * 2**n for retry n (from 0)."""

    def retry_delays(retries: int) -> list[float]:
        return [backoff_factor * 2**n for n in range(retries)]

    return retry_delays


class Task:
    """A function whose calls inside a flow are recorded and orchestrated as task runs."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        cache_policy: CachePolicy | Any = NotSet,
        cache_key_fn: Callable[..., str | None] | None = None,
        cache_expiration: datetime.timedelta | None = None,
        task_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[[Task, Any, Any], bool] | None = None,
        persist_result: bool | None = None,
        result_storage: str | Path | None = None,
        result_serializer: str | results.Serializer | None = None,
        refresh_cache: bool | None = None,
        timeout_seconds: float | None = None,
        log_prints: bool | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError("@task decorates a function")
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description or inspect.getdoc(fn)
        self.tags = set(tags or ())
        self.version = version
        self.task_run_name = task_run_name
        self.retries = retries or 0
        if callable(retry_delay_seconds):
            retry_delay_seconds = retry_delay_seconds(self.retries)
        if retry_jitter_factor is not None and retry_jitter_factor < 0:
            raise ValueError("retry_jitter_factor must be >= 0")
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.timeout_seconds = timeout_seconds
        self.log_prints = log_prints
        self._cache_policy_option = cache_policy
        if cache_key_fn is not None:
            self.cache_policy: CachePolicy | None = CacheKeyFnPolicy(cache_key_fn)
        elif cache_policy is NotSet or cache_policy is None:
            self.cache_policy = DEFAULT
        else:
            self.cache_policy = None if cache_policy is NO_CACHE else cache_policy
        self.task_key = _task_key(fn)
        self._signature = inspect.signature(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)

    # ---- result options, with the enclosing flow's defaults ----

    def should_persist(self, flow_context: FlowRunContext | None) -> bool:
        """Persist when asked; by default when caching is configured on the task, else as the
        flow says."""
        if self.persist_result is not None:
            return self.persist_result
        if self.cache_key_fn is not None or self._cache_policy_option not in (NotSet, None):
            return self.cache_policy is not None
        return bool(flow_context and flow_context.persist_result)

    def serializer(self, flow_context: FlowRunContext | None) -> results.Serializer:
        option = self.result_serializer
        if option is None and flow_context is not None:
            option = flow_context.result_serializer
        return results.resolve_serializer(option)

    def storage(self, flow_context: FlowRunContext | None) -> Path | None:
        option = self.result_storage
        if option is None and flow_context is not None:
            option = flow_context.result_storage
        return results.storage_path(option)

    # ---- calls ----

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name (defaults applied)."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as error:
            raise ParameterBindError(
                f"Error binding parameters for task {self.name!r}: {error}"
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(args, kwargs) that call the function with these parameters (*args and **kwargs
        parameters spread again)."""
        bound = inspect.BoundArguments(self._signature, dict(parameters))  # type: ignore[arg-type]
        return bound.args, bound.kwargs

    def __call__(
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return self.fn(*args, **kwargs)  # outside a flow: a plain call, as in Prefect
        from flowrpc.engine import run_task

        parameters = self.bind(args, kwargs)
        return run_task(self, parameters, wait_for, "state" if return_state else "result")

    def submit(
        self, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> PrefectFuture:
        """Runs the call on the flow's task runner; returns a future of it."""
        return _runner(self).submit(self, self.bind(args, kwargs), wait_for)

    def map(
        self, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any
    ) -> PrefectFutureList:
        """One submitted run per item of the iterable arguments; `unmapped(x)` passes x whole."""
        try:
            bound = self._signature.bind_partial(*args, **kwargs)
        except TypeError as error:
            raise ParameterBindError(
                f"Error binding parameters for task {self.name!r}: {error}"
            ) from None
        bound.apply_defaults()
        return _runner(self).map(self, dict(bound.arguments), wait_for)

    def with_options(self, **options: Any) -> Task:
        """A copy of this task with some options changed (the same keywords as @task)."""
        current = {
            "name": self.name,
            "description": self.description,
            "tags": self.tags,
            "version": self.version,
            "cache_policy": self._cache_policy_option,
            "cache_key_fn": self.cache_key_fn,
            "cache_expiration": self.cache_expiration,
            "task_run_name": self.task_run_name,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "retry_jitter_factor": self.retry_jitter_factor,
            "retry_condition_fn": self.retry_condition_fn,
            "persist_result": self.persist_result,
            "result_storage": self.result_storage,
            "result_serializer": self.result_serializer,
            "refresh_cache": self.refresh_cache,
            "timeout_seconds": self.timeout_seconds,
            "log_prints": self.log_prints,
        }
        unknown = set(options) - set(current)
        if unknown:
            raise TypeError(f"with_options got unknown options: {sorted(unknown)}")
        clone = copy(self)
        Task.__init__(clone, self.fn, **{**current, **options})  # subclasses add their own
        return clone

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"


def _runner(task: Task) -> Any:
    context = FlowRunContext.get()
    if context is None or context.task_runner is None:
        raise RuntimeError(
            f"task {task.name!r}: submit and map run tasks on a flow's task runner; "
            "call them inside a @flow"
        )
    return context.task_runner


def _task_key(fn: Callable[..., Any]) -> str:
    """The task's identity across calls: its qualified name and a hash of its source."""
    qualname = getattr(fn, "__qualname__", "task")
    digest = hashlib.sha256(source_of(fn).encode()).hexdigest()[:10]
    return f"{qualname}-{digest}"


def task(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@task` or `@task(name=..., retries=..., ...)`: makes a function a Task."""
    if __fn is not None:
        return Task(__fn, **options)
    return lambda fn: Task(fn, **options)


__all__ = ["Task", "exponential_backoff", "task"]
