"""The drivers: the attempt loop around a body, once for sync bodies and once for async ones.
All state logic lives in the engines; a driver only calls the body, sleeps and enters contexts."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from flowrpc.context import FlowRunContext
from flowrpc.engine.flow_engine import FlowRunEngine
from flowrpc.engine.task_engine import TaskRunEngine
from flowrpc.engine.timeouts import async_timeout, sync_timeout
from flowrpc.logging import FLOW_END_FLUSH_SECONDS, flush_logs, recording_prints, run_logging


def run_task(
    task: Any,
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None = None,
    return_type: str = "result",
    on_task_run_id: Callable[[UUID | None], None] | None = None,
) -> Any:
    """Runs one task call as a task run; returns its result (or its final state with
    return_type="state"). For an async task this returns a coroutine."""
    if inspect.iscoroutinefunction(task.fn):
        return _run_task_async(task, parameters, wait_for, return_type, on_task_run_id)
    background = _completed_in_background(return_type, on_task_run_id)
    engine = TaskRunEngine(task, parameters, wait_for, on_task_run_id, background)
    engine.setup()
    while not engine.done:
        step = engine.begin_attempt()
        if step is True:
            with engine.run_context() as context, run_logging(context):
                _attempt_sync(engine, task.fn, *task.call_arguments(engine.parameters))
        elif step:
            time.sleep(step)
    return engine.outcome(return_type == "state")


async def _run_task_async(
    task: Any,
    parameters: dict[str, Any],
    wait_for: Iterable[Any] | None,
    return_type: str,
    on_task_run_id: Callable[[UUID | None], None] | None,
) -> Any:
    background = _completed_in_background(return_type, on_task_run_id)
    engine = await asyncio.to_thread(
        _set_up, TaskRunEngine, task, parameters, wait_for, on_task_run_id, background
    )
    while not engine.done:
        step = await asyncio.to_thread(engine.begin_attempt)
        if step is True:
            with engine.run_context() as context, run_logging(context):
                await _attempt_async(engine, task.fn, *task.call_arguments(engine.parameters))
        elif step:
            await asyncio.sleep(step)
    # No call to make: the value is in memory (kept by succeed, or loaded by begin_attempt).
    return engine.outcome(return_type == "state")


def _set_up(engine_class: Callable[..., Any], *args: Any) -> Any:
    """A new engine, set up. In a thread for an async run: making an engine may open the SDK's
    client (and start the embedded server) on first use."""
    engine = engine_class(*args)
    engine.setup()
    return engine


def _completed_in_background(return_type: str, on_task_run_id: Any) -> bool:
    """Completed states go out in the background, except for a direct call that asked for the
    state (return_state=True), which gets the server's answer."""
    return return_type == "result" or on_task_run_id is not None


def run_flow(flow: Any, bound: inspect.BoundArguments, return_type: str = "result") -> Any:
    """Runs one flow call as a flow run; returns its result (or its final state with
    return_type="state"). For an async flow this returns a coroutine."""
    if inspect.iscoroutinefunction(flow.fn):
        return _run_flow_async(flow, bound, return_type)
    engine = FlowRunEngine(flow, bound)
    engine.setup()
    while not engine.done:
        step = engine.begin_attempt()
        if step is True:
            parameters = flow.parameters_of(bound)
            # Leaving the runner waits for the tasks; then run_logging flushes the run's logs.
            with (
                engine.run_context(parameters) as context,
                run_logging(context),
                context.task_runner,
            ):
                _attempt_sync(engine, flow.fn, bound.args, bound.kwargs)
        elif step:
            time.sleep(step)
    return engine.outcome(return_type == "state")


async def _run_flow_async(flow: Any, bound: inspect.BoundArguments, return_type: str) -> Any:
    engine = await asyncio.to_thread(_set_up, FlowRunEngine, flow, bound)
    while not engine.done:
        step = await asyncio.to_thread(engine.begin_attempt)
        if step is True:
            parameters = flow.parameters_of(bound)
            with engine.run_context(parameters) as context:
                async with _async_flow_body(context):
                    await _attempt_async(engine, flow.fn, bound.args, bound.kwargs)
        elif step:
            await asyncio.sleep(step)
    # No call to make: the value is in memory (kept by succeed).
    return engine.outcome(return_type == "state")


@asynccontextmanager
async def _async_flow_body(context: FlowRunContext) -> AsyncIterator[None]:
    """What the sync driver's `with` does around a flow body, with its waits in threads so the
    loop goes on: the task runner starts; at the end it waits for the submitted tasks, then the
    run's logs are flushed."""
    runner = context.task_runner
    error: BaseException | None = None
    try:
        with recording_prints(context):
            await asyncio.to_thread(runner.__enter__)
            try:
                yield
            except BaseException as raised:
                error = raised
                raise
            finally:
                exc_info = (type(error), error, error.__traceback__) if error else (None,) * 3
                await _off_the_loop(error, runner.__exit__, *exc_info)
    finally:
        await _off_the_loop(error, flush_logs, FLOW_END_FLUSH_SECONDS)


async def _off_the_loop(error: BaseException | None, call: Callable[..., Any], *args: Any) -> Any:
    """call(*args) in a thread, so the loop goes on while it blocks; in a coroutine being closed
    (GeneratorExit: it may not await any more) it runs here."""
    if isinstance(error, GeneratorExit):
        return call(*args)
    return await asyncio.to_thread(call, *args)


def _attempt_sync(engine: Any, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
    try:
        with sync_timeout(engine.timeout_seconds):
            value = fn(*args, **kwargs)
            if isinstance(engine, FlowRunEngine):
                value = engine.resolve_return(value)
    except Exception as error:
        engine.fail(error)
    except BaseException as error:
        engine.crash(error)
        raise
    else:
        engine.succeed(value)


async def _attempt_async(engine: Any, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
    # The engine's calls block on the server: they run in a thread, so the loop goes on.
    try:
        async with async_timeout(engine.timeout_seconds):
            value = await fn(*args, **kwargs)
            if isinstance(engine, FlowRunEngine):
                value = await asyncio.to_thread(engine.resolve_return, value)
    except Exception as error:
        await asyncio.to_thread(engine.fail, error)
    except BaseException as error:  # cancelled, interrupted: Crashed is recorded, then re-raised
        await _off_the_loop(error, engine.crash, error)
        raise
    else:
        await asyncio.to_thread(engine.succeed, value)
