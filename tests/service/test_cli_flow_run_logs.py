"""`flowrpc flow-run logs` against a real server: in-process for a run's records so far, as a
real process for --follow (records written while it follows, the run finished, Ctrl-C)."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from cli_support import Streaming, flowrpc, serve

from flowrpc import get_client
from flowrpc.states import Completed, Running

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def address(tmp_path):
    yield from serve(tmp_path)


def record(run_id: Any, message: str, at: datetime, level: int = 20, task_run_id: Any = None):
    return {
        "flow_run_id": run_id,
        "task_run_id": task_run_id,
        "name": "flowrpc.test",
        "level": level,
        "message": message,
        "timestamp": at,
    }


def a_run(address: str, *states: Any) -> Any:
    with get_client(sync_client=True, api_url=address) as client:
        run = client.create_flow_run(SimpleNamespace(name="etl"))
        for state in states:
            assert client.set_flow_run_state(run.id, state).status == "ACCEPT"
        return run


def messages(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [json.loads(line)["message"] for line in result.stdout.splitlines()]


def test_logs_prints_the_records_oldest_first_with_their_task_runs(address):
    run, other = a_run(address), a_run(address)
    with get_client(sync_client=True, api_url=address) as client:
        extract = client.create_task_run(SimpleNamespace(name="extract"), run.id, "0")
        # Written out of order: the command shows them by timestamp.
        client.create_logs(
            [
                record(run.id, "rows read", T0 + timedelta(seconds=2), 20, extract.id),
                record(run.id, "starting", T0),
                record(run.id, "disk [bold]full[/]", T0 + timedelta(seconds=3), 40),
                record(run.id, "details", T0 + timedelta(seconds=1), 10, extract.id),
                record(other.id, "another run's", T0),
            ]
        )
    table = flowrpc(address, "flow-run", "logs", str(run.id))
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines() == [
        "2026-01-01 12:00:00.000  INFO      flow  starting",
        f"2026-01-01 12:00:01.000  DEBUG     {extract.name}  details",
        f"2026-01-01 12:00:02.000  INFO      {extract.name}  rows read",
        "2026-01-01 12:00:03.000  ERROR     flow  disk [bold]full[/]",
    ]

    def logs(*flags: str) -> list[str]:
        return messages(flowrpc(address, "flow-run", "logs", str(run.id), "--json", *flags))

    assert logs() == ["starting", "details", "rows read", "disk [bold]full[/]"]
    assert logs("--level", "info") == ["starting", "rows read", "disk [bold]full[/]"]
    assert logs("--level", "WARNING") == logs("--level", "40") == ["disk [bold]full[/]"]
    assert logs("--task-run", str(extract.id)) == ["details", "rows read"]
    assert logs("--limit", "2") == ["rows read", "disk [bold]full[/]"]
    assert logs("--limit", "9") == logs()
    [first] = [
        json.loads(line)
        for line in flowrpc(address, "flow-run", "logs", str(run.id), "--json").stdout.splitlines()
    ][:1]
    assert first["flow_run_id"] == str(run.id) and first["level"] == 20
    assert first["timestamp"].startswith("2026-01-01T12:00:00")


def test_logs_pages_through_many_records(address):
    run = a_run(address)
    written = [record(run.id, f"line {n}", T0 + timedelta(milliseconds=n)) for n in range(450)]
    with get_client(sync_client=True, api_url=address) as client:
        client.create_logs(written)
    assert logs_of(address, run.id) == [r["message"] for r in written]
    newest = messages(flowrpc(address, "flow-run", "logs", str(run.id), "--json", "--limit", "205"))
    assert newest == [r["message"] for r in written[-205:]]


def logs_of(address: str, run_id: Any, *flags: str) -> list[str]:
    return messages(flowrpc(address, "flow-run", "logs", str(run_id), "--json", *flags))


def test_unknown_runs_and_bad_flags_are_one_line(address):
    run, other = a_run(address), a_run(address)
    with get_client(sync_client=True, api_url=address) as client:
        elsewhere = client.create_task_run(SimpleNamespace(name="t"), other.id, "0")
    unknown = flowrpc(address, "flow-run", "logs", "00000000-0000-7000-8000-000000000000")
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("flowrpc: error: Flow run '00000000-")
    assert unknown.stderr.count("\n") == 1

    no_task_run = flowrpc(
        address,
        "flow-run",
        "logs",
        str(run.id),
        "--task-run",
        "00000000-0000-7000-8000-000000000000",
    )
    assert no_task_run.exit_code == 1 and no_task_run.stderr.count("\n") == 1
    assert no_task_run.stderr.startswith("flowrpc: error: Task run '00000000-")

    not_its = flowrpc(address, "flow-run", "logs", str(run.id), "--task-run", str(elsewhere.id))
    assert not_its.exit_code == 1
    assert not_its.stderr == (
        f"flowrpc: error: task run {elsewhere.id} belongs to flow run {other.id}, not {run.id}\n"
    )

    loud = flowrpc(address, "flow-run", "logs", str(run.id), "--level", "loud")
    assert loud.exit_code == 2 and "'loud' is not a level" in loud.stderr
    assert flowrpc(address, "flow-run", "logs", str(run.id), "--limit", "0").exit_code == 2


def test_follow_prints_new_records_once_until_the_run_is_final(address):
    run = a_run(address, Running())
    now = datetime.now(UTC)
    written = [record(run.id, f"early {n}", now - timedelta(seconds=3 - n)) for n in range(3)]
    with get_client(sync_client=True, api_url=address) as client:
        client.create_logs(written)
        follower = Streaming(address, "flow-run", "logs", str(run.id), "-f", "--json")
        try:
            seen = follower.take_json(3)
            assert [r["message"] for r in seen] == ["early 0", "early 1", "early 2"]
            newest = datetime.fromisoformat(seen[-1]["timestamp"])
            # A record stored late, older than the newest one printed (as batches arrive), and
            # two new ones, in several calls while it polls.
            more = [
                record(run.id, "new 0", datetime.now(UTC)),
                record(run.id, "late", newest - timedelta(seconds=5)),
                record(run.id, "new 1", datetime.now(UTC) + timedelta(milliseconds=1)),
            ]
            for each in more:
                client.create_logs([each])
            seen += follower.take_json(3)
            assert {r["message"] for r in seen[3:]} == {"new 0", "late", "new 1"}
            assert client.set_flow_run_state(run.id, Completed()).status == "ACCEPT"
            # The SDK sends the records it still holds once the run is final, up to its
            # shipping interval (1 s) later: they show too.
            time.sleep(1.5)
            client.create_logs([record(run.id, "last", datetime.now(UTC))])
            status, rest, errors = follower.finish()
        finally:
            follower.stop()
    assert status == 0, errors
    seen += [json.loads(line) for line in rest]
    assert [r["message"] for r in seen[6:]] == ["last"]
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)) == 7  # each once, none missing
    with get_client(sync_client=True, api_url=address) as client:
        assert set(ids) == {str(log.id) for log in client.read_logs()}


def test_follow_stops_at_ctrl_c_with_status_0(address):
    run = a_run(address, Running())
    with get_client(sync_client=True, api_url=address) as client:
        client.create_logs([record(run.id, "working", datetime.now(UTC))])
    follower = Streaming(address, "flow-run", "logs", str(run.id), "-f", "--json")
    try:
        assert [r["message"] for r in follower.take_json(1)] == ["working"]
        follower.process.send_signal(signal.SIGINT)
        status, rest, errors = follower.finish()
    finally:
        follower.stop()
    assert (status, rest) == (0, [])
    assert "Traceback" not in errors


def test_follow_of_a_finished_run_prints_its_records_and_exits(address):
    run = a_run(address, Running(), Completed())
    with get_client(sync_client=True, api_url=address) as client:
        client.create_logs([record(run.id, "done", T0)])
    assert logs_of(address, run.id, "--follow") == ["done"]
