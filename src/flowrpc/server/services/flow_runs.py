"""FlowRunService: validate, call storage (which orchestrates), convert."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import grpc

from flowrpc.server.errors import InvalidArgument, ServiceError
from flowrpc.server.ids import now_micros
from flowrpc.server.interceptors import CODES
from flowrpc.server.limits import RequestLimits, run_budget, split
from flowrpc.server.orchestration.records import StateType
from flowrpc.server.services import convert as c
from flowrpc.server.services.creates import (
    check_row,
    deployment_run_create,
    flow_run_create,
    within_budget,
)
from flowrpc.server.services.pages import PageTokens, is_time
from flowrpc.server.storage import flow_runs as storage
from flowrpc.server.storage import run_creates
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.history import flow_run_history
from flowrpc.server.watch import Watches
from flowrpc.settings import Settings
from flowrpc.v1 import flow_run_pb2, flow_run_service_pb2_grpc, graph_pb2, task_run_pb2
from flowrpc.v1 import flow_run_service_pb2 as pb

BULK_CHUNK = 500  # runs per write transaction and per streamed message in bulk calls
STATES_SORT = "TIMESTAMP_ASC"  # the one order of ListFlowRunStates, named in its page tokens
# Runs one CreateFlowRuns message may carry: one write transaction, one response (mostly).
MAX_CREATE_RUNS = 1000
# CreateFlowRuns messages read and handed to the writer before the earliest is answered: on
# SQLite those waiting are committed in one transaction.
CREATE_MESSAGES_AHEAD = 4
BASIC = pb.CREATE_FLOW_RUNS_VIEW_BASIC
UPDATABLE = {
    "name",
    "flow_version",
    "parameters",
    "empirical_policy",
    "tags",
    "infrastructure_pid",
    "job_variables",
}


class FlowRunService(flow_run_service_pb2_grpc.FlowRunServiceServicer):
    def __init__(
        self, db: Database, settings: Settings, page_tokens: PageTokens, watches: Watches
    ) -> None:
        self.db = db
        self.settings = settings
        self.page_tokens = page_tokens
        self.limits = RequestLimits(settings)  # each run of CreateFlowRuns on its own
        self.watches = watches

    async def CreateFlowRun(self, request: pb.CreateFlowRunRequest, context: Any) -> Any:
        now = now_micros()
        write, args = flow_run_create(request, now, run_budget(self.settings)).write
        row, created = await self.db.write(write, *args)
        return pb.CreateFlowRunResponse(flow_run=c.flow_run_fields(row, now), created=created)

    async def StartFlowRun(self, request: pb.StartFlowRunRequest, context: Any) -> Any:
        now = now_micros()
        create = flow_run_create(request.flow_run, now, run_budget(self.settings))
        # One microsecond later, so the two states keep their order in the history.
        proposed = c.proposed_state(request.state, now + 1)
        if proposed.type is not StateType.RUNNING:
            raise InvalidArgument(
                {"state.type": "must be RUNNING (other proposals go through SetFlowRunState)"}
            )
        row, created, outcome = await self.db.write(
            storage.start_flow_run,
            create.values,
            create.state,
            proposed,
            now,
            create.work_pool_name,
        )
        return pb.StartFlowRunResponse(
            flow_run=c.flow_run_fields(row, now),
            created=created,
            result=c.result_to_proto(outcome.decision, outcome.state),
        )

    async def GetFlowRun(self, request: pb.GetFlowRunRequest, context: Any) -> Any:
        run_id = c.require_id(request.id, "id")
        row = await self.db.read(storage.require_flow_run, run_id)
        return pb.GetFlowRunResponse(flow_run=c.flow_run_fields(row, now_micros()))

    async def ListFlowRuns(self, request: pb.ListFlowRunsRequest, context: Any) -> Any:
        sort = c.enum_name(flow_run_pb2.FlowRunSort.DESCRIPTOR, request.sort, "sort")
        sort = "ID_DESC" if sort == "UNSPECIFIED" else sort
        limit, offset = c.limit_of(request), c.offset_of(request)
        order = storage.SORTS[sort]
        after = self.page_tokens.position(
            request.page_token, offset, request.filter, sort, order.accepts
        )
        filters = c.filters(request.filter)
        rows = await self.db.read(storage.list_flow_runs, filters, sort, limit + 1, offset, after)
        now = now_micros()
        response = pb.ListFlowRunsResponse(
            flow_runs=[c.flow_run_fields(row, now) for row in rows[:limit]]
        )
        return self.page_tokens.fitted_page(
            response, "flow_runs", rows, request.filter, sort, order.row_key
        )

    async def CountFlowRuns(self, request: pb.CountFlowRunsRequest, context: Any) -> Any:
        count = await self.db.read(storage.count_flow_runs, c.filters(request.filter))
        return pb.CountFlowRunsResponse(count=count)

    async def UpdateFlowRun(self, request: pb.UpdateFlowRunRequest, context: Any) -> Any:
        run = request.flow_run
        run_id = c.require_id(run.id, "flow_run.id")
        paths = set(request.update_mask.paths)
        if unknown := paths - UPDATABLE:
            raise InvalidArgument(
                {"update_mask": f"cannot update {sorted(unknown)}; updatable: {sorted(UPDATABLE)}"}
            )
        values = {
            "name": run.name,
            "flow_version": c.optional(run, "flow_version"),
            "parameters": c.plain_struct(run, "parameters", "flow_run.parameters") or {},
            "empirical_policy": c.flow_run_policy(
                run.empirical_policy, "flow_run.empirical_policy"
            ),
            "tags": list(run.tags),
            "infrastructure_pid": c.optional(run, "infrastructure_pid"),
            "job_variables": c.plain_struct(run, "job_variables", "flow_run.job_variables") or {},
        }
        now = now_micros()
        changes = {path: values[path] for path in paths}
        update = within_budget(storage.update_flow_run, run_budget(self.settings))
        row = await self.db.write(update, run_id, changes, now)
        return pb.UpdateFlowRunResponse(flow_run=c.flow_run_fields(row, now))

    async def DeleteFlowRun(self, request: pb.DeleteFlowRunRequest, context: Any) -> Any:
        await self.db.write(storage.delete_flow_run, c.require_id(request.id, "id"))
        return pb.DeleteFlowRunResponse()

    async def SetFlowRunState(self, request: pb.SetFlowRunStateRequest, context: Any) -> Any:
        run_id = c.require_id(request.flow_run_id, "flow_run_id")
        now = now_micros()
        proposed = c.proposed_state(request.state, now)
        outcome = await self.db.write(storage.set_state, run_id, proposed, request.force, now)
        return pb.SetFlowRunStateResponse(result=c.result_to_proto(outcome.decision, outcome.state))

    async def ResumeFlowRun(self, request: pb.ResumeFlowRunRequest, context: Any) -> Any:
        run_id = c.require_id(request.flow_run_id, "flow_run_id")
        outcome = await self.db.write(storage.resume, run_id, now_micros())
        return pb.ResumeFlowRunResponse(result=c.result_to_proto(outcome.decision, outcome.state))

    async def ListFlowRunStates(self, request: pb.ListFlowRunStatesRequest, context: Any) -> Any:
        run_id = c.require_id(request.flow_run_id, "flow_run_id")
        limit = c.limit_of(request)
        query = pb.ListFlowRunStatesRequest(flow_run_id=request.flow_run_id)
        after = self.page_tokens.position(request.page_token, 0, query, STATES_SORT, is_time)
        rows = await self.db.read(storage.list_states, run_id, limit + 1, after)
        response = pb.ListFlowRunStatesResponse(
            states=[c.state_row_to_proto(r) for r in rows[:limit]]
        )
        # States may carry data up to max_json_bytes each: a page holds fewer when they do.
        return self.page_tokens.fitted_page(
            response, "states", rows, query, STATES_SORT, lambda row: row.timestamp
        )

    async def GetFlowRunGraph(self, request: pb.GetFlowRunGraphRequest, context: Any) -> Any:
        run_id = c.require_id(request.flow_run_id, "flow_run_id")
        rows = await self.db.read(storage.graph, run_id)
        now = now_micros()
        return pb.GetFlowRunGraphResponse(nodes=[_graph_node(row, now) for row in rows])

    async def StreamFlowRunHistory(
        self, request: pb.StreamFlowRunHistoryRequest, context: Any
    ) -> AsyncIterator[pb.StreamFlowRunHistoryResponse]:
        for interval in await self._history(request):
            yield pb.StreamFlowRunHistoryResponse(**interval)

    async def ReadFlowRunHistory(self, request: pb.ReadFlowRunHistoryRequest, context: Any) -> Any:
        return pb.ReadFlowRunHistoryResponse(intervals=await self._history(request))

    async def _history(self, request: Any) -> list[dict[str, Any]]:
        """The intervals of a history request, as HistoryInterval's constructor takes them."""
        start, end, interval = _history_window(request)
        intervals = _interval_count(start, end, interval, self.settings.max_history_intervals)
        now = now_micros()
        filters = c.filters(request.filter)
        rows = await self.db.read(flow_run_history, filters, start, interval, intervals, now)
        by_bucket: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_bucket.setdefault(row.bucket, []).append(
                {
                    "state_type": c.state_type_number(row.state_type),
                    "state_name": row.state_name or "",
                    "count_runs": row.count_runs,
                    "sum_estimated_run_time": c.duration(int(row.run_time or 0)),
                    "sum_estimated_lateness": c.duration(int(row.lateness or 0)),
                }
            )
        return [
            {
                "interval_start": c.timestamp(start + k * interval),
                "interval_end": c.timestamp(start + (k + 1) * interval),
                "states": by_bucket.get(k, []),
            }
            for k in range(intervals)
        ]

    async def BulkSetFlowRunState(
        self, request: pb.BulkSetFlowRunStateRequest, context: Any
    ) -> AsyncIterator[pb.BulkSetFlowRunStateResponse]:
        now = now_micros()
        proposal = c.proposed_state(request.state, now)
        async for ids in self._chunks(request):
            results = await self.db.write(storage.bulk_set_state, ids, proposal, request.force, now)
            response = pb.BulkSetFlowRunStateResponse(
                results=[
                    pb.BulkSetFlowRunStateResult(
                        flow_run_id=run_id, result=c.result_to_proto(o.decision, o.state)
                    )
                    for run_id, o in results
                ]
            )
            for message in split(response, "results"):  # states with large data: several
                yield message
            now = now_micros()

    async def BulkDeleteFlowRuns(
        self, request: pb.BulkDeleteFlowRunsRequest, context: Any
    ) -> AsyncIterator[pb.BulkDeleteFlowRunsResponse]:
        async for ids in self._chunks(request):
            deleted = await self.db.write(storage.bulk_delete, ids)
            yield pb.BulkDeleteFlowRunsResponse(deleted_flow_run_ids=deleted)

    async def CreateFlowRuns(
        self, requests: AsyncIterator[pb.CreateFlowRunsRequest], context: Any
    ) -> AsyncIterator[pb.CreateFlowRunsResponse]:
        # A reader task takes each message and converts its runs; each message is planned on a
        # reader thread and written in turn, the next planned while the previous is written
        # (SQLite's own work runs without the GIL), and this loop answers each message as soon
        # as its write is done: a client that waits for each answer before sending its next
        # message is answered too.
        writes: asyncio.Queue[Any] = asyncio.Queue(maxsize=CREATE_MESSAGES_AHEAD)
        reader = asyncio.create_task(self._start_writes(requests, writes))
        index = 0  # of the next run in the call
        try:
            while (item := await writes.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                request, now, written = item
                result = _basic_result if request.view == BASIC else _full_result
                results = []
                for run, outcome in zip(request.runs, await written, strict=True):
                    if isinstance(outcome, ServiceError):
                        results.append(_error_result(index, run, outcome))
                    else:
                        results.append(result(index, *outcome, now))
                    index += 1
                for message in split(pb.CreateFlowRunsResponse(results=results), "results"):
                    yield message
        finally:
            reader.cancel()

    async def _start_writes(
        self, requests: AsyncIterator[pb.CreateFlowRunsRequest], writes: asyncio.Queue[Any]
    ) -> None:
        """For each message: (the message, now, the future of its write), into `writes`; then
        None, or the error that ends the call."""
        budget = run_budget(self.settings)
        check = functools.partial(check_row, budget=budget)
        planned: asyncio.Future[Any] | None = None
        written: asyncio.Future[Any] | None = None
        try:
            async for request in requests:
                if len(request.runs) > MAX_CREATE_RUNS:
                    raise InvalidArgument(
                        {
                            "runs": f"{len(request.runs)} runs in one message, over the "
                            f"{MAX_CREATE_RUNS} a message may carry: send them in several messages"
                        },
                        reason="LIMIT_EXCEEDED",
                    )
                if not request.runs:
                    continue
                now = now_micros()
                creates = [self._run_create(run, now, budget) for run in request.runs]
                planned = asyncio.ensure_future(self._plan_after(planned, creates, check))
                written = asyncio.ensure_future(self._write_after(written, planned, creates, check))
                # Retrieved here too: a call that ends early leaves later ones unanswered.
                planned.add_done_callback(_retrieved)
                written.add_done_callback(_retrieved)
                await writes.put((request, now, written))
        except Exception as error:  # noqa: BLE001 - the answering loop raises it in order
            await writes.put(error)
            return
        await writes.put(None)

    async def _plan_after(
        self, previous: asyncio.Future[Any] | None, creates: list[Any], check: Any
    ) -> Any:
        """Plans a message's runs on a reader (run_creates.plan_ahead) once the previous message
        is planned: planning holds the GIL, so one at a time, while the writer writes."""
        if previous is not None:
            await asyncio.wait([previous])
        return await self.db.read(run_creates.plan_ahead, creates, check)

    async def _write_after(
        self,
        previous: asyncio.Future[Any] | None,
        planned: asyncio.Future[Any],
        creates: list[Any],
        check: Any,
    ) -> Any:
        """Writes a message's runs after the previous message's: a key used in both messages is
        created by the earlier one. On SQLite the writer takes writes in turn, so a message is
        handed over as soon as it is planned (plans end in turn, and the write of the earlier
        is woken first) and those waiting are committed together; on PostgreSQL it waits for
        the previous message's write."""
        ahead = await planned
        if previous is not None and not self.db.writes_in_order:
            await asyncio.wait([previous])
        return await self.db.write(run_creates.create_flow_runs, creates, check, ahead)

    def _run_create(self, run: pb.FlowRunCreate, now: int, budget: int) -> Any:
        """The run's create, as its single create makes it, or why it cannot be made."""
        try:
            self.limits.check(run)  # paths from the FlowRunCreate already
            source = run.WhichOneof("source")
            if source is None:
                raise InvalidArgument({"source": "set flow_run or from_deployment"})
        except ServiceError as error:
            return error
        try:
            if source == "flow_run":
                return flow_run_create(run.flow_run, now, budget)
            return deployment_run_create(run.from_deployment, now, budget)
        except ServiceError as error:
            return error

    async def WatchFlowRuns(
        self, request: pb.WatchFlowRunsRequest, context: Any
    ) -> AsyncIterator[pb.WatchFlowRunsResponse | bytes]:
        filters = c.filters(request.filter)
        stream = self.watches.stream(filters, request.since, request.skip_snapshot)
        async for message in stream:  # change batches come encoded already (server/watch.py)
            yield message

    async def _chunks(self, request: Any) -> AsyncIterator[list[str]]:
        """The selected run ids, a chunk at a time, in id order (each chunk re-selected after the
        previous one was written, so runs that stop matching are not touched)."""
        remaining = None
        if request.HasField("limit"):
            if request.limit < 1:
                raise InvalidArgument({"limit": f"must be at least 1, got {request.limit}"})
            remaining = request.limit
        filters = c.filters(request.filter)
        after = None
        while remaining is None or remaining > 0:
            size = BULK_CHUNK if remaining is None else min(BULK_CHUNK, remaining)
            ids = await self.db.read(storage.select_ids, filters, after, size)
            if not ids:
                return
            yield ids
            after = ids[-1]
            if remaining is not None:
                remaining -= len(ids)


# CreateFlowRunsResults, as their constructor takes them (the response is built in one call
# from these, not from result messages it would copy): a run in the FULL view, a run in the
# BASIC view, a run not created.
def _full_result(index: int, row: Any, created: bool, now: int) -> dict[str, Any]:
    return {"index": index, "flow_run": c.flow_run_fields(row, now), "created": created}


def _basic_result(index: int, row: Any, created: bool, now: int) -> dict[str, Any]:
    summary = {
        "id": row.id,
        "name": row.name,
        "state_type": c.state_type_number(row.state_type),
        "state_name": row.state_name,
    }
    return {"index": index, "summary": summary, "created": created}


def _error_result(index: int, run: pb.FlowRunCreate, outcome: ServiceError) -> dict[str, Any]:
    violations = getattr(outcome, "violations", {})
    source = run.WhichOneof("source")
    if source is not None:  # paths from the single create's request: from the FlowRunCreate
        violations = {
            path if path.startswith(f"{source}.") else c.within(source, path): problem
            for path, problem in violations.items()
        }
    error = {
        "code": CODES.get(type(outcome), grpc.StatusCode.FAILED_PRECONDITION).value[0],
        "reason": outcome.reason,
        "message": outcome.message,
        "field_violations": [
            {"field": path, "description": problem} for path, problem in violations.items()
        ],
    }
    return {"index": index, "error": error}


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _history_window(request: Any) -> tuple[int, int, int]:
    start = c.micros(request, "history_start")
    end = c.micros(request, "history_end")
    interval = c.micros(request, "history_interval")
    violations = {}
    if start is None:
        violations["history_start"] = "is required"
    if end is None:
        violations["history_end"] = "is required"
    if interval is None or interval < 1_000_000:
        violations["history_interval"] = "History interval must not be less than 1 second."
    if violations:
        raise InvalidArgument(violations)
    return start, end, interval  # type: ignore[return-value]


def _interval_count(start: int, end: int, interval: int, most: int) -> int:
    """How many intervals cover [start, end) (none when end is not after start); more than
    `most` is refused rather than cut short, so no caller takes a partial history for whole."""
    count = max(0, -(-(end - start) // interval))
    if count > most:
        raise InvalidArgument(
            {
                "history_interval": f"this window takes {count} intervals, more than the "
                f"{most} allowed (setting max_history_intervals): lengthen the interval or "
                "shorten the window"
            }
        )
    return count


def _graph_node(row: Any, now: int) -> graph_pb2.FlowRunGraphNode:
    task_run = c.task_run_to_proto(row, now)
    upstream = {
        item.id: item
        for inputs in task_run.task_inputs.values()
        for item in inputs.inputs
        if item.input_type == task_run_pb2.TASK_RUN_INPUT_TYPE_TASK_RUN
    }
    state = task_run.state if task_run.HasField("state") else None
    if state is not None:
        state.ClearField("data")  # results stay out of the graph: it must fit one response
    return graph_pb2.FlowRunGraphNode(
        id=task_run.id,
        name=task_run.name,
        upstream_dependencies=list(upstream.values()),
        state=state,
        expected_start_time=task_run.expected_start_time
        if task_run.HasField("expected_start_time")
        else None,
        start_time=task_run.start_time if task_run.HasField("start_time") else None,
        end_time=task_run.end_time if task_run.HasField("end_time") else None,
        total_run_time=task_run.total_run_time,
        estimated_run_time=task_run.estimated_run_time,
        untrackable_result=bool(state and state.state_details.untrackable_result),
    )
