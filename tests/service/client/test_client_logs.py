"""Logs through both clients on SQLite and PostgreSQL: create in batches, read with LogFilter,
sort and page; bad records are refused whole; deleting a flow run deletes its logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from flowrpc.client import InvalidRequest, ObjectNotFound
from flowrpc.schemas.actions import LogCreate
from flowrpc.schemas.filters import LogFilter
from flowrpc.schemas.objects import Log
from flowrpc.schemas.sorting import LogSort
from flowrpc.states import Running

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class Named:
    """What create_flow_run and create_task_run read of a flow or task: its name."""

    def __init__(self, name: str) -> None:
        self.name = name


async def make_runs(client: Any) -> tuple[Any, Any, Any]:
    """A flow run with one task run, and a second flow run."""
    run = await client.create_flow_run(Named("logged"), state=Running())
    other = await client.create_flow_run(Named("logged"), state=Running())
    task_run = await client.create_task_run(Named("extract"), run.id, "0")
    return run, other, task_run


def record(run: Any, minute: int, level: int = 20, task_run: Any = None, **fields: Any) -> dict:
    return {
        "name": "flowrpc.task_runs" if task_run else "flowrpc.flow_runs",
        "level": level,
        "message": f"at minute {minute}",
        "timestamp": T0 + timedelta(minutes=minute),
        "flow_run_id": run.id,
        "task_run_id": task_run.id if task_run else None,
        **fields,
    }


async def test_created_logs_read_back_with_every_field(client):
    run, _, task_run = await make_runs(client)
    created = await client.create_logs(
        [
            LogCreate(**record(run, 1)),
            record(run, 2, level=40, task_run=task_run, message="boom\nTraceback ..."),
        ]
    )
    assert created == 2
    logs = await client.read_logs(LogFilter(flow_run_id=dict(any_=[run.id])))
    assert all(isinstance(log, Log) for log in logs)
    assert [(log.message, log.level, log.task_run_id) for log in logs] == [
        ("at minute 1", 20, None),
        ("boom\nTraceback ...", 40, task_run.id),
    ]
    first = logs[0]
    assert first.flow_run_id == run.id and first.name == "flowrpc.flow_runs"
    assert first.timestamp == T0 + timedelta(minutes=1)
    assert first.created is not None and first.updated == first.created
    assert logs[1].name == "flowrpc.task_runs"


async def test_filters_by_run_task_run_level_and_time(client):
    run, other, task_run = await make_runs(client)
    await client.create_logs(
        [
            record(run, 1, level=10),
            record(run, 2, level=20, task_run=task_run),
            record(run, 3, level=30),
            record(run, 4, level=40, task_run=task_run),
            record(other, 5, level=50),
        ]
    )

    async def minutes(log_filter: LogFilter) -> list[int]:
        logs = await client.read_logs(log_filter=log_filter)
        return [int((log.timestamp - T0).total_seconds() // 60) for log in logs]

    assert await minutes(LogFilter()) == [1, 2, 3, 4, 5]
    assert await minutes(LogFilter(flow_run_id=dict(any_=[other.id]))) == [5]
    assert await minutes(LogFilter(flow_run_id=dict(any_=[]))) == []
    assert await minutes(LogFilter(task_run_id=dict(any_=[task_run.id]))) == [2, 4]
    assert await minutes(LogFilter(task_run_id=dict(is_null_=True))) == [1, 3, 5]
    assert await minutes(LogFilter(task_run_id=dict(is_null_=False))) == [2, 4]
    assert await minutes(LogFilter(level=dict(ge_=20, le_=40))) == [2, 3, 4]
    assert await minutes(LogFilter(level=dict(ge_=40))) == [4, 5]
    window = dict(after_=T0 + timedelta(minutes=2), before_=T0 + timedelta(minutes=4))
    assert await minutes(LogFilter(timestamp=window)) == [2, 3, 4]
    both = LogFilter(flow_run_id=dict(any_=[run.id]), level=dict(ge_=30))
    assert await minutes(both) == [3, 4]
    either = LogFilter(operator="or_", flow_run_id=dict(any_=[other.id]), level=dict(le_=10))
    assert await minutes(either) == [1, 5]


async def test_sort_limit_and_offset(client):
    run, _, _ = await make_runs(client)
    # Given out of order; two records share a timestamp and keep the order they were sent in.
    await client.create_logs(
        [record(run, 3), record(run, 1), record(run, 2, message="a"), record(run, 2, message="b")]
    )
    mine = LogFilter(flow_run_id=dict(any_=[run.id]))
    ascending = await client.read_logs(log_filter=mine)
    assert [log.message for log in ascending] == ["at minute 1", "a", "b", "at minute 3"]
    descending = await client.read_logs(log_filter=mine, sort=LogSort.TIMESTAMP_DESC)
    assert [log.message for log in descending] == ["at minute 3", "b", "a", "at minute 1"]
    page = await client.read_logs(log_filter=mine, limit=2, offset=1)
    assert [log.message for log in page] == ["a", "b"]


async def test_a_timestamp_left_out_is_the_time_received(client):
    run, _, _ = await make_runs(client)
    before = datetime.now(UTC)
    request = LogCreate(name="n", level=20, message="now", flow_run_id=run.id)
    await client.create_logs([request.model_dump(exclude={"timestamp"})])
    (log,) = await client.read_logs(LogFilter(flow_run_id=dict(any_=[run.id])))
    assert before - timedelta(seconds=5) <= log.timestamp <= datetime.now(UTC)


async def test_a_batch_with_an_unknown_run_is_refused_whole(client):
    run, other, task_run = await make_runs(client)
    missing = uuid4()
    with pytest.raises(ObjectNotFound) as refused:
        await client.create_logs([record(run, 1), {**record(run, 2), "flow_run_id": missing}])
    assert refused.value.reason == "FLOW_RUN_NOT_FOUND" and str(missing) in str(refused.value)
    with pytest.raises(ObjectNotFound) as refused:
        await client.create_logs([{**record(run, 3), "task_run_id": missing}])
    assert refused.value.reason == "TASK_RUN_NOT_FOUND"
    with pytest.raises(InvalidRequest) as refused:
        await client.create_logs([record(other, 4, task_run=task_run)])
    assert "belongs to flow run" in str(refused.value)
    assert await client.read_logs(LogFilter(flow_run_id=dict(any_=[run.id, other.id]))) == []


async def test_bad_input_is_invalid_argument(client):
    run, _, _ = await make_runs(client)
    with pytest.raises(InvalidRequest) as refused:
        await client.create_logs([record(run, 1), {**record(run, 2), "flow_run_id": "not-a-uuid"}])
    assert "logs[1].flow_run_id" in str(refused.value)
    with pytest.raises(ValueError, match="logs.0.: a log record needs 'message'"):
        await client.create_logs([{"name": "n", "level": 20, "flow_run_id": run.id}])
    with pytest.raises(ValueError, match="no field 'worker'"):
        await client.create_logs([{**record(run, 1), "worker": "w"}])
    with pytest.raises(ValidationError):  # a LogCreate checks its fields when made
        LogCreate(**{**record(run, 1), "flow_run_id": "not-a-uuid"})
    with pytest.raises(InvalidRequest) as refused:
        await client.read_logs(limit=201)
    assert "limit" in str(refused.value)


async def test_an_empty_batch_stores_nothing(client):
    assert await client.create_logs([]) == 0


async def test_deleting_a_flow_run_deletes_its_logs(client):
    run, other, task_run = await make_runs(client)
    await client.create_logs([record(run, 1), record(run, 2, task_run=task_run), record(other, 3)])
    await client.delete_flow_run(run.id)
    remaining = await client.read_logs()
    assert [log.flow_run_id for log in remaining] == [other.id]


async def test_deleting_a_flow_deletes_the_logs_of_its_runs(client):
    run, other, task_run = await make_runs(client)
    keep = await client.create_flow_run(Named("kept"), state=Running())
    await client.create_logs([record(run, 1, task_run=task_run), record(other, 2), record(keep, 3)])
    await client.delete_flow(run.flow_id)
    assert [log.flow_run_id for log in await client.read_logs()] == [keep.id]


async def test_iter_logs_walks_every_record_a_page_at_a_time(client):
    run, other, _ = await make_runs(client)
    # Many records share a timestamp, so pages must continue by id within one.
    await client.create_logs(
        [record(run, n // 7, message=f"{n:03}") for n in range(230)] + [record(other, 1)]
    )
    mine = LogFilter(flow_run_id=dict(any_=[run.id]))
    walked = [log.message async for log in client.iter_logs(mine, page_size=50)]
    assert walked == [f"{n:03}" for n in range(230)]
    backwards = [
        log.message
        async for log in client.iter_logs(
            log_filter=mine, sort=LogSort.TIMESTAMP_DESC, page_size=40
        )
    ]
    assert backwards == [f"{n:03}" for n in reversed(range(230))]
