"""The times and spans the CLI's --since, --until and --interval accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flowrpc.cli.selection import parse_duration, parse_time

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),  # unsigned: in the past, as "since 2d" reads
        ("+30m", NOW + timedelta(minutes=30)),
        ("-1h30m", NOW - timedelta(minutes=90)),
        ("1w", NOW - timedelta(weeks=1)),
        ("-0.5h", NOW - timedelta(minutes=30)),
        ("2026-11-30T10:00:00Z", datetime(2026, 11, 30, 10, tzinfo=UTC)),
        ("2026-11-30 10:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
        (
            "2026-11-30T10:00+02:00",
            datetime(2026, 11, 30, 10, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_times(text: str, expected: datetime):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "-1y", "1h-", "2026-13-01", "h"])
def test_what_is_not_a_time_says_what_is(text: str):
    with pytest.raises(ValueError, match="is not a time: give an ISO time"):
        parse_time(text, NOW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("1W", 604800)],
)
def test_spans(text: str, seconds: int):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "1y", "-1h", "1h x"])
def test_what_is_not_a_span(text: str):
    with pytest.raises(ValueError, match="is not a span"):
        parse_duration(text)


def test_spans_too_long_for_a_time_are_errors_not_crashes():
    with pytest.raises(ValueError, match="is too long a span"):
        parse_duration("1" + "0" * 30 + "w")
    with pytest.raises(ValueError, match="too far from now"):
        parse_time("-99999999d", NOW)
