"""How objects look in a terminal: times, durations, states in their colours, tables, bars."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.table import Table
from rich.text import Text

STATE_COLOURS = {
    "SCHEDULED": "yellow",
    "PENDING": "bright_black",
    "RUNNING": "blue",
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "magenta",
    "CANCELLED": "bright_black",
    "CANCELLING": "bright_black",
    "PAUSED": "cyan",
}
BAR_WIDTH = 40
WRAPPING = {"NAME", "FLOW", "TAGS", "MESSAGE"}


def when(moment: datetime | None) -> str:
    """A time in UTC to the second, or '-'."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def span(duration: timedelta | None) -> str:
    """A duration as 6.2s, 4m05s, 1h or 2d3h: the units that are not zero."""
    if duration is None:
        return "-"
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    parts = []
    rest = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def state_text(state_type: Any, name: str | None) -> Text:
    """A state's name in the colour of its type."""
    kind = str(state_type.value if hasattr(state_type, "value") else state_type or "")
    return Text(name or kind.title() or "-", style=STATE_COLOURS.get(kind, ""))


def table(*columns: str, title: str | None = None) -> Table:
    """A table with these column headers: names, tags and messages wrap when the terminal is
    narrow, the other columns (ids, states, times) keep to one line."""
    result = Table(title=title, title_justify="left", header_style="bold", box=None)
    for column in columns:
        wraps = column in WRAPPING
        result.add_column(column, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    return result


def fields(rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of labelled values."""
    result = Table(box=None, show_header=False)
    result.add_column(style="bold", no_wrap=True)
    result.add_column(overflow="fold")
    for label, value in rows:
        result.add_row(label, value if isinstance(value, Text) else str(value))
    return result


def bars(rows: Sequence[tuple[Text, int]]) -> Table:
    """A horizontal bar chart: one labelled bar per row, lengths relative to the largest."""
    largest = max((count for _, count in rows), default=0) or 1
    result = Table(box=None, show_header=False)
    result.add_column(no_wrap=True)
    result.add_column(no_wrap=True)
    result.add_column(justify="right", no_wrap=True)
    for label, count in rows:
        length = max(1, round(BAR_WIDTH * count / largest)) if count else 0
        result.add_row(label, Text("█" * length, style=label.style), str(count))
    return result
