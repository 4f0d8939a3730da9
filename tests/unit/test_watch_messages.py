"""What a live WatchFlowRuns stream sends for the hub's stretches in its queue: the messages the
hub made once for every watcher with the filter when it can, the changes put together anew
when the stretch starts at or before the watcher's cursor or several stretches wait."""

from __future__ import annotations

from flowrpc.server.watch import OVERFLOW, _Cursor, _field, _messages, _Stretch, _Subscription
from flowrpc.v1 import flow_run_service_pb2 as fr


def stretch(*positions: int) -> _Stretch:
    """A stretch of changes at these positions, each named by its cursor."""
    return _Stretch(
        [(p, _field(1, fr.FlowRunChange(cursor=str(p)).SerializeToString())) for p in positions]
    )


def subscribed(buffered: int) -> _Subscription:
    return _Subscription(b"{}", None, start=0, limit=100, buffered=buffered)


def sent(messages: list[bytes]) -> list[str]:
    """The cursors of the changes the messages carry, in order."""
    decoded = [fr.WatchFlowRunsResponse.FromString(message) for message in messages]
    return [change.cursor for message in decoded for change in message.changes.changes]


def test_a_stretch_after_the_cursor_goes_as_the_hub_made_it_to_every_watcher():
    shared = stretch(11, 12, 13)
    first, second = subscribed(3), subscribed(3)
    at_first, at_second = _Cursor(10), _Cursor(10)
    messages = _messages([(13, shared)], first, at_first)
    assert messages is _messages([(13, shared)], second, at_second)
    assert sent(messages) == ["11", "12", "13"]
    assert at_first.position == at_second.position == 13
    assert first.buffered == second.buffered == 0


def test_a_watch_that_starts_inside_the_stretch_gets_only_the_later_changes():
    at = _Cursor(12)  # the watch's marker: changes up to 12 committed before it
    assert sent(_messages([(14, stretch(11, 12, 13, 14))], subscribed(4), at)) == ["13", "14"]
    assert at.position == 14


def test_stretches_that_waited_together_go_in_one_message():
    subscription, at = subscribed(3), _Cursor(10)
    items = [(12, stretch(11, 12)), (13, stretch(13))]
    messages = _messages(items, subscription, at)
    assert len(messages) == 1 and sent(messages) == ["11", "12", "13"]
    assert at.position == 13 and subscription.buffered == 0


def test_what_came_before_an_overflow_is_sent():
    at = _Cursor(10)
    assert sent(_messages([(12, stretch(11, 12)), OVERFLOW], subscribed(2), at)) == ["11", "12"]
    assert at.position == 12
