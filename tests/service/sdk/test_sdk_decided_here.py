"""Tasks whose decisions the engine makes itself (engine/task_engine.py): they start without a
call to the server, and the server, deciding their reported states by its own rules, records
what it would have recorded had each state waited for its answer."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from uuid import uuid4

import pytest
from sdk_support import task_runs_of

from flowrpc import flow, task
from flowrpc.cache_policies import INPUTS
from flowrpc.context import FlowRunContext, TaskRunContext
from flowrpc.engine.client import sdk_client
from flowrpc.engine.reporter import StateReporter
from flowrpc.schemas.actions import TaskRunStart
from flowrpc.states import Completed, Running


@pytest.fixture
def blocking_starts(monkeypatch):
    """The task runs started with a call that waits for the server's answer."""
    client, started = sdk_client(), []
    start_task_run = client.start_task_run

    def counted(task, *args, **kwargs):
        started.append(task.name)
        return start_task_run(task, *args, **kwargs)

    monkeypatch.setattr(client, "start_task_run", counted)
    return started


def test_tasks_start_at_once_and_the_server_records_every_decision(client, blocking_starts):
    seen, attempts = [], Counter()

    @task
    def double(i):
        seen.append(TaskRunContext.get().task_run.id)
        return 2 * i

    @task(retries=2, retry_delay_seconds=0)
    def flaky(i):
        attempts[i] += 1
        if attempts[i] < 3:
            raise ConnectionError(f"attempt {attempts[i]}")
        return i

    @task(retries=1)
    def broken():
        raise ValueError("for good")

    @flow
    def work():
        doubled = double(double(300))  # the first result feeds the second: a graph edge
        flaky(doubled)
        with pytest.raises(ValueError, match="for good"):
            broken()
        return FlowRunContext.get().flow_run.id

    flow_run_id = work()
    assert blocking_starts == []
    runs = {f"{run.name[:-4]}{run.dynamic_key}": run for run in task_runs_of(client, flow_run_id)}
    assert [runs["double0"].id, runs["double1"].id] == seen
    assert runs["double1"].task_inputs["i"][0].id == seen[0]
    assert {name: (run.state_name, run.run_count) for name, run in runs.items()} == {
        "double0": ("Completed", 1),
        "double1": ("Completed", 1),
        # Running, AwaitingRetry, Retrying, AwaitingRetry, Retrying, Completed
        "flaky0": ("Completed", 3),
        "broken0": ("Failed", 2),
    }
    assert client.read_flow_run(flow_run_id).state_name == "Completed"


def test_the_server_decides_what_the_engine_cannot(client, blocking_starts):
    @task(retries=1, retry_delay_seconds=1)
    def waits_to_retry(attempts=[]):  # noqa: B006 (counts the attempts)
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("once")
        return len(attempts)

    @task(persist_result=True)
    def persisted():
        return "kept"

    @flow(retries=1, retry_delay_seconds=0)
    def work(attempts=[]):  # noqa: B006
        attempts.append(1)
        first = waits_to_retry()  # its retry waits: from then on the server decides
        persisted()  # its Completed carries a result: started by the server
        if len(attempts) == 1:
            raise RuntimeError("the flow's first attempt fails")
        return first, FlowRunContext.get().flow_run.id

    first, flow_run_id = work()
    # The flow's second attempt finds its task runs by their keys: the server starts them.
    assert blocking_starts == ["persisted", "waits_to_retry", "persisted"]
    runs = task_runs_of(client, flow_run_id)
    assert sorted((run.name[:-4], run.state_name) for run in runs) == [
        ("persisted", "Cached"),  # a persisted result is not computed again
        ("waits_to_retry", "Completed"),
    ]
    assert first == 3  # failed, retried after a second, rerun by the flow's second attempt


def test_a_start_whose_key_has_a_run_moves_its_states_to_that_run(client):
    flow_run = client.create_flow_run(SimpleNamespace(name="moved"), state=Running())
    task = SimpleNamespace(name="t", task_key="t", tags=())
    existing, _ = client.start_task_run(task, flow_run.id, "0", running=Running())
    reporter = StateReporter(sdk_client())
    minted = uuid4()
    start = TaskRunStart(task, flow_run.id, "0", Running(), "t-0", {}, minted)
    reporter.report_start(start, start.running)
    reporter.report(minted, Completed())
    reporter.close()
    assert client.read_task_run(existing.id).state_name == "Completed"


def test_a_cache_entry_this_process_knows_answers_at_once(client, blocking_starts):
    calls = []

    @task(cache_policy=INPUTS)
    def cached(i):
        calls.append(i)
        return [i]

    @flow
    def work():
        first = cached(1)  # computed; the server stores the entry
        return first, [cached(1) for _ in range(3)], FlowRunContext.get().flow_run.id

    first, hits, flow_run_id = work()
    assert calls == [1] and hits == [[1]] * 3
    assert hits[0] is not hits[1]  # each hit loads the stored result anew
    assert blocking_starts == ["cached"]
    runs = task_runs_of(client, flow_run_id)
    assert sorted(run.state_name for run in runs) == ["Cached", "Cached", "Cached", "Completed"]


def test_a_hit_on_an_entry_the_server_lost_is_recorded_as_cached(client, blocking_starts):
    calls = []

    @task(cache_policy=INPUTS)
    def cached(i):
        calls.append(i)
        return i

    @flow
    def work():
        return cached(2), FlowRunContext.get().flow_run.id

    _, first_run = work()
    client.delete_flow_run(first_run)  # its states, and so the cache entry, go with it
    value, flow_run_id = work()
    assert (value, calls) == (2, [2])  # this process still knew the entry
    [run] = task_runs_of(client, flow_run_id)
    assert (run.state_type.value, run.state_name) == ("COMPLETED", "Cached")
