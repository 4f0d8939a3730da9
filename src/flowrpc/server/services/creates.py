"""How a create request becomes a storage write: one path for CreateFlowRun,
CreateFlowRunFromDeployment and each run of CreateFlowRuns, so a run created in bulk is created
exactly as a single create would create it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from flowrpc.server.limits import check_run_size, run_size
from flowrpc.server.orchestration.records import State, StateType
from flowrpc.server.orchestration.states import new_state
from flowrpc.server.services import convert as c
from flowrpc.server.storage import deployments, flow_runs
from flowrpc.server.storage.run_creates import RunCreate
from flowrpc.v1 import flow_run_pb2


def run_values(request: Any) -> dict[str, Any]:
    """Columns shared by both ways of creating a run."""
    return {
        "name": request.name,
        "parameters": c.plain_struct(request, "parameters") or {},
        "context": c.plain_struct(request, "context") or {},
        # Unset: the policy's defaults, which the run's record starts from anyway.
        "empirical_policy": (
            c.flow_run_policy(request.empirical_policy)
            if request.HasField("empirical_policy")
            else None
        ),
        "tags": list(request.tags),
        "labels": c.plain_struct(request, "labels") or {},
        "idempotency_key": c.optional(request, "idempotency_key"),
        "parent_task_run_id": c.optional_id(request.parent_task_run_id, "parent_task_run_id"),
        "work_queue_name": c.optional(request, "work_queue_name"),
        "job_variables": c.plain_struct(request, "job_variables") or {},
    }


@functools.lru_cache(maxsize=16)
def within_budget(write: Callable[..., Any], budget: int) -> Callable[..., Any]:
    """A storage write of a run that fails (and so rolls back) when the run it leaves is over
    the run budget: updates and deployments add to what a request alone brings. (Cached: each
    run of a bulk create would otherwise make its own.)"""

    def checked(conn: Connection, *args: Any) -> Any:
        result = write(conn, *args)
        check_row(result[0] if isinstance(result, tuple) else result, budget)
        return result

    return checked


# A JSON value encoded as a protobuf Struct takes at most this many times its bytes as JSON
# (the worst: a list of small numbers, 2 JSON bytes and 11 protobuf bytes an item).
STRUCT_PER_JSON_BYTE = 6
# Room for everything in a run row but its JSON and free-form strings: ids, times, numbers.
FIXED_FIELDS_BYTES = 4096
STRING_COLUMNS = (
    "name",
    "deployment_version",
    "work_queue_name",
    "work_pool_name",
    "idempotency_key",
    "flow_version",
    "infrastructure_pid",
)


def check_row(row: Any, budget: int) -> None:
    """LIMIT_EXCEEDED when the run (a row as storage returns it) weighs more than the budget
    without its state. Measured exactly (a FlowRun built) only when a cheap upper bound from its
    JSON and strings is over the budget: most runs are far below it."""
    documents = (
        row.parameters,
        row.context,
        row.labels,
        row.job_variables,
        row.tags,
        row.empirical_policy,
        row.created_by,
    )
    strings = sum(len(getattr(row, name) or "") for name in STRING_COLUMNS)
    bound = STRUCT_PER_JSON_BYTE * len(orjson.dumps(documents)) + 4 * strings + FIXED_FIELDS_BYTES
    if bound > budget:
        check_run_size(run_size(flow_run_pb2.FlowRun(**c.flow_run_fields(row, 0))), budget)


def initial_state(request: Any, now: int, default: StateType) -> State:
    """The state a create request asks for, or the default (Pending, or Scheduled now)."""
    if request.HasField("state"):
        return c.proposed_state(request.state, now)
    return new_state(default, now)


def flow_run_create(request: Any, now: int, budget: int) -> RunCreate:
    """A CreateFlowRunRequest as its create (INVALID_ARGUMENT when malformed or over budget)."""
    values = {
        **run_values(request),
        "flow_id": c.require_id(request.flow_id, "flow_id"),
        "flow_version": c.optional(request, "flow_version"),
        "infrastructure_document_id": c.optional_id(
            request.infrastructure_document_id, "infrastructure_document_id"
        ),
        "deployment_id": c.optional_id(request.deployment_id, "deployment_id"),
    }
    check_run_size(run_size(request), budget)
    state = initial_state(request, now, StateType.PENDING)
    pool = c.optional(request, "work_pool_name")
    write = (flow_runs.create_flow_run, (values, state, now, pool))
    return RunCreate(write, values, state, now, work_pool_name=pool)


def deployment_run_create(request: Any, now: int, budget: int) -> RunCreate:
    """A CreateFlowRunFromDeploymentRequest as its create: the run budget is checked on the run
    the deployment's values were merged into."""
    deployment_id = c.require_id(request.deployment_id, "deployment_id")
    state = initial_state(request, now, StateType.SCHEDULED)
    values = run_values(request)
    write = (
        within_budget(deployments.create_flow_run, budget),
        (deployment_id, values, state, now),
    )
    return RunCreate(write, values, state, now, deployment_id=deployment_id)
