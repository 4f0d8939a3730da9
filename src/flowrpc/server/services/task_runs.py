"""TaskRunService."""

from __future__ import annotations

import itertools
from typing import Any

from flowrpc.server.errors import InvalidArgument
from flowrpc.server.ids import now_micros
from flowrpc.server.limits import check_run_size, run_budget, run_size
from flowrpc.server.orchestration.records import StateType
from flowrpc.server.services import convert as c
from flowrpc.server.services.creates import initial_state
from flowrpc.server.services.pages import PageTokens
from flowrpc.server.storage import task_runs as storage
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.transitions import Outcome
from flowrpc.settings import Settings
from flowrpc.v1 import orchestration_pb2, task_run_service_pb2_grpc
from flowrpc.v1 import task_run_service_pb2 as pb

# Proposals per SetTaskRunStates call, and starts per StartTaskRuns call: the response echoes
# each run's state (its name may be max_string_length long), so the count keeps it well under
# the 4 MiB a client accepts.
MAX_STATE_PROPOSALS = 100
# States proposed after the starts of one StartTaskRun(s) call (`then`), in all: the response
# echoes each one's decision, as SetTaskRunStates does.
MAX_THEN_STATES = 100


SORT = "ID_DESC"  # the one order of ListTaskRuns, named in its page tokens


def _is_text(value: Any) -> bool:
    return isinstance(value, str)  # a token's key: the run id, checked as an id with it


def _check_count(field: str, count: int) -> None:
    if not 1 <= count <= MAX_STATE_PROPOSALS:
        raise InvalidArgument({field: f"give 1 to {MAX_STATE_PROPOSALS} {field}; got {count}"})


def _check_then(starts: Any, field: str = "") -> None:
    """At most MAX_THEN_STATES `then` states in a call's starts; the field past it named."""
    totals = list(itertools.accumulate(len(start.then) for start in starts))
    if not totals or totals[-1] <= MAX_THEN_STATES:
        return
    index = next(i for i, total in enumerate(totals) if total > MAX_THEN_STATES)
    where = f"{field}[{index}].then" if field else "then"
    raise InvalidArgument(
        {
            where: f"give at most {MAX_THEN_STATES} then states in a call (all its starts); "
            f"got {totals[-1]}"
        }
    )


def _bare(outcome: Outcome) -> orchestration_pb2.OrchestrationResult:
    """The outcome's result without its state's data and message (read the run for them), so a
    bulk response stays small whatever the states hold."""
    result = c.result_to_proto(outcome.decision, outcome.state)
    if result.HasField("state"):
        result.state.ClearField("data")
        result.state.ClearField("message")
    return result


