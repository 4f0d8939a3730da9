"""Caching and results through a real server: cache policies, keys, expiration, refresh,
persisted results (pickle and JSON, through the server or a shared directory), and a cache
entry made by one process used by another."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
from sdk_support import task_runs_of

from flowrpc import flow, task
from flowrpc.cache_policies import FLOW_PARAMETERS, INPUTS, NO_CACHE, RUN_ID, TASK_SOURCE
from flowrpc.exceptions import MissingResult, ResultTooLarge
from flowrpc.results import load


def counting_task(**options):
    calls = []

    @task(**options)
    def compute(x, label="a"):
        calls.append(x)
        return {"x": x, "calls": len(calls)}

    return compute, calls


def test_a_task_with_a_cache_policy_completes_cached_on_the_same_inputs(client):
    compute, calls = counting_task(cache_policy=INPUTS)

    @flow
    def twice():
        return compute(1), compute(1), compute(2), compute(1, return_state=True)

    state = twice(return_state=True)
    first, again, other, cached_state = state.result()
    assert first == again == {"x": 1, "calls": 1} and other == {"x": 2, "calls": 2}
    assert calls == [1, 2]
    assert cached_state.name == "Cached" and cached_state.result() == first
    names = [run.state_name for run in task_runs_of(client, state.state_details.flow_run_id)]
    assert names == ["Completed", "Cached", "Completed", "Cached"]
    # The Cached state carries the persisted result itself.
    assert load(cached_state.data) == first


def test_cache_key_fn_expiration_and_refresh(client):
    compute, calls = counting_task(
        cache_key_fn=lambda context, parameters: f"label-{parameters['label']}",
        cache_expiration=timedelta(seconds=1),
    )

    @flow
    def run(x, label):
        return compute(x, label)

    assert run(1, "a")["x"] == 1
    assert run(2, "a")["x"] == 1  # same key: cached, though x differs
    assert run(3, "b")["x"] == 3
    time.sleep(1.2)
    assert run(4, "a")["x"] == 4  # expired
    refreshing = compute.with_options(refresh_cache=True)

    @flow
    def refresh():
        return refreshing(5, "a")

    assert refresh()["x"] == 5
    assert run(6, "a")["x"] == 5  # the refreshed entry is the cache now
    assert calls == [1, 3, 4, 5]


def test_policies_combine_and_no_cache_turns_caching_off(client):
    compute, calls = counting_task(cache_policy=INPUTS + RUN_ID)

    @flow
    def run(n):
        return compute(1)["calls"], compute(1)["calls"]

    assert run(1) == (1, 1)
    assert run(1) == (2, 2)  # RUN_ID: a new flow run misses the last run's entry
    assert len(calls) == 2

    flow_keyed, flow_calls = counting_task(cache_policy=FLOW_PARAMETERS + TASK_SOURCE)

    @flow
    def by_parameters(n):
        return flow_keyed(n * 100)["x"]

    assert by_parameters(1) == 100 and by_parameters(1) == 100 and by_parameters(2) == 200
    assert flow_calls == [100, 200]

    without_label, label_calls = counting_task(cache_policy=INPUTS - "label")

    @flow
    def labels():
        return without_label(1, "a")["calls"], without_label(1, "b")["calls"]

    assert labels() == (1, 1) and label_calls == [1]

    uncached, uncached_calls = counting_task(cache_policy=NO_CACHE)

    @flow
    def repeat():
        uncached(1), uncached(1)

    repeat()
    assert uncached_calls == [1, 1]


def test_without_caching_results_are_not_persisted_by_default(client):
    @task
    def value():
        return 42

    @flow
    def run():
        return [value(return_state=True)]

    [state] = run()
    assert state.result() == 42  # kept in memory by this process
    recorded = client.read_task_run(state.state_details.task_run_id).state
    assert recorded.data is None
    with pytest.raises(MissingResult, match="not persisted"):
        recorded.result()


def test_persisted_results_pickle_json_and_a_shared_directory(client, tmp_path):
    class Point:
        def __init__(self, x):
            self.x = x

    @task(persist_result=True)
    def pickled():
        return Point(3)

    @task(persist_result=True, result_serializer="json")
    def as_json():
        return {"when": "now", "items": [1, 2]}

    @task(persist_result=True, result_storage=tmp_path / "results")
    def stored():
        return "in a file"

    @flow(persist_result=True)
    def run():
        return [pickled(return_state=True), as_json(return_state=True), stored(return_state=True)]

    flow_state = run(return_state=True)
    states = flow_state.result()
    recorded = [client.read_task_run(s.state_details.task_run_id).state for s in states]
    assert recorded[0].data["serializer"] == "pickle" and recorded[0].result().x == 3
    assert recorded[1].data == {
        "type": "result",
        "serializer": "json",
        "payload": '{"when": "now", "items": [1, 2]}',
    }
    assert recorded[1].result() == {"when": "now", "items": [1, 2]}
    assert recorded[2].data["type"] == "reference" and recorded[2].result() == "in a file"
    assert os.listdir(tmp_path / "results")
    flow_record = client.read_flow_run(flow_state.state_details.flow_run_id).state
    assert flow_record.data["type"] == "result" and len(flow_record.result()) == 3


def test_a_result_too_large_for_the_server_fails_with_the_alternative(client, tmp_path):
    @task(persist_result=True)
    def huge():
        return os.urandom(600 * 1024)

    @flow
    def run():
        return huge()

    with pytest.raises(ResultTooLarge, match="result_storage=") as raised:
        run()
    assert "max_json_bytes" in str(raised.value)

    stored = huge.with_options(result_storage=tmp_path)

    @flow
    def run_stored():
        return len(stored())

    assert run_stored() == 600 * 1024


def test_unknown_serializer_is_refused():
    with pytest.raises(ValueError, match="unknown result_serializer"):
        flow(result_serializer="yaml")(lambda: None)


PROGRAM = textwrap.dedent(
    """
    import sys
    from flowrpc import flow, task
    from flowrpc.cache_policies import INPUTS

    @task(cache_policy=INPUTS)
    def expensive(x):
        print("computed", flush=True)
        return {"square": x * x, "pid": __import__("os").getpid()}

    @flow
    def run(x):
        return [expensive(x, return_state=True)]

    [state] = run(int(sys.argv[1]))
    print(state.name, state.result()["square"], state.result()["pid"])
    """
)


@pytest.mark.parametrize("storage", ["server", "directory"])
def test_a_cache_entry_made_by_one_process_is_used_by_another(client, tmp_path, api_url, storage):
    program = tmp_path / "cached_program.py"
    program.write_text(PROGRAM)
    env = {**os.environ, "FLOWRPC_API_URL": api_url}
    if storage == "directory":
        env["FLOWRPC_RESULT_STORAGE_PATH"] = str(tmp_path / "shared")

    def run(x):
        result = subprocess.run(
            [sys.executable, str(program), str(x)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split("\n")

    first = run(7)
    assert first[0] == "computed" and first[1].startswith("Completed 49 ")
    second = run(7)
    name, square, pid = second[0].split()
    assert (name, square) == ("Cached", "49")
    assert pid == first[1].split()[2]  # the value the first process computed
    assert run(8)[0] == "computed"
    [cached_run] = [r for r in client.read_task_runs() if r.state_name == "Cached"]
    record_type = "reference" if storage == "directory" else "result"
    assert cached_run.state.data["type"] == record_type
    if storage == "directory":
        assert len(os.listdir(tmp_path / "shared")) == 2  # one file per distinct key


def test_a_server_with_a_lower_limit_refuses_the_result_with_the_alternative(database, monkeypatch):
    from harness import running_server

    from flowrpc.engine.client import reset_sdk_client

    @task(persist_result=True)
    def medium():
        return "x" * 50_000

    @flow
    def run():
        return [medium(return_state=True)]

    with running_server(database.model_copy(update={"max_json_bytes": 20_000})) as server:
        monkeypatch.setenv("FLOWRPC_API_URL", f"127.0.0.1:{server.port}")
        reset_sdk_client()
        try:
            [state] = run()
        finally:
            reset_sdk_client()
    assert state.is_failed()
    assert "max_json_bytes" in state.message and "result_storage=" in state.message
    with pytest.raises(ResultTooLarge):
        state.result()
