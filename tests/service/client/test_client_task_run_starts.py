"""start_task_run with a client-minted id, and start_task_runs: many starts in one call, then
their final states with set_task_run_states (the sequence the SDK's reporter sends)."""

from __future__ import annotations

from types import SimpleNamespace
from uuid import UUID

import pytest
import uuid_utils

from flowrpc.client import InvalidRequest, ObjectAlreadyExists, ObjectNotFound
from flowrpc.schemas.actions import TaskRunStart
from flowrpc.schemas.responses import SetStateStatus, StartedTaskRun
from flowrpc.states import Completed, Pending, Running

FLOW = SimpleNamespace(name="reported")
TASK = SimpleNamespace(name="t", task_key="t")


def minted() -> UUID:
    return UUID(str(uuid_utils.uuid7()))


async def test_start_task_run_creates_the_run_under_the_callers_id(client):
    run = await client.create_flow_run(FLOW, state=Running())
    task_id = minted()
    task_run, result = await client.start_task_run(TASK, run.id, "0", Running(), id=task_id)
    assert task_run.id == task_id and result.status is SetStateStatus.ACCEPT
    assert (await client.read_task_run(task_id)).state.is_running()
    # The key's run again, whatever id the caller minted this time.
    again, _ = await client.start_task_run(TASK, run.id, "0", Running(), id=minted())
    assert again.id == task_id
    with pytest.raises(ObjectAlreadyExists, match=str(task_id)):
        await client.start_task_run(TASK, run.id, "1", Running(), id=task_id)


async def test_start_task_runs_then_set_task_run_states(client):
    run = await client.create_flow_run(FLOW, state=Running())
    ids = [minted() for _ in range(3)]
    starts = [
        TaskRunStart(TASK, run.id, str(i), Running(), name=f"t-{i}", id=task_id)
        for i, task_id in enumerate(ids)
    ]
    started = await client.start_task_runs(starts)
    assert all(isinstance(s, StartedTaskRun) for s in started)
    assert [s.task_run_id for s in started] == ids
    assert all(s.created and s.result.status is SetStateStatus.ACCEPT for s in started)
    assert all(s.result.state.is_running() for s in started)
    results = await client.set_task_run_states([(task_id, Completed()) for task_id in ids])
    assert [r.status for r in results] == [SetStateStatus.ACCEPT] * 3
    for i, task_id in enumerate(ids):
        stored = await client.read_task_run(task_id)
        assert stored.state.is_completed() and stored.name == f"t-{i}"
    # Starting a key again finds its run (created False), whatever id comes with it.
    again = await client.start_task_runs([starts[0]._replace(id=minted())])
    assert again[0].created is False and again[0].task_run_id == ids[0]


async def test_start_task_runs_in_a_flow_run_that_is_not_running_aborts(client):
    run = await client.create_flow_run(FLOW, state=Pending())
    started = await client.start_task_runs([TaskRunStart(TASK, run.id, "0", Running())])
    assert started[0].result.status is SetStateStatus.ABORT
    assert (await client.read_task_run(started[0].task_run_id)).state.is_pending()


async def test_start_task_runs_is_all_or_none(client):
    run = await client.create_flow_run(FLOW, state=Running())
    task_id = minted()
    starts = [
        TaskRunStart(TASK, run.id, "0", Running(), id=task_id),
        TaskRunStart(TASK, minted(), "0", Running()),  # no such flow run
    ]
    with pytest.raises(ObjectNotFound):
        await client.start_task_runs(starts)
    with pytest.raises(ObjectNotFound):
        await client.read_task_run(task_id)
    with pytest.raises(InvalidRequest, match="1 to 100 starts"):
        await client.start_task_runs([])
