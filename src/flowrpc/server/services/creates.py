"""How a create request becomes a storage write: one path for CreateFlowRun,
CreateFlowRunFromDeployment and each run of CreateFlowRuns, so a run created in bulk is created
exactly as a single create would create it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection

from flowrpc.server.limits import check_run_size, run_size
from flowrpc.server.orchestration.records import State, StateType
from flowrpc.server.orchestration.states import new_state
from flowrpc.server.services import convert as c
from flowrpc.server.storage import deployments, flow_runs
from flowrpc.v1 import flow_run_pb2

# A storage write and its arguments after the connection: `fn(conn, *args)` -> (run, created).
Write = tuple[Callable[..., Any], tuple[Any, ...]]


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


def flow_run_write(request: Any, now: int, budget: int) -> Write:
    """A CreateFlowRunRequest as its write (INVALID_ARGUMENT when malformed or over budget)."""
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
    return flow_runs.create_flow_run, (values, state, now, pool)


def deployment_run_write(request: Any, now: int, budget: int) -> Write:
    """A CreateFlowRunFromDeploymentRequest as its write: the run budget is checked on the run
    the deployment's values were merged into."""
    deployment_id = c.require_id(request.deployment_id, "deployment_id")
    state = initial_state(request, now, StateType.SCHEDULED)
    create = within_budget(deployments.create_flow_run, budget)
    return create, (deployment_id, run_values(request), state, now)
