"""Rules that flow-run and task-run policies share."""

from __future__ import annotations

from .engine import Context, Rule
from .records import (
    MAX_RETRY_DELAY_SECONDS,
    MICROS_PER_SECOND,
    FlowRunPolicy,
    Micros,
    StateType,
    TaskRunPolicy,
)


class CopyScheduledTime(Rule):
    """A claimed run remembers when it was meant to start (WaitForScheduledTime reads it)."""

    FROM = frozenset({StateType.SCHEDULED})
    TO = frozenset({StateType.PENDING})

    def before(self, ctx: Context) -> None:
        details = ctx.proposed.details
        if details.scheduled_time is None:
            details.scheduled_time = ctx.initial.details.scheduled_time


class WaitForScheduledTime(Rule):
    """A run may not start before its scheduled time: tell the client how long to wait."""

    FROM = frozenset({StateType.SCHEDULED, StateType.PENDING})
    TO = frozenset({StateType.RUNNING})

    def before(self, ctx: Context) -> None:
        scheduled_time = ctx.initial.details.scheduled_time
        if scheduled_time is None:
            return
        delay_seconds = round((scheduled_time - ctx.now) / MICROS_PER_SECOND)
        if delay_seconds > 0:
            ctx.wait(delay_seconds, "Scheduled time is in the future")


def effective_retries(policy: FlowRunPolicy | TaskRunPolicy) -> int | None:
    """`retries`, or the deprecated `max_retries` when retries is unset and it is non-zero."""
    if policy.retries is not None:
        return policy.retries
    return policy.max_retries or None


def effective_retry_delay(policy: FlowRunPolicy | TaskRunPolicy) -> float | list[int] | None:
    """`retry_delay`, or the deprecated `retry_delay_seconds` when unset and non-zero."""
    if policy.retry_delay is not None:
        return policy.retry_delay
    return policy.retry_delay_seconds or None


def retry_time(now: Micros, delay_seconds: float) -> Micros:
    """When a retry `delay_seconds` from now is due. The delay is clamped to
    0..MAX_RETRY_DELAY_SECONDS (NaN counts as 0): rows stored before the API bounded policies
    may hold any number, and a time must fit its BIGINT column."""
    if not delay_seconds > 0:
        return now
    return now + round(min(delay_seconds, MAX_RETRY_DELAY_SECONDS) * MICROS_PER_SECOND)