class TaskRunService(task_run_service_pb2_grpc.TaskRunServiceServicer):
    def __init__(self, db: Database, settings: Settings, page_tokens: PageTokens) -> None:
        self.db = db
        self.settings = settings
        self.page_tokens = page_tokens

    async def CreateTaskRun(self, request: pb.CreateTaskRunRequest, context: Any) -> Any:
        now = now_micros()
        values = self._create_values(request)
        state = initial_state(request, now, StateType.PENDING)
        row, created = await self.db.write(storage.create_task_run, values, state, now)
        return pb.CreateTaskRunResponse(task_run=c.task_run_to_proto(row, now), created=created)

    async def StartTaskRun(self, request: pb.StartTaskRunRequest, context: Any) -> Any:
        _check_then([request])
        now = now_micros()
        start = self._start_of(request, now)
        row, created, (outcome, *then) = await self.db.write(storage.start_task_run, start, now)
        return pb.StartTaskRunResponse(
            task_run=c.task_run_to_proto(row, now),
            created=created,
            result=c.result_to_proto(outcome.decision, outcome.state),
            then=[_bare(item) for item in then],
        )

    async def StartTaskRuns(self, request: pb.StartTaskRunsRequest, context: Any) -> Any:
        _check_count("starts", len(request.starts))
        _check_then(request.starts, "starts")
        now = now_micros()
        starts, stamp = [], now
        for index, item in enumerate(request.starts):
            with c.fields_within(f"starts[{index}]"):
                # A microsecond a state, so every state keeps its order in the history.
                starts.append(self._start_of(item, stamp))
            stamp += 2 + len(item.then)
        started = await self.db.write(storage.start_task_runs, starts, now)
        return pb.StartTaskRunsResponse(
            results=[
                pb.StartedTaskRun(
                    task_run_id=task_run_id,
                    created=created,
                    result=_bare(outcome),
                    then=[_bare(item) for item in then],
                )
                for task_run_id, created, (outcome, *then) in started
            ]
        )

    async def SetTaskRunStates(self, request: pb.SetTaskRunStatesRequest, context: Any) -> Any:
        _check_count("proposals", len(request.proposals))
        now = now_micros()
        proposals = [
            (
                c.require_id(item.task_run_id, f"proposals[{index}].task_run_id"),
                c.proposed_state(item.state, now + index, f"proposals[{index}].state"),
                item.force,
            )
            for index, item in enumerate(request.proposals)
        ]
        outcomes = await self.db.write(storage.set_states, proposals, now)
        return pb.SetTaskRunStatesResponse(results=[_bare(outcome) for outcome in outcomes])

    def _start_of(self, request: pb.StartTaskRunRequest, now: int) -> storage.Start:
        """A start request's create values and states, checked; its states stamped now, now + 1,
        ..., so they keep their order in the history."""
        with c.fields_within("task_run"):
            values = self._create_values(request.task_run)
            initial = initial_state(request.task_run, now, StateType.PENDING)
        proposed = c.proposed_state(request.state, now + 1)
        if proposed.type is not StateType.RUNNING:
            raise InvalidArgument(
                {"state.type": "must be RUNNING (other proposals go through SetTaskRunState)"}
            )
        then = [
            c.proposed_state(state, now + 2 + index, f"then[{index}]")
            for index, state in enumerate(request.then)
        ]
        return storage.Start(values, initial, proposed, then)

    def _create_values(self, request: pb.CreateTaskRunRequest) -> dict[str, Any]:
        """A create request's columns, its size checked against the run budget."""
        values = {
            "id": c.optional_id(request.id, "id"),
            "flow_run_id": c.optional_id(request.flow_run_id, "flow_run_id"),
            "name": request.name,
            "task_key": request.task_key,
            "dynamic_key": request.dynamic_key,
            "cache_key": c.optional(request, "cache_key"),
            "cache_expiration": c.micros(request, "cache_expiration"),
            "task_version": c.optional(request, "task_version"),
            "empirical_policy": c.task_run_policy(request.empirical_policy),
            "tags": list(request.tags),
            "labels": c.plain_struct(request, "labels") or {},
            "task_inputs": c.task_inputs(request.task_inputs),
        }
        check_run_size(run_size(request), run_budget(self.settings))
        return values

    async def GetTaskRun(self, request: pb.GetTaskRunRequest, context: Any) -> Any:
        row = await self.db.read(storage.get_task_run, c.require_id(request.id, "id"))
        return pb.GetTaskRunResponse(task_run=c.task_run_to_proto(row, now_micros()))

    async def ListTaskRuns(self, request: pb.ListTaskRunsRequest, context: Any) -> Any:
        filters = {
            key: c.filters(getattr(request, key), key)
            for key in ("flows", "flow_runs", "task_runs", "deployments")
            if request.HasField(key)
        }
        limit, offset = c.limit_of(request), c.offset_of(request)
        query = pb.ListTaskRunsRequest(**{key: getattr(request, key) for key in filters})
        position = self.page_tokens.position(request.page_token, offset, query, SORT, _is_text)
        after = None if position is None else position[1]  # the last run's id
        rows = await self.db.read(storage.list_task_runs, filters, limit + 1, offset, after)
        now = now_micros()
        response = pb.ListTaskRunsResponse(
            task_runs=[c.task_run_to_proto(r, now) for r in rows[:limit]]
        )
        # States may carry data up to max_json_bytes each (a task's persisted result): a page
        # holds fewer when they do.
        return self.page_tokens.fitted_page(
            response, "task_runs", rows, query, SORT, lambda row: row.id
        )

    async def SetTaskRunState(self, request: pb.SetTaskRunStateRequest, context: Any) -> Any:
        task_run_id = c.require_id(request.task_run_id, "task_run_id")
        now = now_micros()
        proposed = c.proposed_state(request.state, now)
        outcome = await self.db.write(storage.set_state, task_run_id, proposed, request.force, now)
        return pb.SetTaskRunStateResponse(result=c.result_to_proto(outcome.decision, outcome.state))
