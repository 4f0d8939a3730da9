"""Run logging against a real server: get_run_logger and print capture inside flow and task run
contexts, batched shipping, truncation, a full buffer, refused records, and the flush at exit."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

import flowrpc.logging as run_logs
from flowrpc import get_client
from flowrpc.context import FlowRunContext, MissingContextError, TaskRunContext
from flowrpc.logging import LogShipper, flush_logs, get_run_logger, run_logging
from flowrpc.schemas.filters import LogFilter
from flowrpc.states import Running


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def shipping(api_url: str) -> Iterator[str]:
    """The process's shipper sends to this test's server (and is closed after it)."""
    run_logs.set_client_factory(lambda: get_client(sync_client=True, api_url=api_url))
    yield api_url
    run_logs.set_client_factory(run_logs._default_client)


def make_runs(api_url: str) -> tuple[Any, Any]:
    with get_client(sync_client=True, api_url=api_url) as client:
        flow_run = client.create_flow_run(Named("etl"), state=Running())
        task_run = client.create_task_run(Named("extract"), flow_run.id, "0")
    return flow_run, task_run


def read_logs(api_url: str, flow_run: Any, offset: int = 0) -> list[Any]:
    with get_client(sync_client=True, api_url=api_url) as client:
        return client.read_logs(LogFilter(flow_run_id=dict(any_=[flow_run.id])), offset=offset)


def test_get_run_logger_outside_a_run_raises():
    with pytest.raises(MissingContextError):
        get_run_logger()


def test_run_loggers_ship_flow_and_task_records(shipping, capsys):
    flow_run, task_run = make_runs(shipping)
    flow_context = FlowRunContext(flow=Named("etl"), flow_run=flow_run)
    with flow_context, run_logging(flow_context):
        get_run_logger().info("starting %s", "etl")
        task_context = TaskRunContext(task=Named("extract"), task_run=task_run)
        with task_context, run_logging(task_context):
            logger = get_run_logger(step="one")
            logger.warning("slow")
            logger.debug("below the level: not recorded")
            try:
                raise ValueError("bad row")
            except ValueError:
                logger.exception("failed")
        logging.getLogger("flowrpc.flow_runs").error("plain logger, current run")
    # The flow run's end flushed them: nothing else needed before reading.
    logs = read_logs(shipping, flow_run)
    assert [(log.name, log.level, log.task_run_id) for log in logs] == [
        ("flowrpc.flow_runs", 20, None),
        ("flowrpc.task_runs", 30, task_run.id),
        ("flowrpc.task_runs", 40, task_run.id),
        ("flowrpc.flow_runs", 40, None),
    ]
    assert logs[0].message == "starting etl"
    assert (
        logs[2].message.startswith("failed\nTraceback") and "ValueError: bad row" in logs[2].message
    )
    console = capsys.readouterr().err
    assert f"| INFO    | Flow run {flow_run.name!r} - starting etl" in console
    assert f"| WARNING | Task run {task_run.name!r} - slow" in console


def test_log_prints_records_prints_and_still_prints_them(shipping, capsys):
    flow_run, task_run = make_runs(shipping)
    flow_context = FlowRunContext(flow=Named("etl"), flow_run=flow_run, log_prints=True)
    elsewhere = io.StringIO()
    with flow_context, run_logging(flow_context):
        print("rows:", 3, sep=" ")
        print("to a file", file=elsewhere)
        print("to stderr: not recorded (tracebacks go there)", file=sys.stderr)
        quiet = TaskRunContext(task=Named("extract"), task_run=task_run, log_prints=False)
        with quiet, run_logging(quiet):
            print("task without log_prints")
        loud = TaskRunContext(task=Named("extract"), task_run=task_run, log_prints=True)
        with loud, run_logging(loud):
            print("task", "with", "log_prints", sep="-")
    print("after the run")
    assert elsewhere.getvalue() == "to a file\n"
    out = capsys.readouterr().out
    assert "rows: 3\n" in out and "task without log_prints\n" in out and "after the run" in out
    logs = read_logs(shipping, flow_run)
    assert [(log.message, log.level, log.task_run_id) for log in logs] == [
        ("rows: 3", 20, None),
        ("task-with-log_prints", 20, task_run.id),
    ]


def test_an_over_long_message_is_cut_with_a_marker(shipping):
    flow_run, _ = make_runs(shipping)
    context = FlowRunContext(flow=Named("etl"), flow_run=flow_run)
    with context, run_logging(context):
        get_run_logger().info("é" * 100_000)  # 200,000 bytes, over the 64 KiB default
    (log,) = read_logs(shipping, flow_run)
    assert len(log.message.encode()) <= 64 * 1024
    assert log.message.startswith("éé")
    assert log.message.endswith(
        "[message truncated: 200000 bytes, over the 65536 a record may carry]"
    )


def test_a_caller_faster_than_the_server_waits_for_room_and_loses_nothing(api_url):
    flow_run, _ = make_runs(api_url)
    shipper = LogShipper(
        lambda: get_client(sync_client=True, api_url=api_url), buffer_size=10, full_wait=60
    )
    for n in range(500):
        shipper.put(record(flow_run, f"record {n}"))
    assert shipper.flush(timeout=60)
    shipper.close()
    assert shipper.dropped == 0
    logs = []
    while page := read_logs(api_url, flow_run, offset=len(logs)):
        logs += page
    assert [log.message for log in logs] == [f"record {n}" for n in range(500)]


def test_a_stuck_shipper_drops_new_records_and_says_so_in_the_run(api_url, capsys):
    """The shipper's client is held back: the buffer fills, a caller waits full_wait for room,
    then records are dropped without waiting; the run gets a warning record once unstuck."""
    flow_run, _ = make_runs(api_url)
    called, opened = threading.Event(), threading.Event()

    def slow_client() -> Any:
        called.set()
        opened.wait()
        return get_client(sync_client=True, api_url=api_url)

    shipper = LogShipper(slow_client, buffer_size=5, interval=60, full_wait=0.1)
    for n in range(5):
        shipper.put(record(flow_run, f"record {n}"))
    assert called.wait(30)  # the thread took those five and waits for its client
    for n in range(5, 13):
        shipper.put(record(flow_run, f"record {n}"))  # 5-9 fill the buffer again; 10-12 go
    assert shipper.dropped == 3
    opened.set()
    assert shipper.flush(timeout=30)
    shipper.close()
    logs = read_logs(api_url, flow_run)
    assert [log.message for log in logs[:10]] == [f"record {n}" for n in range(10)]
    assert logs[10].level == logging.WARNING and logs[10].name == "flowrpc.logging"
    assert logs[10].message.startswith("3 log records of this run were dropped")
    assert "the log buffer is full (5 records)" in capsys.readouterr().err


def record(flow_run: Any, message: str) -> dict[str, Any]:
    return {
        "name": "test",
        "level": 20,
        "message": message,
        "timestamp": datetime.now(UTC),
        "flow_run_id": flow_run.id,
    }


def test_records_of_a_deleted_run_are_dropped_and_the_others_kept(api_url, capsys):
    kept, _ = make_runs(api_url)
    deleted, _ = make_runs(api_url)
    shipper = LogShipper(lambda: get_client(sync_client=True, api_url=api_url), interval=60)
    for n in range(4):  # one batch: the interval is long and nothing asks for a flush
        shipper.put(record(kept, f"kept {n}"))
        shipper.put(record(deleted, f"lost {n}"))
    with get_client(sync_client=True, api_url=api_url) as client:
        client.delete_flow_run(deleted.id)
    assert shipper.flush(timeout=30)
    shipper.close()
    assert [log.message for log in read_logs(api_url, kept)] == [f"kept {n}" for n in range(4)]
    assert shipper.dropped == 4
    assert "4 log records dropped, the server refused them" in capsys.readouterr().err


def test_an_unreachable_server_loses_the_batch_after_retries(capsys):
    flow_id = "00000000-0000-0000-0000-000000000001"
    shipper = LogShipper(
        lambda: get_client(sync_client=True, api_url="127.0.0.1:1", retry_attempts=1, timeout=2),
        retry_delays=(0.0, 0.0),
    )
    shipper.put({"name": "n", "level": 20, "message": "m", "flow_run_id": flow_id})
    assert shipper.flush(timeout=60)
    shipper.close()
    assert shipper.dropped == 1
    assert "1 log records dropped, the server could not be reached" in capsys.readouterr().err


def test_records_left_at_exit_are_flushed(api_url):
    flow_run, task_run = make_runs(api_url)
    script = textwrap.dedent(
        f"""
        from flowrpc import get_client
        from flowrpc.context import TaskRunContext
        from flowrpc.logging import get_run_logger, run_logging

        with get_client(sync_client=True) as client:
            task_run = client.read_task_run({str(task_run.id)!r})
        context = TaskRunContext(task=None, task_run=task_run, log_prints=True)
        with context, run_logging(context):
            for n in range(300):
                get_run_logger().info("line %d", n)
            print("printed last")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    logs = []
    with get_client(sync_client=True, api_url=api_url) as client:
        while page := client.read_logs(
            LogFilter(flow_run_id=dict(any_=[flow_run.id])), offset=len(logs)
        ):
            logs += page
    assert [log.message for log in logs] == [f"line {n}" for n in range(300)] + ["printed last"]


