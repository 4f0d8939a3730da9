"""`flowrpc flow-run ls|inspect|cancel|delete|history`, all through the Python client.

Each command is one function; a new one (say `watch` or `logs`) is one more function with
`@app.command()`, `@with_connection` and, when it selects runs, `@with_run_filters`.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from flowrpc.cli import render
from flowrpc.cli.common import (
    USAGE,
    Connection,
    console,
    fail,
    print_json,
    with_connection,
)
from flowrpc.cli.flow import PAGE, Json, flow_names
from flowrpc.cli.selection import (
    FINAL_TYPES,
    RunFilters,
    parse_duration,
    with_run_filters,
)
from flowrpc.schemas.filters import FlowRunFilter
from flowrpc.schemas.objects import StateType
from flowrpc.schemas.sorting import FlowRunSort
from flowrpc.states import Cancelling

app = typer.Typer(name="flow-run", help="Flow runs.", no_args_is_help=True)

RunId = Annotated[UUID, typer.Argument(help="the flow run's id", metavar="ID", show_default=False)]
RunIds = Annotated[
    list[UUID] | None,
    typer.Argument(
        help="flow run ids (or select runs with the flags)", metavar="ID", show_default=False
    ),
]
Every = Annotated[bool, typer.Option("--all", help="every flow run (no ids, no flags)")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="print how many runs it would act on, and stop")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
MAX_REFUSALS_SHOWN = 20


# ---- ls ----


@app.command("ls")
@with_connection
@with_run_filters
def list_runs(
    connection: Connection,
    filters: RunFilters,
    limit: Annotated[int, typer.Option(help="at most this many runs", min=1, metavar="N")] = 20,
    sort: Annotated[
        FlowRunSort,
        typer.Option(
            help="order: " + ", ".join(sort.value.lower() for sort in FlowRunSort),
            case_sensitive=False,
            metavar="ORDER",
        ),
    ] = FlowRunSort.EXPECTED_START_TIME_DESC,
    json_output: Json = False,
) -> None:
    """List flow runs: a table, or --json for scripts."""
    with connection.client() as client:
        pages = client.iter_flow_runs(
            **filters.client_filters(), sort=sort, page_size=min(limit, PAGE)
        )
        runs = list(itertools.islice(pages, limit))
        names = flow_names(client, (run.flow_id for run in runs))
    if json_output:
        print_json([run.model_dump(mode="json") for run in runs])
        return
    rows = render.table("ID", "FLOW", "NAME", "STATE", "EXPECTED START (UTC)", "RUN TIME")
    for run in runs:
        rows.add_row(
            str(run.id),
            names.get(run.flow_id, str(run.flow_id)),
            run.name,
            render.state_text(run.state_type, run.state_name),
            render.when(run.expected_start_time),
            render.span(run.total_run_time),
        )
    console().print(rows)


# ---- inspect ----


@app.command()
@with_connection
def inspect(connection: Connection, flow_run_id: RunId, json_output: Json = False) -> None:
    """Show one flow run: fields, state history, task graph summary."""
    with connection.client() as client:
        run = client.read_flow_run(flow_run_id)
        flow = client.read_flow(run.flow_id)
        deployment = client.read_deployment(run.deployment_id) if run.deployment_id else None
        states = client.read_flow_run_states(flow_run_id)
        graph = client.read_flow_run_graph(flow_run_id)
    if json_output:
        print_json(
            {
                "flow_run": run.model_dump(mode="json"),
                "states": [state.model_dump(mode="json") for state in states],
                "graph": [node.model_dump(mode="json") for node in graph],
            }
        )
        return
    out = console()
    out.print(render.fields(_run_fields(run, flow.name, deployment)))
    history = render.table("TIME (UTC)", "STATE", "MESSAGE", title="\nState history")
    for state in states:
        history.add_row(
            render.when(state.timestamp),
            render.state_text(state.type, state.name),
            state.message or "",
        )
    out.print(history)
    out.print(_graph_summary(graph))


def _run_fields(run: Any, flow_name: str, deployment: Any) -> list[tuple[str, Any]]:
    state = run.state
    rows: list[tuple[str, Any]] = [
        ("id", run.id),
        ("name", run.name),
        ("flow", f"{flow_name} ({run.flow_id})"),
        ("deployment", f"{deployment.name} ({deployment.id})" if deployment else "-"),
        ("state", render.state_text(run.state_type, run.state_name)),
    ]
    if state is not None and state.message:
        rows.append(("message", state.message))
    rows += [
        ("expected start", render.when(run.expected_start_time)),
        ("start", render.when(run.start_time)),
        ("end", render.when(run.end_time)),
        ("run time", render.span(run.total_run_time)),
        ("run count", run.run_count),
        ("tags", ", ".join(run.tags) or "-"),
        ("parameters", json.dumps(run.parameters) if run.parameters else "-"),
        ("work pool", run.work_pool_name or "-"),
        ("work queue", run.work_queue_name or "-"),
        ("parent task run", run.parent_task_run_id or "-"),
        ("idempotency key", run.idempotency_key or "-"),
        ("created", render.when(run.created)),
        ("updated", render.when(run.updated)),
    ]
    return rows


def _graph_summary(graph: list[Any]) -> Text:
    if not graph:
        return Text("\nTask runs: none")
    by_state = Counter(
        (node.state.type, node.state.name) if node.state else ("", "-") for node in graph
    )
    edges = sum(len(node.upstream_dependencies) for node in graph)
    dependencies = "dependency" if edges == 1 else "dependencies"
    text = Text(f"\nTask runs: {len(graph)} ({edges} {dependencies}): ")
    for i, ((state_type, name), count) in enumerate(by_state.most_common()):
        text.append(", " if i else "")
        text.append_text(render.state_text(state_type, f"{count} {name}"))
    return text


# ---- cancel and delete ----


@app.command()
@with_connection
@with_run_filters
def cancel(
    connection: Connection,
    filters: RunFilters,
    flow_run_ids: RunIds = None,
    every: Every = False,
    dry_run: DryRun = False,
    yes: Yes = False,
) -> None:
    """Cancel flow runs, by id or by the filter flags.

    Proposes Cancelling to each run, as Prefect does: a run with no infrastructure to stop
    becomes Cancelled at once. Selected by flags, only runs not yet final and not already
    cancelling are taken; a run named by id gets the server's answer. Exit status 1 if any run
    refused.
    """
    ids = flow_run_ids or []
    with connection.client() as client:
        # Ids name their runs whatever their state: a final one gets the server's refusal.
        exclude = None if ids else [*FINAL_TYPES, StateType.CANCELLING]
        selection = _selection(client, ids, filters, every, exclude)
        count = _confirmed_count(client, selection, "cancel", "cancelled", dry_run, yes)
        if not count:
            return
        stream = client.bulk_set_flow_run_state(Cancelling(), limit=count, **selection)
        outcomes: Counter[str] = Counter()
        refused = []
        for result in _with_progress(stream, count, "cancelling"):
            # Accepted (Cancelling), replaced by Cancelled, or already cancelling: all done.
            state = result.state
            if state is not None and state.type in (StateType.CANCELLED, StateType.CANCELLING):
                outcomes[state.name] += 1
            else:
                refused.append(result)
    done = ", ".join(f"{n} {name}" for name, n in outcomes.most_common()) or "none"
    print(f"cancelled {runs(sum(outcomes.values()))} ({done})")
    if refused:
        print(f"{runs(len(refused))} refused:", file=sys.stderr)
        for result in refused[:MAX_REFUSALS_SHOWN]:
            reason = getattr(result.details, "reason", None) or ""
            print(f"  {result.flow_run_id}: {result.status.value} {reason}", file=sys.stderr)
        if len(refused) > MAX_REFUSALS_SHOWN:
            print(f"  and {len(refused) - MAX_REFUSALS_SHOWN} more", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
@with_connection
@with_run_filters
def delete(
    connection: Connection,
    filters: RunFilters,
    flow_run_ids: RunIds = None,
    every: Every = False,
    dry_run: DryRun = False,
    yes: Yes = False,
) -> None:
    """Delete flow runs (with their task runs), by id or by the filter flags."""
    ids = flow_run_ids or []
    with connection.client() as client:
        selection = _selection(client, ids, filters, every)
        count = _confirmed_count(client, selection, "delete", "deleted", dry_run, yes)
        if not count:
            return
        stream = client.bulk_delete_flow_runs(limit=count, **selection)
        deleted = sum(1 for _ in _with_progress(stream, count, "deleting"))
    print(f"deleted {runs(deleted)}")


def runs(count: int) -> str:
    """'1 flow run', '2 flow runs'."""
    return f"{count} flow run{'' if count == 1 else 's'}"


def _selection(
    client: Any,
    ids: list[UUID],
    filters: RunFilters,
    every: bool,
    exclude: list[StateType] | None = None,
) -> dict[str, Any]:
    """The client filters for the runs named: unknown ids exit 1; no ids, no flags and no
    --all is a usage error (acting on every run must be asked for)."""
    if every and (ids or filters.given):
        fail("--all selects every flow run: give it without ids or filter flags", USAGE)
    if not (every or ids or filters.given):
        fail("say which flow runs: give their ids, filter flags (see --help) or --all", USAGE)
    missing = _unknown(client, ids)
    if missing:
        fail(f"no flow run has the id {', '.join(missing)}")
    return filters.client_filters(ids=ids, exclude_types=exclude)


def _unknown(client: Any, ids: list[UUID]) -> list[str]:
    """The ids no flow run has."""
    wanted = list(dict.fromkeys(ids))
    known: set[UUID] = set()
    for start in range(0, len(wanted), PAGE):
        chunk = FlowRunFilter(id={"any_": wanted[start : start + PAGE]})
        known.update(run.id for run in client.read_flow_runs(flow_run_filter=chunk, limit=PAGE))
    return [str(run_id) for run_id in wanted if run_id not in known]


def _confirmed_count(
    client: Any, selection: dict[str, Any], verb: str, done: str, dry_run: bool, yes: bool
) -> int:
    """How many runs the selection holds, once the person agreed to act on them (0: stop)."""
    count = client.count_flow_runs(**selection)
    if dry_run:
        print(f"{runs(count)} would be {done}")
        return 0
    if count == 0:
        print(f"no flow run to {verb}")
        return 0
    if not yes:
        try:
            agreed = typer.confirm(f"{verb.capitalize()} {runs(count)}?", err=True)
        except typer.Abort:  # no answer: stdin closed
            agreed = False
        if not agreed:
            ending = "" if sys.stdin.isatty() else "\n"  # the answer was not echoed
            print(f"{ending}nothing {done}", file=sys.stderr)
            raise typer.Exit(1)
    return count


def _with_progress(items: Iterator[Any], total: int, label: str) -> Iterator[Any]:
    """Yields the items while a progress bar on stderr counts them (in a terminal only)."""
    err = console(stderr=True)
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=total)
        for item in items:
            progress.advance(task)
            yield item


# ---- history ----


@app.command()
@with_connection
@with_run_filters
def history(
    connection: Connection,
    filters: RunFilters,
    interval: Annotated[
        timedelta | None,
        typer.Option(
            help="length of each interval, e.g. 1h or 15m (default: the window in 24)",
            parser=parse_duration,
            metavar="SPAN",
            show_default=False,
        ),
    ] = None,
    json_output: Json = False,
) -> None:
    """Count runs per state in a window, as a bar chart.

    The window is of expected start times: --since (default -1d) to --until (default now).
    --json gives the server's intervals instead.
    """
    start = filters.since or filters.now - timedelta(days=1)
    end = filters.until or filters.now
    if end <= start:
        fail(f"--until ({render.when(end)}) must be after --since ({render.when(start)})", USAGE)
    step = interval or max(timedelta(seconds=1), (end - start) / 24)
    step = timedelta(seconds=max(1, round(step.total_seconds())))
    with connection.client() as client:
        intervals = client.read_flow_run_history(
            start, end, step, **filters.client_filters(window=False)
        )
    if json_output:
        print_json([interval.model_dump(mode="json") for interval in intervals])
        return
    totals: Counter[tuple[str, str]] = Counter()
    for each in intervals:
        for state in each.states:
            totals[(state.state_type.value, state.state_name)] += state.count_runs
    out = console()
    out.print(
        f"Flow runs by state, expected to start {render.when(start)} to {render.when(end)} UTC "
        f"({len(intervals)} intervals of {render.span(step)})"
    )
    if not totals:
        out.print("no flow runs in this window")
        return
    rows = [(render.state_text(kind, name), n) for (kind, name), n in totals.most_common()]
    out.print(render.bars(rows))
