"""@flow through a real server: states, names, versions, return values and errors, retries,
timeouts, parameter validation, run names, methods, async flows and subflows."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest
from sdk_support import flow_state_names, task_runs_of

from flowrpc import flow, task
from flowrpc.exceptions import ParameterBindError, ParameterTypeError


def test_a_flow_call_is_a_completed_flow_run_with_its_states(client):
    @flow
    def add_numbers(x: int, y: int = 2) -> int:
        """Adds two numbers."""
        return x + y

    state = add_numbers(1, return_state=True)
    assert state.is_completed() and state.result() == 3
    run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_state_names(client, run.id) == ["Pending", "Running", "Completed"]
    assert client.read_flow(run.flow_id).name == "add-numbers"
    assert run.parameters == {"x": 1, "y": 2}
    assert run.run_count == 1 and run.start_time and run.end_time
    source = Path(__file__).read_bytes()
    assert run.flow_version == hashlib.md5(source, usedforsecurity=False).hexdigest()
    assert add_numbers.description == "Adds two numbers."
    assert add_numbers(5, y=5) == 10


def test_options_name_version_and_run_name(client):
    @flow(name="my flow", version="v7", flow_run_name="sum-{x}-{y}")
    def named(x, y):
        return x * y

    state = named(3, "b", return_state=True)
    run = client.read_flow_run(state.state_details.flow_run_id)
    assert (run.name, run.flow_version) == ("sum-3-b", "v7")
    assert client.read_flow(run.flow_id).name == "my flow"

    calls = iter(range(100))
    renamed = named.with_options(flow_run_name=lambda: f"call-{next(calls)}")
    state = renamed(1, 2, return_state=True)
    assert client.read_flow_run(state.state_details.flow_run_id).name == "call-0"
    assert named.flow_run_name == "sum-{x}-{y}"  # with_options copied


def test_a_failing_flow_reraises_and_its_run_ends_failed(client):
    @flow
    def broken():
        raise ValueError("no good")

    with pytest.raises(ValueError, match="no good"):
        broken()
    state = broken(return_state=True)
    assert state.is_failed()
    assert state.message == "Flow run encountered an exception ValueError: no good"
    with pytest.raises(ValueError, match="no good"):
        state.result()
    assert isinstance(state.result(raise_on_failure=False), ValueError)
    assert flow_state_names(client, state.state_details.flow_run_id) == [
        "Pending",
        "Running",
        "Failed",
    ]


def test_flow_retries_go_through_the_servers_policy(client):
    attempts = []

    @flow(retries=2, retry_delay_seconds=0)
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)}")
        return "third time"

    state = flaky(return_state=True)
    assert state.result() == "third time"
    run_id = state.state_details.flow_run_id
    assert flow_state_names(client, run_id) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Running",
        "AwaitingRetry",
        "Running",
        "Completed",
    ]
    assert client.read_flow_run(run_id).run_count == 3


def test_retries_exhausted_fail_the_flow_after_the_delay(client):
    @flow(retries=1, retry_delay_seconds=1)
    def always_fails():
        raise KeyError("x")

    started = time.monotonic()
    state = always_fails(return_state=True)
    assert time.monotonic() - started >= 0.9  # waited for the retry's scheduled time
    assert state.is_failed()
    assert client.read_flow_run(state.state_details.flow_run_id).run_count == 2


def test_a_flow_past_its_timeout_fails_timed_out(client):
    @flow(timeout_seconds=0.3)
    def slow():
        time.sleep(5)

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="exceeded timeout of 0.3 second"):
        slow()
    assert time.monotonic() - started < 3
    state = slow(return_state=True)
    assert (state.type.value, state.name) == ("FAILED", "TimedOut")


def test_parameters_are_validated_and_coerced_from_type_hints(client):
    seen = []

    @flow
    def typed(count: int, ratio: float = 0.5, names: list[str] | None = None):
        seen.append((count, ratio, names))
        return count

    assert typed("7", names=("a",)) == 7
    assert seen == [(7, 0.5, ["a"])]

    with pytest.raises(ParameterTypeError) as raised:
        typed("seven")
    assert "count: Input should be a valid integer" in str(raised.value)
    assert len(seen) == 1  # the body never ran
    state = typed("seven", return_state=True)
    assert state.is_failed() and "count: Input should be a valid integer" in state.message
    assert flow_state_names(client, state.state_details.flow_run_id) == ["Pending", "Failed"]

    with pytest.raises(ParameterBindError):
        typed(1, 2, 3, 4)

    unchecked = typed.with_options(validate_parameters=False)
    assert unchecked("seven") == "seven"


def test_an_integer_json_would_round_is_recorded_as_a_stand_in(client):
    @flow
    def by_id(user_id: int, ids: list[int]) -> int:
        return user_id + sum(ids)

    state = by_id(2**60 + 1, [2**53], return_state=True)

    assert state.result() == 2**60 + 1 + 2**53  # the body had the exact values
    run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.parameters == {"user_id": "<int: an integer beyond ±2**53>", "ids": [2**53]}


class Greeter:
    greeting = "hello"

    def __init__(self, name):
        self.name = name

    @flow
    def greet(self, punctuation: str = "!"):
        return f"{self.greeting} {self.name}{punctuation}"

    @flow
    @classmethod
    def shout(cls, word: str):
        return f"{cls.greeting.upper()} {word.upper()}"

    @flow(name="static-sum")
    @staticmethod
    def add(x: int, y: int):
        return x + y


def test_flows_on_methods_classmethods_and_staticmethods(client):
    greeter = Greeter("ada")
    assert greeter.greet() == "hello ada!"
    assert Greeter.shout("hi") == "HELLO HI"
    assert greeter.shout("x") == "HELLO X"
    assert Greeter.add("1", 2) == 3 and greeter.add(2, 2) == 4

    state = greeter.greet("?", return_state=True)
    run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.parameters == {"punctuation": "?"}  # self is not a parameter
    assert client.read_flow(run.flow_id).name == "greet"


def test_async_flows_and_tasks(client):
    @task
    async def double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    @flow
    async def gather(n: int):
        return await asyncio.gather(*(double(i) for i in range(n)))

    state = asyncio.run(gather(4, return_state=True))
    assert state.result() == [0, 2, 4, 6]
    runs = task_runs_of(client, state.state_details.flow_run_id)
    assert len(runs) == 4 and {run.state_name for run in runs} == {"Completed"}

    @flow(timeout_seconds=0.2)
    async def too_slow():
        await asyncio.sleep(5)

    with pytest.raises(TimeoutError):
        asyncio.run(too_slow())


def test_a_subflow_is_linked_through_a_parent_task_run(client):
    @task
    def make_list():
        return [1, 2, 3]

    @flow
    def child(values):
        return sum(values)

    @flow
    def parent():
        values = make_list()
        return child(values)

    state = parent(return_state=True)
    assert state.result() == 6
    parent_id = state.state_details.flow_run_id
    graph = {node.name: node for node in client.read_flow_run_graph(parent_id)}
    assert len(graph) == 2
    [link] = [node for node in graph.values() if node.name.startswith("child")]
    [producer] = [node for node in graph.values() if node.name.startswith("make_list-")]
    assert [dep.id for dep in link.upstream_dependencies] == [producer.id]
    assert link.state.is_completed()
    [child_run] = client.read_flow_runs(flow_run_filter={"parent_task_run_id": {"any_": [link.id]}})
    assert child_run.state_name == "Completed" and child_run.parameters == {"values": [1, 2, 3]}
    assert flow_state_names(client, child_run.id) == ["Pending", "Running", "Completed"]