def test_flush_logs_without_records_returns_at_once():
    assert flush_logs(timeout=0) is True


def test_tasks_in_threads_and_asyncio_tasks_log_to_their_own_runs(shipping):
    """Task runners run tasks in threads (or asyncio tasks) with a copy of the context."""
    flow_run, first = make_runs(shipping)
    with get_client(sync_client=True, api_url=shipping) as client:
        second = client.create_task_run(Named("extract"), flow_run.id, "1")

    def run_task(task_run: Any, text: str) -> None:
        context = TaskRunContext(task=Named("extract"), task_run=task_run, log_prints=True)
        with context, run_logging(context):
            print(text)
            get_run_logger().info(f"logged {text}")

    async def run_async_task(task_run: Any, text: str) -> None:
        await asyncio.sleep(0)
        run_task(task_run, text)

    flow_context = FlowRunContext(flow=Named("etl"), flow_run=flow_run)
    with flow_context, run_logging(flow_context):
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, run_task, task_run, text)
                for task_run, text in ((first, "thread one"), (second, "thread two"))
            ]
            for future in futures:
                future.result()

        async def both() -> None:
            await asyncio.gather(
                run_async_task(first, "async one"), run_async_task(second, "async two")
            )

        asyncio.run(both())
        print("the flow does not record prints")
    by_task = {}
    for log in read_logs(shipping, flow_run):
        by_task.setdefault(log.task_run_id, []).append(log.message)
    assert sorted(by_task[first.id]) == sorted(
        ["thread one", "logged thread one", "async one", "logged async one"]
    )
    assert sorted(by_task[second.id]) == sorted(
        ["thread two", "logged thread two", "async two", "logged async two"]
    )
    assert None not in by_task


