"""Which flow runs a command acts on: the filter flags `flow-run ls`, `cancel`, `delete` and
`history` share, and the times and durations they accept."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import typer

from flowrpc.cli.common import option, option_group
from flowrpc.schemas.filters import DeploymentFilter, FlowFilter, FlowRunFilter
from flowrpc.schemas.objects import StateType

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
TIME_HELP = (
    "an ISO time (UTC unless it says), 'now', or a span from now: '-1h' or '2d' in the past, "
    "'+30m' in the future (units s m h d w, combined as '1h30m')"
)


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '1h30m', '2d', '1w' as a timedelta (positive)."""
    spec = text.strip().lower()
    if not spec or _DURATION.sub("", spec):
        raise ValueError(f"{text!r} is not a span such as 30s, 15m, 1h30m, 2d or 1w")
    try:
        return timedelta(seconds=sum(float(n) * UNITS[unit] for n, unit in _DURATION.findall(spec)))
    except OverflowError:
        raise ValueError(f"{text!r} is too long a span") from None


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An absolute time (ISO 8601, UTC when it names no zone), 'now', or a span from now:
    unsigned or '-' spans are in the past (as 'since 2d' reads), '+' spans in the future."""
    now = now or datetime.now(UTC)
    spec = text.strip()
    if spec.lower() == "now":
        return now
    if spec[:1] in "+-" or (spec[:1].isdigit() and spec[-1:].lower() in UNITS):
        sign = 1 if spec.startswith("+") else -1
        try:
            span = parse_duration(spec.lstrip("+-"))
        except ValueError:
            pass  # maybe an ISO time after all
        else:
            try:
                return now + sign * span
            except OverflowError:
                raise ValueError(f"{text!r} is not a time: too far from now") from None
    try:
        moment = datetime.fromisoformat(spec)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give an ISO time (2026-12-01T10:00Z), 'now', "
            "or a span such as -1h, 2d or +30m"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def checked_time(text: str) -> str:
    """The option's text once parse_time accepts it: resolved later, against the one `now` of
    the command, so that '--since now --until +2h' spans exactly two hours."""
    parse_time(text)
    return text


FINAL_TYPES = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]


@dataclass(frozen=True)
class RunFilters:
    """The filter flags as given; every flag narrows the selection (AND), and the values of a
    repeated flag widen it (OR), except --tag, where a run must carry every tag given."""

    state: list[str] = field(default_factory=list)
    state_type: list[StateType] = field(default_factory=list)
    flow: list[str] = field(default_factory=list)
    deployment: list[str] = field(default_factory=list)
    tag: list[str] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def build(cls, **given: Any) -> RunFilters:
        """From the flags' values; relative times are taken from one `now`."""
        now = datetime.now(UTC)
        since, until = given.pop("since"), given.pop("until")
        return cls(
            **{name: values or [] for name, values in given.items()},
            since=parse_time(since, now) if since else None,
            until=parse_time(until, now) if until else None,
            now=now,
        )

    @property
    def given(self) -> bool:
        """Whether any flag narrows the selection."""
        return any(getattr(self, name) for name in self.__dataclass_fields__ if name != "now")

    def client_filters(
        self,
        ids: list[UUID] | None = None,
        exclude_types: list[StateType] | None = None,
        window: bool = True,
    ) -> dict[str, Any]:
        """The client's filter keyword arguments (flow_filter, flow_run_filter,
        deployment_filter) for these flags, the run ids given, and state types to leave out;
        window=False leaves --since/--until out (history takes them as its window)."""
        runs: dict[str, Any] = {}
        if ids:
            runs["id"] = {"any_": ids}
        state: dict[str, Any] = {}
        if self.state:
            state["name"] = {"any_": self.state}
        if self.state_type:
            # Prefect ignores a type filter with both any_ and not_any_: leave them out here.
            kept = [kind for kind in self.state_type if kind not in (exclude_types or [])]
            state["type"] = {"any_": kept}
        elif exclude_types:
            state["type"] = {"not_any_": exclude_types}
        if state:
            runs["state"] = state
        if self.tag:
            runs["tags"] = {"all_": self.tag}
        if window and (self.since or self.until):
            runs["expected_start_time"] = {"after_": self.since, "before_": self.until}
        return {
            "flow_filter": FlowFilter(name={"any_": self.flow}) if self.flow else None,
            "flow_run_filter": FlowRunFilter.model_validate(runs) if runs else None,
            "deployment_filter": (
                DeploymentFilter(name={"any_": self.deployment}) if self.deployment else None
            ),
        }


FILTERS = "Select runs"


def _many(help_text: str, metavar: str, kind: Any = str, **extra: Any) -> Any:
    return Annotated[
        list[kind] | None,
        typer.Option(
            help=help_text, metavar=metavar, rich_help_panel=FILTERS, show_default=False, **extra
        ),
    ]


def _time(help_text: str) -> Any:
    return Annotated[
        str | None,
        typer.Option(
            help=f"{help_text}: {TIME_HELP}",
            parser=checked_time,
            metavar="TIME",
            rich_help_panel=FILTERS,
            show_default=False,
        ),
    ]


with_run_filters = option_group(
    "filters",
    [
        option("state", _many("state name, e.g. Late or Completed (repeatable)", "NAME")),
        option(
            "state_type",
            _many(
                "state type: scheduled, pending, running, completed, failed, cancelled, "
                "crashed, paused, cancelling (repeatable)",
                "TYPE",
                StateType,
                case_sensitive=False,
            ),
        ),
        option("flow", _many("flow name (repeatable)", "NAME")),
        option("deployment", _many("deployment name (repeatable)", "NAME")),
        option("tag", _many("a tag the run carries (repeatable: all of them)", "TAG")),
        option("since", _time("expected to start at or after")),
        option("until", _time("expected to start at or before")),
    ],
    RunFilters.build,
)
