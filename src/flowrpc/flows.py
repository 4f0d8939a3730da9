"""Flows: `@flow` (Prefect's `prefect.flows`).

Calling a flow creates a flow run and moves it Pending -> Running -> Completed/Failed through the
server's orchestration; it returns the function's value (re-raising its error), or with
return_state=True the final state. Inside another flow it is a subflow, linked to the parent
through a task run. `@flow` also decorates methods: put it above @classmethod/@staticmethod.
"""

from __future__ import annotations

import hashlib
import inspect
import typing
from collections.abc import Callable
from copy import copy
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from flowrpc import results
from flowrpc.exceptions import ParameterBindError, ParameterTypeError
from flowrpc.task_runners import TaskRunner, ThreadPoolTaskRunner

_ARBITRARY = ConfigDict(arbitrary_types_allowed=True)


class Flow:
    """A function whose calls are recorded and orchestrated as flow runs."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: int | float | None = None,
        task_runner: TaskRunner | type[TaskRunner] | None = None,
        description: str | None = None,
        timeout_seconds: int | float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_storage: str | Path | None = None,
        result_serializer: str | results.Serializer | None = None,
        log_prints: bool | None = None,
    ) -> None:
        self._method_kind = None
        if isinstance(fn, classmethod | staticmethod):
            self._method_kind = type(fn)
            fn = fn.__func__
        if not callable(fn):
            raise TypeError("@flow decorates a function")
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.description = description or inspect.getdoc(fn)
        self._version = version
        self.flow_run_name = flow_run_name
        self.retries = retries or 0
        self.retry_delay_seconds = retry_delay_seconds or 0
        if isinstance(task_runner, type):
            task_runner = task_runner()
        self.task_runner = task_runner or ThreadPoolTaskRunner()
        self.timeout_seconds = timeout_seconds
        self.should_validate_parameters = validate_parameters
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        if result_serializer is not None:
            results.resolve_serializer(result_serializer)  # a bad name fails at decoration
        self.log_prints = log_prints
        self._bound_to: Any = None  # the instance or class of a method flow
        self._is_bound = False
        self._signature = inspect.signature(fn)
        self._adapters: dict[str, TypeAdapter[Any] | None] | None = None
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
        self.__module__ = getattr(fn, "__module__", None)

    # ---- methods ----

    def __get__(self, instance: Any, owner: type | None = None) -> Flow:
        """Flows on classes: bound to the instance (methods), the class (classmethods), or to
        nothing (staticmethods)."""
        if self._method_kind is staticmethod:
            return self
        target = owner if self._method_kind is classmethod else instance
        if target is None:
            return self
        bound = copy(self)
        bound._bound_to, bound._is_bound = target, True
        return bound

    # ---- options ----

    @property
    def version(self) -> str | None:
        """The version option, else a hash of the flow's source file."""
        if self._version is None:
            try:
                source = Path(inspect.getsourcefile(self.fn) or "").read_bytes()
                self._version = hashlib.md5(source, usedforsecurity=False).hexdigest()
            except (OSError, TypeError):
                self._version = None
        return self._version

    def with_options(self, **options: Any) -> Flow:
        """A copy of this flow with some options changed (the same keywords as @flow)."""
        current = {
            "name": self.name,
            "version": self._version,
            "flow_run_name": self.flow_run_name,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "task_runner": self.task_runner,
            "description": self.description,
            "timeout_seconds": self.timeout_seconds,
            "validate_parameters": self.should_validate_parameters,
            "persist_result": self.persist_result,
            "result_storage": self.result_storage,
            "result_serializer": self.result_serializer,
            "log_prints": self.log_prints,
        }
        unknown = set(options) - set(current)
        if unknown:
            raise TypeError(f"with_options got unknown options: {sorted(unknown)}")
        fn = self._method_kind(self.fn) if self._method_kind else self.fn
        clone = Flow(fn, **{**current, **options})
        clone._bound_to, clone._is_bound = self._bound_to, self._is_bound
        return clone

    def run_name(self, parameters: dict[str, Any]) -> str | None:
        """flow_run_name as a template over the parameters, or a callable's answer; None lets
        the server mint a two-word name."""
        template = self.flow_run_name
        if template is None:
            return None
        if callable(template):
            return str(template())
        return template.format(**parameters)

    # ---- parameters ----

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        if self._is_bound:
            args = (self._bound_to, *args)
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as error:
            raise ParameterBindError(
                f"Error binding parameters for flow {self.name!r}: {error}"
            ) from None
        return bound

    def parameters_of(self, bound: inspect.BoundArguments) -> dict[str, Any]:
        """The run's parameters: the arguments with defaults, without self/cls."""
        full = copy(bound)
        full.apply_defaults()
        parameters = dict(full.arguments)
        if self._is_bound:
            parameters.pop(next(iter(self._signature.parameters)), None)
        return parameters

    def validate(self, bound: inspect.BoundArguments) -> None:
        """Validates and coerces the given arguments from the type hints (pydantic), in place;
        ParameterTypeError names every bad one."""
        if not self.should_validate_parameters:
            return
        adapters = self._parameter_adapters()
        problems = []
        for name, value in bound.arguments.items():
            adapter = adapters.get(name)
            if adapter is None:
                continue
            try:
                bound.arguments[name] = adapter.validate_python(value)
            except ValidationError as error:
                for issue in error.errors():
                    where = ".".join(str(part) for part in (name, *issue["loc"]))
                    problems.append(f" - {where}: {issue['msg']} (got {value!r:.80})")
        if problems:
            raise ParameterTypeError(
                "Flow run received invalid parameters:\n" + "\n".join(problems)
            )

    def _parameter_adapters(self) -> dict[str, TypeAdapter[Any] | None]:
        if self._adapters is None:
            try:
                hints = typing.get_type_hints(self.fn)
            except Exception:
                hints = {}
            self._adapters = {}
            for parameter in self._signature.parameters.values():
                annotation = hints.get(parameter.name, parameter.annotation)
                if annotation is inspect.Parameter.empty or parameter.kind in (
                    inspect.Parameter.VAR_POSITIONAL,
                    inspect.Parameter.VAR_KEYWORD,
                ):
                    continue
                self._adapters[parameter.name] = _adapter(annotation)
        return self._adapters

    # ---- calls ----

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        from flowrpc.engine import run_flow

        bound = self.bind(args, kwargs)
        return run_flow(self, bound, "state" if return_state else "result")

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"


def _adapter(annotation: Any) -> TypeAdapter[Any] | None:
    """A validator for one type hint; None when pydantic cannot validate the type."""
    try:
        return TypeAdapter(annotation, config=_ARBITRARY)
    except Exception:
        try:
            return TypeAdapter(annotation)
        except Exception:
            return None


def flow(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@flow` or `@flow(name=..., retries=..., ...)`: makes a function a Flow."""
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)


__all__ = ["Flow", "flow"]