def test_the_buffer_is_bounded_in_bytes_too(api_url):
    """Large records fill the buffer by weight before its count: the caller waits for room and
    nothing is lost while the server takes them."""
    flow_run, _ = make_runs(api_url)
    shipper = LogShipper(
        lambda: get_client(sync_client=True, api_url=api_url),
        buffer_bytes=200_000,
        interval=60,
        full_wait=60,
    )
    for n in range(40):
        shipper.put(record(flow_run, f"{n:02}" + "x" * 50_000))
        assert shipper._bytes <= 200_000 + 50_200  # at most one record past the bound
    assert shipper.flush(timeout=60)
    shipper.close()
    assert shipper.dropped == 0 and shipper._bytes == 0
    logs = []
    while page := read_logs(api_url, flow_run, offset=len(logs)):
        logs += page
    assert [log.message[:2] for log in logs] == [f"{n:02}" for n in range(40)]


def test_a_nul_character_is_written_out_so_every_database_keeps_the_record(shipping):
    flow_run, _ = make_runs(shipping)
    context = FlowRunContext(flow=Named("etl"), flow_run=flow_run)
    with context, run_logging(context):
        get_run_logger().info("binary \0 data")
    (log,) = read_logs(shipping, flow_run)
    assert log.message == "binary \\0 data"
