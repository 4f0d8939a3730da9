"""@task through a real server: task runs and their options, retries with delays and the
condition function, timeouts, submit/map/unmapped, futures, wait/as_completed and graph edges."""

from __future__ import annotations

import contextvars
import gc
import threading
import time
import weakref
from types import ModuleType, SimpleNamespace

import pytest
from sdk_support import task_runs_of

from flowrpc import flow, task, unmapped
from flowrpc.engine.task_engine import TaskRunEngine
from flowrpc.exceptions import UpstreamTaskError
from flowrpc.futures import PrefectFutureList, as_completed, wait
from flowrpc.schemas.objects import TaskRun
from flowrpc.task_runners import ThreadPoolTaskRunner
from flowrpc.tasks import Task, exponential_backoff


def test_a_task_outside_a_flow_is_a_plain_call(client):
    @task
    def inc(x):
        return x + 1

    assert inc(1) == 2
    assert client.read_task_runs() == []


def test_task_runs_with_their_options(client):
    @task(name="adder", tags=["math", "fast"], version="2", description="adds")
    def add(x, y):
        return x + y

    @task
    def plain():
        return "ok"

    @flow
    def work():
        return add(1, 2), add(3, 4), plain(), plain(return_state=True)

    state = work(return_state=True)
    first, second, third, plain_state = state.result()
    assert (first, second, third) == (3, 7, "ok")
    assert plain_state.is_completed() and plain_state.result() == "ok"
    runs = task_runs_of(client, state.state_details.flow_run_id)
    assert len(runs) == 4
    adders = [run for run in runs if run.task_key.startswith("test_task_runs")][:0] or runs[:2]
    for run in adders:
        assert run.name.startswith("adder-") and len(run.name) == len("adder-") + 3
        assert run.tags == ["fast", "math"] and run.task_version == "2"
        assert (run.state_name, run.run_count) == ("Completed", 1)
    assert [run.dynamic_key for run in runs] == ["0", "1", "0", "1"]
    assert runs[2].name.startswith("plain-")
    assert add.description == "adds"


def test_task_retries_with_delays_jitter_and_the_condition(client):
    attempts = []

    @task(retries=3, retry_delay_seconds=[0, 1, 0], retry_jitter_factor=0.1)
    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return len(attempts)

    @flow
    def run_flaky():
        return [flaky(return_state=True)]  # a returned State would stand for its result

    [state] = run_flaky()
    assert state.result() == 3
    assert attempts[2] - attempts[1] >= 0.8  # the second retry waited about a second
    run = client.read_task_run(state.state_details.task_run_id)
    assert (run.state_name, run.run_count) == ("Completed", 3)
    assert run.empirical_policy.retries == 3
    assert run.empirical_policy.retry_delay == [0, 1, 0]
    assert run.empirical_policy.retry_jitter_factor == 0.1

    calls = []

    def only_connection_errors(task, task_run, state):
        calls.append((task.name, task_run.id, state.type.value))
        return "ConnectionError" in state.message

    @task(retries=5, retry_condition_fn=only_connection_errors)
    def picky(error):
        raise error

    @flow
    def run_picky():
        return (
            picky(ConnectionError("x"), return_state=True),
            picky(ValueError("y"), return_state=True),
        )

    retried, not_retried = run_picky()
    assert client.read_task_run(retried.state_details.task_run_id).run_count == 6
    assert client.read_task_run(not_retried.state_details.task_run_id).run_count == 1
    assert not_retried.is_failed()
    assert len(calls) == 7 and calls[0][0] == "picky" and calls[0][2] == "FAILED"


def test_exponential_backoff_gives_a_delay_per_retry():
    @task(retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=2))
    def backing_off():
        pass

    assert backing_off.retry_delay_seconds == [2, 4, 8, 16]


def test_a_task_past_its_timeout_fails_timed_out(client):
    @task(timeout_seconds=0.2, retries=1)
    def slow():
        for _ in range(100):
            time.sleep(0.05)

    @flow
    def wait_for_slow():
        return [slow(return_state=True)]

    [state] = wait_for_slow()
    assert (state.type.value, state.name) == ("FAILED", "TimedOut")
    assert state.message == "Task run exceeded timeout of 0.2 second(s)"
    assert client.read_task_run(state.state_details.task_run_id).run_count == 2
    with pytest.raises(TimeoutError):
        state.result()


def test_submit_map_unmapped_and_the_graph_edges(client):
    @task
    def numbers(n):
        return list(range(n))

    @task
    def scale(x, factor, offset=0):
        return x * factor + offset

    @task
    def total(values, extra):
        return sum(values) + sum(extra)

    @flow
    def pipeline():
        source = numbers.submit(3)
        scaled = scale.map(source, unmapped([10]).value[0], offset=unmapped(1))
        assert isinstance(scaled, PrefectFutureList)
        first = scale.submit(1000, 1)
        return total.submit(scaled, [first]), scaled

    state = pipeline(return_state=True)
    result, scaled = state.result()
    assert result == (1 + 11 + 21) + 1000 and scaled == [1, 11, 21]
    nodes = {node.id: node for node in client.read_flow_run_graph(state.state_details.flow_run_id)}
    names = {node.id: node.name.rsplit("-", 1)[0] for node in nodes.values()}
    assert sorted(names.values()) == ["numbers", "scale", "scale", "scale", "scale", "total"]
    upstream = {
        names[node.id]: sorted(names[dep.id] for dep in node.upstream_dependencies)
        for node in nodes.values()
        if node.upstream_dependencies
    }
    # Mapping over a future maps over its result: each scale run depends on numbers.
    assert upstream["total"] == ["scale", "scale", "scale", "scale"]
    assert upstream["scale"] == ["numbers"]


