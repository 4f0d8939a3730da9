"""The run contexts, nested calls, interruptions and task runners through a real server."""

from __future__ import annotations

import asyncio

import pytest
from sdk_support import flow_state_names, task_runs_of

from flowrpc import flow, task
from flowrpc.context import FlowRunContext, TaskRunContext, get_run_context
from flowrpc.task_runners import ThreadPoolTaskRunner


def test_contexts_name_the_current_runs_and_log_prints(client):
    seen = {}

    @task(log_prints=False)
    def quiet():
        seen["quiet"] = TaskRunContext.get().log_prints

    @task
    def inner():
        context = get_run_context()
        seen["task"] = (context.task_run.id, context.task_run.name, context.log_prints)
        seen["flow_of_task"] = FlowRunContext.get().flow_run.id

    @flow(log_prints=True)
    def outer(x: int):
        context = get_run_context()
        seen["flow"] = (context.flow_run.id, context.parameters, context.log_prints)
        inner()
        quiet()

    state = outer(3, return_state=True)
    flow_run_id = state.state_details.flow_run_id
    assert seen["flow"] == (flow_run_id, {"x": 3}, True)
    task_run_id, name, log_prints = seen["task"]
    assert name.startswith("inner-") and log_prints is True  # inherited from the flow
    assert seen["flow_of_task"] == flow_run_id and seen["quiet"] is False
    assert client.read_task_run(task_run_id).flow_run_id == flow_run_id
    assert FlowRunContext.get() is None and TaskRunContext.get() is None


def test_a_task_called_inside_a_task_is_its_own_task_run(client):
    @task
    def leaf(x):
        return x + 1

    @task
    def branch(x):
        return leaf(x) * 10

    @flow
    def tree():
        return branch(1)

    state = tree(return_state=True)
    assert state.result() == 20
    names = sorted(
        run.name.split("-")[0] for run in task_runs_of(client, state.state_details.flow_run_id)
    )
    assert names == ["branch", "leaf"]


def test_every_task_state_is_recorded_before_the_flow_completes(client):
    @task
    def step(i):
        return i

    @flow
    def steps(n):
        return sum(step(i) for i in range(n))

    state = steps(50, return_state=True)
    assert state.result() == sum(range(50))
    runs = task_runs_of(client, state.state_details.flow_run_id)
    assert len(runs) == 50
    assert {(run.state_name, run.run_count) for run in runs} == {("Completed", 1)}
    flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert max(run.end_time for run in runs) <= flow_run.end_time


def test_an_interrupted_flow_is_recorded_crashed(client):
    @flow
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    [run] = client.read_flow_runs(flow_filter={"name": {"any_": ["interrupted"]}})
    assert run.state_name == "Crashed"
    assert flow_state_names(client, run.id) == ["Pending", "Running", "Crashed"]


def test_a_sync_task_in_an_async_flow_and_a_custom_task_runner(client):
    @task
    def square(x):
        return x * x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def mixed():
        futures = square.map(range(5))
        return square(3), futures.result()

    assert asyncio.run(mixed()) == (9, [0, 1, 4, 9, 16])
    single = mixed.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    assert single.task_runner.max_workers == 1
    assert asyncio.run(single()) == (9, [0, 1, 4, 9, 16])


def test_a_retried_flow_finds_its_task_runs_again(client):
    attempts = []

    @task
    def prepare():
        return "ready"

    @task(persist_result=True)
    def persisted():
        attempts.append("persisted")
        return "kept"

    @flow(retries=1)
    def retried():
        prepare()
        persisted()
        attempts.append("body")
        if len(attempts) < 3:
            raise RuntimeError("first attempt fails")
        return "done"

    state = retried(return_state=True)
    assert state.result() == "done"
    # The persisted task completed in the first attempt: the rerun reuses it.
    assert attempts == ["persisted", "body", "body"]
    runs = task_runs_of(client, state.state_details.flow_run_id)
    assert len(runs) == 2  # the same task runs, found by their keys
    by_name = {run.name.split("-")[0]: run for run in runs}
    assert by_name["prepare"].state_name == "Completed"
    assert by_name["prepare"].run_count == 1  # ran again: its count restarted
    assert by_name["persisted"].run_count == 1


def test_async_tasks_submitted_from_a_sync_flow(client):
    @task
    async def slow_double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    @flow
    def fan_out():
        return slow_double.map([1, 2, 3]).result()

    assert fan_out() == [2, 4, 6]


def test_prints_and_run_loggers_reach_the_server_with_their_runs(client):
    from flowrpc import get_run_logger
    from flowrpc.schemas.filters import LogFilter

    @task
    def shout(word):
        print(f"task says {word}")
        get_run_logger().warning("careful with %s", word)

    @flow(log_prints=True)
    def talkative():
        print("flow starts")
        shout("hi")

    state = talkative(return_state=True)
    flow_run_id = state.state_details.flow_run_id
    logs = client.read_logs(log_filter=LogFilter(flow_run_id={"any_": [flow_run_id]}))
    messages = {log.message: log for log in logs}
    assert {"flow starts", "task says hi", "careful with hi"} <= set(messages)
    assert messages["flow starts"].task_run_id is None
    [task_run] = task_runs_of(client, flow_run_id)
    assert messages["task says hi"].task_run_id == task_run.id
    assert messages["careful with hi"].level == 30
