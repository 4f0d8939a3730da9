"""What `flowrpc flow-run watch` shows: state changes as a live table in a terminal, as lines in
a pipe, or one JSON object per event and line (`--json`, with the cursors to resume from).

The stream says each change's new state; the old one is the run's state as this watch last saw
it (in the snapshot or an earlier change), or unknown ("-", null) for a run it had not seen yet.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from rich.console import Group
from rich.live import Live
from rich.text import Text

from flowrpc.cli import render
from flowrpc.cli.common import console
from flowrpc.cli.flow import flow_names

COLUMNS = ("TIME (UTC)", "FLOW", "NAME", "ID", "CHANGE")
ROWS_AT_LEAST = 5
RUNS_REMEMBERED = 100_000  # old states kept for the runs seen last; older ones show as unknown


class Watch:
    """Shows a watch's events; remembers each run's last state and each flow's name."""

    def __init__(self, client: Any, json_output: bool) -> None:
        self.client = client
        self.json_output = json_output
        self.states: OrderedDict[UUID, tuple[str, str]] = OrderedDict()  # id: (type, name)
        self.flows: dict[UUID, str] = {}
        self.out = console()

    def show(self, events: Iterable[Any]) -> None:
        """Shows every event until the stream ends (or Ctrl-C, which the caller catches)."""
        if self.json_output:
            for event in events:
                print(json.dumps(self._json(event)), flush=True)
        elif self.out.is_terminal:
            self._live(events)
        else:
            for event in events:
                if event.type == "change":
                    self.out.print(Text("  ").join(self._row(event)), soft_wrap=True)
                else:
                    self._remember(event)

    def _json(self, event: Any) -> dict[str, Any]:
        # Fields the event type has not (a marker's flow_run) are left out; a run's are all kept.
        data = {
            key: value for key, value in event.model_dump(mode="json").items() if value is not None
        }
        if event.type == "change":
            old = self.states.get(event.flow_run.id)
            data["old_state"] = None if old is None else {"type": old[0], "name": old[1]}
        self._remember(event)
        return data

    def _remember(self, event: Any) -> None:
        run = event.flow_run
        if run is not None and run.state_type is not None:
            self.states[run.id] = (run.state_type.value, run.state_name or "")
            self.states.move_to_end(run.id)
            if len(self.states) > RUNS_REMEMBERED:
                self.states.popitem(last=False)

    def _row(self, event: Any) -> list[Text]:
        """The change's cells: time, flow, run name, run id, old -> new state."""
        run = event.flow_run
        if run.flow_id not in self.flows:
            self.flows.update(flow_names(self.client, [run.flow_id]))
        old = self.states.get(run.id)
        change = Text()
        change.append_text(render.state_text(*old) if old else Text("-"))
        change.append(" -> ")
        change.append_text(render.state_text(run.state_type, run.state_name))
        self._remember(event)
        state = event.state or run.state
        return [
            Text(render.when(state.timestamp if state else None)),
            Text(self.flows.get(run.flow_id, str(run.flow_id))),
            Text(run.name),
            Text(str(run.id)),
            change,
        ]

    def _live(self, events: Iterable[Any]) -> None:
        """A table of the latest changes, as many as the terminal holds, redrawn as they come."""
        rows: deque[list[Text]] = deque(maxlen=max(ROWS_AT_LEAST, self.out.height - 4))
        status = Text("waiting for the runs selected...", style="bright_black")
        snapshot = 0
        with Live(self._view(rows, status), console=self.out, auto_refresh=False) as live:
            for event in events:
                if event.type == "change":
                    rows.append(self._row(event))
                else:
                    self._remember(event)
                snapshot += event.type == "snapshot"
                if event.type == "snapshot":
                    continue  # redrawn at the marker
                if event.cursor:
                    at_start = f"{snapshot} runs selected at start; " if snapshot else ""
                    status = Text(
                        f"{at_start}resume with --cursor {event.cursor} (Ctrl-C to stop)",
                        style="bright_black",
                    )
                live.update(self._view(rows, status), refresh=True)

    def _view(self, rows: Iterable[list[Text]], status: Text) -> Group:
        table = render.table(*COLUMNS)
        for row in rows:
            table.add_row(*row)
        return Group(table, status)
