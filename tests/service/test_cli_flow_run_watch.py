"""`flowrpc flow-run watch` as a real process against a real server: the snapshot, the marker,
then a line per state change (JSON with cursors, or text in a pipe), the filter flags, resuming
from a cursor, Ctrl-C, and an expired cursor."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest
from cli_support import Streaming, flowrpc, serve

from flowrpc import get_client
from flowrpc.client.errors import FlowRPCError
from flowrpc.states import Completed, Pending, Running

ETL, OTHER = SimpleNamespace(name="etl"), SimpleNamespace(name="other")


@pytest.fixture
def address(tmp_path):
    yield from serve(tmp_path)


def until(watcher: Streaming, kind: str) -> list[dict[str, Any]]:
    """The JSON events it prints up to the first of this type, that one included."""
    events = []
    while not events or events[-1]["type"] != kind:
        events += watcher.take_json(1)
    return events


def changes(watcher: Streaming, count: int) -> list[dict[str, Any]]:
    """Its next `count` change events (progress events skipped)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        found += [event for event in watcher.take_json(1) if event["type"] == "change"]
    return found


def stopped(watcher: Streaming) -> list[str]:
    """Ctrl-C: it exits 0 without a traceback; the lines it printed after the last take."""
    watcher.process.send_signal(signal.SIGINT)
    status, rest, errors = watcher.finish()
    assert status == 0 and "Traceback" not in errors, errors
    return rest


def test_watch_prints_the_snapshot_then_each_change_and_resumes_from_a_cursor(address):
    with get_client(sync_client=True, api_url=address) as client:
        before = client.create_flow_run(ETL, state=Pending())
        watcher = Streaming(address, "flow-run", "watch", "--flow", "etl", "--json")
        lines = None
        try:
            start = until(watcher, "marker")
            # In a pipe, without --json, from the marker on (so it misses nothing).
            marker = start[-1]["cursor"]
            lines = Streaming(address, "flow-run", "watch", "--flow", "etl", "--cursor", marker)
            assert [(e["type"], e.get("flow_run", {}).get("id")) for e in start] == [
                ("snapshot", str(before.id)),
                ("marker", None),
            ]
            client.set_flow_run_state(before.id, Running())
            client.create_flow_run(OTHER, state=Pending())  # another flow: not shown
            created = client.create_flow_run(ETL, state=Pending())
            client.set_flow_run_state(before.id, Completed())
            seen = changes(watcher, 3)
            assert [
                (e["flow_run"]["id"], (e["old_state"] or {}).get("name"), e["state"]["name"])
                for e in seen
            ] == [
                (str(before.id), "Pending", "Running"),
                (str(created.id), None, "Pending"),
                (str(before.id), "Running", "Completed"),
            ]
            assert all(e["flow_run"]["flow_id"] == str(before.flow_id) for e in seen)
            cursors = [e["cursor"] for e in seen]
            assert len(set(cursors)) == 3 and all(cursors)
            assert all(json.loads(line)["type"] == "progress" for line in stopped(watcher))

            # A line per change: time, flow, name, id, old -> new (old unknown at first).
            text = lines.take(3)
            assert [line.split()[2:] for line in text] == [
                ["etl", before.name, str(before.id), "-", "->", "Running"],
                ["etl", created.name, str(created.id), "-", "->", "Pending"],
                ["etl", before.name, str(before.id), "Running", "->", "Completed"],
            ]
            assert stopped(lines) == []

            # Changes made while nobody watches: a watch resumed from the second cursor gets
            # the third change, then those, nothing twice and no snapshot.
            client.set_flow_run_state(created.id, Running())
            resumed = Streaming(
                address, "flow-run", "watch", "--flow", "etl", "--json", "--cursor", cursors[1]
            )
            try:
                again = changes(resumed, 2)
                assert [e["cursor"] for e in again][:1] == cursors[2:]
                assert (again[1]["flow_run"]["id"], again[1]["state"]["name"]) == (
                    str(created.id),
                    "Running",
                )
                assert again[1]["old_state"] is None  # this watch had not seen the run
                stopped(resumed)
            finally:
                resumed.stop()
        finally:
            watcher.stop()
            if lines is not None:
                lines.stop()


def test_an_expired_cursor_exits_1_with_the_servers_message(tmp_path):
    for address in serve(tmp_path, watch_retention_seconds=0.05, watch_prune_loop_seconds=0.1):
        with get_client(sync_client=True, api_url=address) as client:
            marker = next(
                event.cursor
                for event in client.watch_flow_runs(snapshot=False)
                if event.type == "marker"
            )
            for _ in range(3):
                client.create_flow_run(ETL, state=Pending())
        asyncio.run(_until_expired(address, marker))
        expired = flowrpc(address, "flow-run", "watch", "--json", "--cursor", marker)
        assert expired.exit_code == 1 and expired.stdout == ""
        assert expired.stderr.startswith("flowrpc: error: ")
        assert "cursor" in expired.stderr and expired.stderr.count("\n") == 1


async def _until_expired(address: str, cursor: str) -> None:
    """Returns once the server refuses the cursor as expired (its leader pruned the changes)."""
    async with get_client(api_url=address) as client:

        async def resumed() -> None:
            async for _ in client.watch_flow_runs(since=cursor):
                pass

        for _ in range(300):
            try:
                await asyncio.wait_for(resumed(), 0.5)
            except FlowRPCError as error:
                assert error.reason == "WATCH_CURSOR_EXPIRED"
                return
            except TimeoutError:
                pass
        raise AssertionError("the cursor never expired")


def test_in_a_terminal_watch_is_a_live_table(address):
    with get_client(sync_client=True, api_url=address) as client:
        run = client.create_flow_run(ETL, state=Pending())
        with Terminal(address, "flow-run", "watch", "--state-type", "running") as terminal:
            terminal.until("resume with --cursor")  # the marker: it watches
            client.set_flow_run_state(run.id, Running())
            client.set_flow_run_state(run.id, Completed())  # no longer selected: not shown
            later = client.create_flow_run(ETL, state=Running())
            screen = " ".join(terminal.until(str(later.id)).split())
            assert "TIME (UTC) FLOW NAME ID CHANGE" in screen
            # Its Pending was not selected (not in the snapshot): the old state is unknown.
            assert f"etl {run.name} {run.id} - -> Running" in screen
            assert "Completed" not in screen
            terminal.process.send_signal(signal.SIGINT)
            assert terminal.process.wait(timeout=60) == 0


class Terminal:
    """`flowrpc ARGS` as a real process whose stdout is a terminal (a pseudo-terminal)."""

    def __init__(self, address: str, *args: str) -> None:
        environment = {key: value for key, value in os.environ.items() if "FLOWRPC_" not in key}
        leader, follower = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowrpc.cli", *args],
            stdout=follower,
            stderr=subprocess.DEVNULL,
            env={**environment, "FLOWRPC_API_URL": address, "COLUMNS": "200", "LINES": "30"},
        )
        os.close(follower)
        self.leader = leader
        self.output = ""

    def until(self, text: str) -> str:
        """What the terminal showed (colours left out) once `text` shows in it; fails after a
        minute."""
        deadline = time.monotonic() + 60
        while text not in ANSI.sub("", self.output):
            assert time.monotonic() < deadline, f"{text!r} not shown: {self.output!r}"
            if select.select([self.leader], [], [], 1)[0]:
                self.output += os.read(self.leader, 65536).decode(errors="replace")
        return ANSI.sub("", self.output)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.leader)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
