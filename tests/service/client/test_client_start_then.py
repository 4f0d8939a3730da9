"""A start's following states (`then`) in the same call: decided exactly as the same start
followed by set_task_run_states would decide them (SQLite and PostgreSQL)."""

from __future__ import annotations

from types import SimpleNamespace
from uuid import UUID

import pytest
import uuid_utils

from flowrpc.client import InvalidRequest
from flowrpc.schemas.actions import TaskRunStart
from flowrpc.schemas.responses import SetStateStatus
from flowrpc.states import Completed, Failed, Pending, Running

FLOW = SimpleNamespace(name="then")
TASK = SimpleNamespace(name="t", task_key="t")
RETRIED = SimpleNamespace(name="r", task_key="r", retries=2, retry_delay_seconds=0)


def minted() -> UUID:
    return UUID(str(uuid_utils.uuid7()))


def decided(result):
    return result.status, result.state and (result.state.type, result.state.name)


async def recorded(client, task_run_id):
    """What a run's history leaves on the run: its state and bookkeeping."""
    run = await client.read_task_run(task_run_id)
    return (
        run.state.type,
        run.state.name,
        run.run_count,
        run.flow_run_run_count,
        run.start_time is not None,
        run.end_time is not None,
        run.state.state_details.task_run_id == run.id,
    )


async def both_ways(client, flow_state, starts_then):
    """Each (task, key, running, then) of starts_then() started with its `then` in one call,
    and in another flow run started and then proposed with set_task_run_states: each way's
    decisions and the runs' records."""
    outcomes = []
    for folded in (True, False):
        flow_run = await client.create_flow_run(FLOW, state=flow_state())
        starts = [
            TaskRunStart(task, flow_run.id, key, running, id=minted(), then=tuple(then))
            for task, key, running, then in starts_then()
        ]
        if folded:
            started = await client.start_task_runs(starts)
            decisions = [[decided(s.result), *map(decided, s.then)] for s in started]
        else:
            decisions = []
            for start in starts:  # each start, then its states (SetTaskRunStates)
                (s,) = await client.start_task_runs([start._replace(then=())])
                later = [(s.task_run_id, state) for state in start.then]
                results = await client.set_task_run_states(later) if later else []
                decisions.append([decided(s.result), *map(decided, results)])
        records = [await recorded(client, start.id) for start in starts]
        outcomes.append((decisions, records))
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


async def test_a_finished_task_in_one_call(client):
    (decisions, records) = await both_ways(
        client, Running, lambda: [(TASK, "0", Running(), [Completed()])]
    )
    assert decisions == [
        [
            (SetStateStatus.ACCEPT, (Running().type, "Running")),
            (SetStateStatus.ACCEPT, (Completed().type, "Completed")),
        ]
    ]
    assert records[0][:3] == (Completed().type, "Completed", 1)


async def test_retries_at_once_are_awaiting_retry_and_retrying(client):
    then = [Failed(), Running(), Failed(), Running(), Completed()]
    decisions, records = await both_ways(
        client, Running, lambda: [(RETRIED, "0", Running(), list(then))]
    )
    names = [state[1] for _, state in decisions[0]]
    assert names == [
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    assert records[0][:3] == (Completed().type, "Completed", 3)


async def test_a_cache_entry_written_by_a_then_state_serves_the_next_start(client):
    def starts():
        keys = [f"k-{minted()}", f"k-{minted()}"]  # each way its own

        def keyed(state, key):
            state.state_details.cache_key = key
            return state

        return [
            (TASK, "0", keyed(Running(), keys[0]), [keyed(Completed(), keys[0])]),
            (TASK, "1", keyed(Running(), keys[0]), []),
            # Its own entry, written in the same call: a rerun is Cached.
            (TASK, "2", Running(), [keyed(Completed(), keys[1]), keyed(Running(), keys[1])]),
        ]

    decisions, records = await both_ways(client, Running, starts)
    assert decisions[1][0][1][1] == "Cached" and decisions[2][-1][1][1] == "Cached"
    assert records[1][1] == "Cached"


async def test_states_refused_or_aborted_as_separate_calls_would_be(client):
    # In a flow run that is not running, the start aborts and Completed is decided from Pending.
    decisions, _ = await both_ways(client, Pending, lambda: [(TASK, "0", Running(), [Completed()])])
    assert decisions[0][0][0] is SetStateStatus.ABORT
    # After Completed, whatever the rules say about more states, both ways.
    await both_ways(
        client, Running, lambda: [(TASK, "0", Running(), [Completed(), Failed(), Pending()])]
    )


async def test_an_existing_key_gets_the_states_one_by_one(client):
    flow_run = await client.create_flow_run(FLOW, state=Running())
    first = TaskRunStart(TASK, flow_run.id, "0", Running(), id=minted())
    await client.start_task_runs([first])
    again = first._replace(id=minted(), then=(Completed(),))
    (started,) = await client.start_task_runs([again])
    assert started.created is False and started.task_run_id == first.id
    assert [decided(r)[1][1] for r in started.then] == ["Completed"]
    record = await recorded(client, first.id)
    assert record[:3] == (Completed().type, "Completed", 2)  # Running proposed twice


async def test_at_most_100_then_states_a_call(client):
    flow_run = await client.create_flow_run(FLOW, state=Running())
    starts = [
        TaskRunStart(TASK, flow_run.id, str(i), Running(), then=(Completed(),) * 50)
        for i in range(3)
    ]
    with pytest.raises(InvalidRequest, match=r"starts\[2\]\.then.*at most 100.*got 150"):
        await client.start_task_runs(starts)
    started = await client.start_task_runs(starts[:2])
    assert [len(s.then) for s in started] == [50, 50]
    assert decided(started[0].then[1])[0] is SetStateStatus.ACCEPT  # Completed -> Completed
