"""Async flows and tasks never block their event loop, through a real server: a call that waits
(for submitted tasks, the server, the log flush) runs in a thread while other coroutines go on.

A Gate holds such a call until a coroutine on the same loop opens it: when the call blocks the
loop, only the gate's (generous) timeout lets it through, and the test sees it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowrpc import flow, get_client, get_run_logger, task
from flowrpc.context import get_run_context
from flowrpc.engine import client as engine_client
from flowrpc.engine.client import _log_client, api_url, sdk_client
from flowrpc.logging import set_client_factory

HOLD_SECONDS = 5.0  # how long a held call waits for the loop before going on without it


class Gate:
    """Holds a blocking call until a coroutine on the event loop opens it."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.opened = threading.Event()
        self.opened_by_the_loop: bool | None = None

    def hold(self) -> None:
        """Called in the blocking call: waits for the loop to open the gate."""
        self.holding.set()
        self.opened_by_the_loop = self.opened.wait(HOLD_SECONDS)

    async def open_from_the_loop(self) -> int:
        """Ticks on the loop; once a call is held, three ticks later opens the gate. Returns the
        ticks counted while the call was held."""
        ticks = 0
        deadline = time.monotonic() + 2 * HOLD_SECONDS
        while ticks < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            ticks += self.holding.is_set()
        self.opened.set()
        return ticks


def test_the_loop_goes_on_while_an_async_flow_waits_for_its_submitted_tasks(client):
    gate = Gate()

    @task
    def held():
        # Held once the flow is Completed: its driver then leaves the runner, which waits.
        flow_run_id = get_run_context().task_run.flow_run_id
        deadline = time.monotonic() + HOLD_SECONDS
        while client.read_flow_run(flow_run_id).state_name != "Completed":
            assert time.monotonic() < deadline, "the flow did not complete"
            time.sleep(0.005)
        gate.hold()
        return "done"

    futures = []

    @flow
    async def submits():
        futures.append(held.submit())  # not waited for in the body: the runner waits for it
        # Its run started (Running) before the flow ends: a flow already Completed would abort it.
        await asyncio.to_thread(lambda: futures[0].task_run_id)

    async def main():
        return await asyncio.gather(submits(), gate.open_from_the_loop())

    _, ticks = asyncio.run(main())
    assert gate.opened_by_the_loop is True and ticks == 3
    assert futures[0].result() == "done"


def test_the_loop_goes_on_while_an_async_flow_opens_the_sdk_client(client, monkeypatch):
    gate = Gate()

    def held_get_client(*args, **kwargs):
        gate.hold()  # as the first call of a process may start the embedded server
        return get_client(*args, **kwargs)

    monkeypatch.setattr(engine_client, "get_client", held_get_client)

    @flow
    async def first():
        return "ran"

    async def main():
        return await asyncio.gather(first(), gate.open_from_the_loop())

    assert asyncio.run(main()) == ["ran", 3]  # the fixture closed the client: this opens it
    assert gate.opened_by_the_loop is True


def test_the_loop_goes_on_while_an_async_flow_flushes_its_logs(client, monkeypatch):
    gate = Gate()

    def gated_log_client():
        log_client = get_client(sync_client=True, api_url=api_url())
        create_logs = log_client.create_logs

        def held_create_logs(logs):
            gate.hold()
            return create_logs(logs)

        log_client.create_logs = held_create_logs
        return log_client

    # Records are sent only when a flush asks (not every second): at the end of the flow.
    monkeypatch.setenv("FLOWRPC_LOGGING_INTERVAL_SECONDS", "60")
    sdk_client()  # points the log shipper at the server: re-pointed below
    set_client_factory(gated_log_client)

    @flow
    async def logs_once():
        get_run_logger().info("flushed off the loop")

    async def main():
        return await asyncio.gather(logs_once(return_state=True), gate.open_from_the_loop())

    try:
        state, ticks = asyncio.run(main())
    finally:
        set_client_factory(_log_client)
    assert gate.opened_by_the_loop is True and ticks == 3
    logs = client.read_logs(log_filter={"flow_run_id": {"any_": [state.state_details.flow_run_id]}})
    assert "flushed off the loop" in [log.message for log in logs]


def test_the_loop_goes_on_while_a_cancelled_async_flow_records_crashed(client, monkeypatch):
    gate = Gate()
    sdk = sdk_client()
    propose = sdk.set_flow_run_state

    def held_propose(flow_run_id, state, force=False):
        if state.is_crashed():
            gate.hold()
        return propose(flow_run_id, state, force=force)

    monkeypatch.setattr(sdk, "set_flow_run_state", held_propose)
    started = asyncio.Event()

    @flow
    async def endless():
        started.set()
        await asyncio.Event().wait()

    async def main():
        run = asyncio.create_task(endless())
        await started.wait()
        run.cancel()
        ticks = await gate.open_from_the_loop()
        with pytest.raises(asyncio.CancelledError):
            await run
        return ticks

    assert asyncio.run(main()) == 3
    assert gate.opened_by_the_loop is True
    [run] = client.read_flow_runs(flow_filter={"name": {"any_": ["endless"]}})
    assert run.state_name == "Crashed"


def test_async_tasks_report_completed_in_the_background_unless_the_state_is_asked_for(
    client, monkeypatch
):
    sdk = sdk_client()
    propose_many, start_many = sdk.set_task_run_states, sdk.start_task_runs
    in_background = []  # the runs whose states the reporter sent

    def recorded(proposals):
        in_background.extend(task_run_id for task_run_id, _ in proposals)
        return propose_many(proposals)

    def recorded_starts(starts):
        # A start carries its run's states when both are in one batch (`then`).
        in_background.extend(start.id for start in starts if start.then)
        return start_many(starts)

    monkeypatch.setattr(sdk, "set_task_run_states", recorded)
    monkeypatch.setattr(sdk, "start_task_runs", recorded_starts)

    @task
    async def double(x):
        return 2 * x

    @flow
    async def both():
        value = await double(1)
        state = await double(2, return_state=True)
        # The server's answer came back with the state: it is recorded already.
        task_run = await asyncio.to_thread(client.read_task_run, state.state_details.task_run_id)
        return value, state, task_run.state_name

    value, state, recorded_then = asyncio.run(both())
    assert (value, state.result(), recorded_then) == (2, 4, "Completed")
    assert state.state_details.task_run_id not in in_background
    [direct] = [run for run in client.read_task_runs() if run.id != state.state_details.task_run_id]
    assert direct.state_name == "Completed"
    assert in_background == [direct.id]  # its Completed went through the reporter