def test_map_over_plain_lists_with_unmapped_and_futures_helpers(client):
    @task
    def power(base, exponent):
        return base**exponent

    @flow
    def powers():
        futures = power.map([1, 2, 3], unmapped(2))
        done, not_done = wait(futures)
        assert len(done) == 3 and not not_done
        finished = sorted(f.result() for f in as_completed(futures))
        return futures.result(), finished, [f.task_run_id is not None for f in futures]

    squares, finished, ids = powers()
    assert squares == [1, 4, 9] and finished == [1, 4, 9] and ids == [True] * 3

    @flow
    def mismatched():
        power.map([1, 2], [1, 2, 3])

    with pytest.raises(ValueError, match="differ in length"):
        mismatched()


def test_a_finished_future_keeps_its_result_not_its_call(client):
    """A flow holds a map's futures to its end: each finished one keeps what result() and state
    need, not the call's arguments, its engine, its task run or a lock."""

    class Item:  # weakly referenceable, unlike an int
        def __init__(self, n):
            self.n = n

    @task
    def number(item, offset):
        return item.n + offset

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def mapped():
        items = [Item(n) for n in range(20)]
        refs = [weakref.ref(item) for item in items]
        futures = number.map(items, unmapped(1000))
        futures.wait()
        return SimpleNamespace(futures=futures, refs=refs)  # returned as is, not resolved

    held = mapped()
    gc.collect()
    assert [ref() for ref in held.refs] == [None] * 20  # the runner kept no call's arguments
    bookkeeping = (TaskRunEngine, TaskRun, Task, threading.Condition, contextvars.Context)
    for future in held.futures:
        assert not [o for o in _reachable(future) if isinstance(o, bookkeeping)]
    assert held.futures.result() == list(range(1000, 1020))
    state = held.futures[3].state
    assert state is held.futures[3].state and state.is_completed() and state.result() == 1003
    assert state.state_details.task_run_id == held.futures[3].task_run_id
    assert client.read_task_run(held.futures[3].task_run_id).state_name == "Completed"


def _reachable(root: object) -> list[object]:
    """The objects reachable from root, classes and modules left out (they reach everything)."""
    seen, todo = {id(root): root}, [root]
    while todo:
        for referent in gc.get_referents(todo.pop()):
            if not isinstance(referent, type | ModuleType) and id(referent) not in seen:
                seen[id(referent)] = referent
                todo.append(referent)
    return list(seen.values())


def test_a_failed_upstream_leaves_the_downstream_not_ready(client):
    @task
    def fails():
        raise RuntimeError("upstream broke")

    @task
    def downstream(x):
        return x

    @flow
    def chain():
        future = downstream.submit(fails.submit())
        future.wait()
        return [future.state]

    @flow
    def chain_result():
        return downstream.submit(fails.submit()).result()

    [state] = chain()
    assert state.name == "NotReady"
    with pytest.raises(UpstreamTaskError, match="did not reach a 'COMPLETED' state"):
        chain_result()


def test_results_passed_between_tasks_become_edges(client):
    @task
    def produce():
        return {"rows": [1, 2]}

    @task
    def consume(data, wait_for_me=None):
        return len(data["rows"])

    @flow
    def handoff():
        data = produce()
        side = produce.submit()
        return consume(data, wait_for=[side])

    state = handoff(return_state=True)
    assert state.result() == 2
    nodes = client.read_flow_run_graph(state.state_details.flow_run_id)
    [consumer] = [node for node in nodes if node.name.startswith("consume")]
    producers = {node.id for node in nodes if node.name.startswith("produce")}
    assert {dep.id for dep in consumer.upstream_dependencies} == producers


def test_with_options_returns_a_configured_copy():
    @task(retries=1)
    def original():
        return 1

    copy = original.with_options(name="renamed", retries=3, tags=["x"])
    assert (copy.name, copy.retries, copy.tags) == ("renamed", 3, {"x"})
    assert (original.name, original.retries, original.tags) == ("original", 1, set())
    with pytest.raises(TypeError, match="unknown options"):
        original.with_options(nonsense=True)


def test_submit_outside_a_flow_says_where_it_belongs():
    @task
    def lonely():
        return 1

    with pytest.raises(RuntimeError, match="inside a @flow"):
        lonely.submit()


def test_futures_inside_collections_and_a_collection_that_contains_itself(client):
    @task
    def one():
        return 1

    @task
    def count(values):
        return len(values)

    @flow
    def nested():
        loop = []
        loop.append(loop)
        return count({"a": [one.submit(), (one.submit(),)]}), count(loop)

    assert nested() == (1, 1)


def test_tasks_with_positional_only_star_args_and_keyword_arguments(client):
    @task
    def spread(first, /, *rest, scale=1, **named):
        return first, rest, scale, named

    @flow
    def call_it():
        return spread(1, 2, 3, scale=2, extra="x"), spread.submit(0).result()

    assert call_it() == ((1, (2, 3), 2, {"extra": "x"}), (0, (), 1, {}))
