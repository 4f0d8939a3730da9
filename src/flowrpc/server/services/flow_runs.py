"""FlowRunService: validate, call storage (which orchestrates), convert."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.engine import Connection

from flowrpc.server.errors import InvalidArgument
from flowrpc.server.ids import now_micros
from flowrpc.server.limits import check_run_size, fitted, run_budget, run_size, split
from flowrpc.server.orchestration.records import State, StateType
from flowrpc.server.orchestration.states import new_state
from flowrpc.server.services import convert as c
from flowrpc.server.services.pages import PageTokens
from flowrpc.server.storage import flow_runs as storage
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.history import flow_run_history
from flowrpc.settings import Settings
from flowrpc.v1 import flow_run_pb2, flow_run_service_pb2_grpc, graph_pb2, task_run_pb2
from flowrpc.v1 import flow_run_service_pb2 as pb

BULK_CHUNK = 500  # runs per write transaction and per streamed message in bulk calls
UPDATABLE = {
    "name",
    "flow_version",
    "parameters",
    "empirical_policy",
    "tags",
    "infrastructure_pid",
    "job_variables",
}


def run_values(request: Any) -> dict[str, Any]:
    """Columns shared by both ways of creating a run."""
    return {
        "name": request.name,
        "parameters": c.plain_struct(request, "parameters") or {},
        "context": c.plain_struct(request, "context") or {},
        "empirical_policy": c.flow_run_policy(request.empirical_policy),
        "tags": list(request.tags),
        "labels": c.plain_struct(request, "labels") or {},
        "idempotency_key": c.optional(request, "idempotency_key"),
        "parent_task_run_id": c.optional_id(request.parent_task_run_id, "parent_task_run_id"),
        "work_queue_name": c.optional(request, "work_queue_name"),
        "job_variables": c.plain_struct(request, "job_variables") or {},
    }


def within_budget(write: Callable[..., Any], budget: int) -> Callable[..., Any]:
    """A storage write of a run that fails (and so rolls back) when the run it leaves is over
    the run budget: updates and deployments add to what a request alone brings."""

    def checked(conn: Connection, *args: Any) -> Any:
        result = write(conn, *args)
        row = result[0] if isinstance(result, tuple) else result
        check_run_size(run_size(flow_run_pb2.FlowRun(**c.flow_run_fields(row, 0))), budget)
        return result

    return checked


def initial_state(request: Any, now: int, default: StateType) -> State:
    """The state a create request asks for, or the default (Pending, or Scheduled now)."""
    if request.HasField("state"):
        return c.proposed_state(request.state, now)
    return new_state(default, now)


class FlowRunService(flow_run_service_pb2_grpc.FlowRunServiceServicer):
    def __init__(self, db: Database, settings: Settings, page_tokens: PageTokens) -> None:
        self.db = db
        self.settings = settings
        self.page_tokens = page_tokens

    async def CreateFlowRun(self, request: pb.CreateFlowRunRequest, context: Any) -> Any:
        now = now_micros()
        values = self._create_values(request)
        state = initial_state(request, now, StateType.PENDING)
        pool = c.optional(request, "work_pool_name")
        row, created = await self.db.write(storage.create_flow_run, values, state, now, pool)
        return pb.CreateFlowRunResponse(flow_run=c.flow_run_fields(row, now), created=created)

    async def StartFlowRun(self, request: pb.StartFlowRunRequest, context: Any) -> Any:
        now = now_micros()
        create = request.flow_run
        values = self._create_values(create)
        initial = initial_state(create, now, StateType.PENDING)
        # One microsecond later, so the two states keep their order in the history.
        proposed = c.proposed_state(request.state, now + 1)
        if proposed.type is not StateType.RUNNING:
            raise InvalidArgument(
                {"state.type": "must be RUNNING (other proposals go through SetFlowRunState)"}
            )
        pool = c.optional(create, "work_pool_name")
        row, created, outcome = await self.db.write(
            storage.start_flow_run, values, initial, proposed, now, pool
        )
        return pb.StartFlowRunResponse(
            flow_run=c.flow_run_fields(row, now),
            created=created,
            result=c.result_to_proto(outcome.decision, outcome.state),
        )

    def _create_values(self, request: pb.CreateFlowRunRequest) -> dict[str, Any]:
        """A create request's columns, its size checked against the run budget."""
        values = {
            **run_values(request),
            "flow_id": c.require_id(request.flow_id, "flow_id"),
            "flow_version": c.optional(request, "flow_version"),
            "infrastructure_document_id": c.optional_id(
                request.infrastructure_document_id, "infrastructure_document_id"
            ),
            "deployment_id": c.optional_id(request.deployment_id, "deployment_id"),
        }
        check_run_size(run_size(request), run_budget(self.settings))
        return values

    async def GetFlowRun(self, request: pb.GetFlowRunRequest, context: Any) -> Any:
        run_id = c.require_id(request.id, "id")
        row = await self.db.read(storage.require_flow_run, run_id)
        return pb.GetFlowRunResponse(flow_run=c.flow_run_fields(row, now_micros()))

    async def ListFlowRuns(self, request: pb.ListFlowRunsRequest, context: Any) -> Any:
        sort = c.enum_name(flow_run_pb2.FlowRunSort.DESCRIPTOR, request.sort, "sort")
        sort = "ID_DESC" if sort == "UNSPECIFIED" else sort
        limit, offset = c.limit_of(request), c.offset_of(request)
        after = None
        if request.page_token:
            if offset:
                raise InvalidArgument({"offset": "cannot be combined with page_token"})
            after = self.page_tokens.decode(
                request.page_token, request.filter, sort, storage.SORTS[sort].accepts
            )
        filters = c.filters(request.filter)
        rows = await self.db.read(storage.list_flow_runs, filters, sort, limit + 1, offset, after)
        now = now_micros()
        response = pb.ListFlowRunsResponse(
            flow_runs=[c.flow_run_fields(row, now) for row in rows[:limit]]
        )

        def continue_after(shown: int) -> None:
            response.next_page_token = ""
            if len(rows) > shown > 0:
                last = rows[shown - 1]
                key = storage.SORTS[sort].row_key(last)
                token = self.page_tokens.encode(request.filter, sort, key, last.id)
                response.next_page_token = token

        continue_after(len(response.flow_runs))
        # A page of large runs holds fewer, and its token continues after the last one it holds.
        return fitted(response, "flow_runs", continue_after)

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
        rows = await self.db.read(storage.list_states, run_id)
        return pb.ListFlowRunStatesResponse(states=[c.state_row_to_proto(r) for r in rows])

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
