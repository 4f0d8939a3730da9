"""The background sender of Completed states, through a real server."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from sdk_support import reporter_threads
from uuid_utils.compat import uuid7

from flowrpc import flow, task
from flowrpc.engine.client import reset_sdk_client, sdk_client
from flowrpc.engine.reporter import StateReporter
from flowrpc.schemas.actions import TaskRunStart
from flowrpc.states import Completed, Running


def started_task_run(client, flow_run_id, key):
    task = SimpleNamespace(name="t", task_key="t")
    task_run, _ = client.start_task_run(task, flow_run_id, key, running=Running())
    return task_run


def test_states_are_sent_in_batches_and_a_deleted_run_spoils_none_of_the_others(client, caplog):
    flows = SimpleNamespace(name="reported")
    kept = client.create_flow_run(flows, state=Running())
    doomed = client.create_flow_run(flows, state=Running())
    kept_runs = [started_task_run(client, kept.id, str(i)) for i in range(3)]
    lost = started_task_run(client, doomed.id, "0")
    client.delete_flow_run(doomed.id)  # its task runs go with it

    reporter = StateReporter(sdk_client())
    with caplog.at_level(logging.WARNING, logger="flowrpc.engine"):
        for task_run in [kept_runs[0], lost, *kept_runs[1:]]:
            reporter.report(task_run.id, Completed())
        reporter.close()  # sends them all first
    for task_run in kept_runs:
        assert client.read_task_run(task_run.id).state_name == "Completed"
    assert f"task run {lost.id} was deleted before its Completed state" in caplog.text


def test_a_refused_state_is_logged(client, caplog):
    flow_run = client.create_flow_run(SimpleNamespace(name="refused"), state=Running())
    task_run = started_task_run(client, flow_run.id, "0")
    client.set_task_run_state(task_run.id, Completed(data={"type": "result", "payload": "1"}))
    reporter = StateReporter(sdk_client())
    with caplog.at_level(logging.WARNING, logger="flowrpc.engine"):
        reporter.report(task_run.id, Running())  # completed with a result: refused
        reporter.flush()
    reporter.close()
    assert f"task run {task_run.id}: the server did not accept Running (REJECT)" in caplog.text


def test_a_closed_reporter_has_no_thread_and_sends_a_late_state_at_once(client):
    flow_run = client.create_flow_run(SimpleNamespace(name="late"), state=Running())
    task_run = started_task_run(client, flow_run.id, "0")
    before = reporter_threads()
    reporter = StateReporter(sdk_client())
    reporter.close()
    assert reporter_threads() <= before  # its thread has ended
    reporter.report(task_run.id, Completed())  # got the reporter just before it closed
    assert client.read_task_run(task_run.id).state_name == "Completed"


def test_replacing_the_sdk_client_leaves_no_reporter_thread_behind(client):
    @task
    def one():
        return 1

    @flow
    def reports():
        return one()

    before = reporter_threads()
    for _ in range(2):
        assert reports() == 1  # its task's Completed went through a reporter thread
        reset_sdk_client()  # the next call opens a new client, and a new reporter
    assert reporter_threads() <= before


def count_calls(monkeypatch, client, name, calls):
    """Wraps the client's method `name`: each call appends (name, number of items)."""
    method = getattr(client, name)

    def counted(items, *args, **kwargs):
        items = list(items)
        calls.append((name, len(items)))
        return method(items, *args, **kwargs)

    monkeypatch.setattr(client, name, counted)


def test_a_start_and_its_states_in_one_batch_make_one_call(client, caplog, monkeypatch):
    flow_run = client.create_flow_run(SimpleNamespace(name="folded"), state=Running())
    sdk, calls = sdk_client(), []
    for name in ("start_task_runs", "set_task_run_states"):
        count_calls(monkeypatch, sdk, name, calls)
    task, ids = SimpleNamespace(name="t", task_key="t"), [uuid7(), uuid7()]
    persisted = Completed(data={"type": "result", "payload": "1"})
    reporter = StateReporter(sdk)
    with caplog.at_level(logging.WARNING, logger="flowrpc.engine"):
        with reporter._changed:  # the sender takes them all as one batch
            for key, task_run_id in enumerate(ids):
                start = TaskRunStart(task, flow_run.id, str(key), Running(), id=task_run_id)
                reporter.report_start(start, start.running)
            reporter.report(ids[0], Completed())
            reporter.report(ids[1], persisted)
            reporter.report(ids[1], Running())  # completed with a result: refused
        reporter.close()
    assert calls == [("start_task_runs", 2)]
    assert [client.read_task_run(i).state_name for i in ids] == ["Completed", "Completed"]
    assert f"task run {ids[1]}: the server did not accept Running (REJECT)" in caplog.text
