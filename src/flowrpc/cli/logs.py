"""The log records `flowrpc flow-run logs` prints: read once, or followed while the run goes on.

Records are listed by (timestamp, id), and a timestamp is the writer's clock, not the time the
server stored the record: the SDK ships its records in batches, so a record can arrive after
newer ones were already printed. A follower therefore asks again for the last LOOKBACK of
records on every poll and skips the ids it has printed: a record stored up to LOOKBACK late
still shows, once, and the cost of a poll stays bounded by the records of that window.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from rich.text import Text

from flowrpc.cli.common import console
from flowrpc.schemas.filters import LogFilter, TaskRunFilter
from flowrpc.schemas.objects import Log
from flowrpc.schemas.sorting import LogSort

POLL_SECONDS = 1.0  # how often a follower asks for new records and the run's state
LOOKBACK = timedelta(seconds=30)  # how late a record may be stored and still be printed
# How long after its final state a run's last records may still arrive: the SDK sets the
# final state, then sends the records it still holds (within a second, its shipping interval).
SETTLE = timedelta(seconds=3)
PAGE = 200
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
LEVEL_STYLES = {10: "bright_black", 30: "yellow", 40: "red", 50: "bold red"}


def parse_level(text: str) -> int:
    """'info', 'WARNING' or a number such as 25: the lowest level to show."""
    spec = text.strip()
    if spec.isdigit():
        return int(spec)
    try:
        return LEVELS[spec.lower()]
    except KeyError:
        raise ValueError(
            f"{text!r} is not a level: give {', '.join(LEVELS)} or a number (20 is info)"
        ) from None


def _key(record: Log) -> tuple[datetime, UUID]:
    """Where a record stands in the server's order."""
    return (record.timestamp, record.id)


class RunLogs:
    """A flow run's records, read in order: `first()` once, then `more()` for those stored
    since, each record exactly once."""

    def __init__(
        self, client: Any, flow_run_id: UUID, level: int | None, task_run_id: UUID | None
    ) -> None:
        self.client = client
        self.filters: dict[str, Any] = {"flow_run_id": {"any_": [flow_run_id]}}
        if level is not None:
            self.filters["level"] = {"ge_": level}
        if task_run_id is not None:
            self.filters["task_run_id"] = {"any_": [task_run_id]}
        self.printed: dict[UUID, datetime] = {}  # ids printed within LOOKBACK of the newest
        self.newest: datetime | None = None
        self.floor: tuple[datetime, UUID] | None = None  # older records were left out on purpose

    def first(self, limit: int | None) -> list[Log]:
        """The run's records so far, oldest first; with `limit`, only the newest `limit`."""
        if limit is None:
            return self._taken(self.client.iter_logs(self._filter(), page_size=PAGE))
        pages = self.client.iter_logs(
            self._filter(), sort=LogSort.TIMESTAMP_DESC, page_size=min(limit, PAGE)
        )
        newest = list(itertools.islice(pages, limit))[::-1]
        if len(newest) == limit:
            self.floor = _key(newest[0])
        return self._taken(newest)

    def more(self) -> list[Log]:
        """The records stored since the last call, in the server's order."""
        since = None if self.newest is None else self.newest - LOOKBACK
        found = self.client.iter_logs(self._filter(since), page_size=PAGE)
        return self._taken(
            record
            for record in found
            if record.id not in self.printed and (self.floor is None or _key(record) > self.floor)
        )

    def _filter(self, since: datetime | None = None) -> LogFilter:
        timestamp = {} if since is None else {"timestamp": {"after_": since}}
        return LogFilter.model_validate({**self.filters, **timestamp})

    def _taken(self, records: Iterable[Log]) -> list[Log]:
        """These records, remembered as printed; ids older than the lookback are forgotten
        (no later poll asks for them)."""
        taken = list(records)
        for record in taken:
            self.printed[record.id] = record.timestamp
            if self.newest is None or record.timestamp > self.newest:
                self.newest = record.timestamp
        if self.newest is not None:
            oldest_asked = self.newest - LOOKBACK
            self.printed = {i: t for i, t in self.printed.items() if t >= oldest_asked}
        return taken


def follow(client: Any, flow_run_id: UUID, logs: RunLogs, show: Callable[[list[Log]], None]):
    """Shows new records every POLL_SECONDS until the run is final and settled: its final
    state is SETTLE old, so the records its SDK still held have arrived, and were read after."""
    while True:
        run = client.read_flow_run(flow_run_id)
        settled = run.state is not None and run.state.is_final() and _age(run.state) >= SETTLE
        show(logs.more())
        if settled:
            return
        time.sleep(POLL_SECONDS)


def _age(state: Any) -> timedelta:
    # The server's clock against ours: a skew of a few seconds only shortens or stretches the wait.
    return datetime.now(UTC) - state.timestamp


class Printer:
    """Prints records as lines (time, level, task run name or "flow", message), or as JSON
    Lines, flushing each batch so a pipe sees it at once."""

    def __init__(self, client: Any, json_output: bool) -> None:
        self.client = client
        self.json_output = json_output
        self.task_runs: dict[UUID, str] = {}
        self.out = console()

    def __call__(self, records: list[Log]) -> None:
        if self.json_output:
            for record in records:
                print(json.dumps(record.model_dump(mode="json")), flush=True)
            return
        self._learn_names({r.task_run_id for r in records if r.task_run_id} - self.task_runs.keys())
        for record in records:
            self.out.print(self._line(record), soft_wrap=True)

    def _line(self, record: Log) -> Text:
        moment = record.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        source = self.task_runs.get(record.task_run_id, "-") if record.task_run_id else "flow"
        level = logging.getLevelName(record.level)
        style = LEVEL_STYLES.get(min(record.level // 10 * 10, 50), "")
        line = Text(f"{moment}  ")
        line.append(f"{level:<8}", style=style)
        line.append(f"  {source}  ")
        line.append(record.message, style=style if record.level >= 40 else "")
        return line

    def _learn_names(self, task_run_ids: set[UUID]) -> None:
        wanted = list(task_run_ids)
        for start in range(0, len(wanted), PAGE):
            chunk = TaskRunFilter(id={"any_": wanted[start : start + PAGE]})
            for task_run in self.client.read_task_runs(task_run_filter=chunk, limit=PAGE):
                self.task_runs[task_run.id] = task_run.name
