"""Every client operation, written once (see `protocol`): PrefectClient's names and keyword
arguments, then flowrpc's streaming extras. Both clients get one method per function here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowrpc.client.protocol import Call, Exchange, Items, Operation, Stream, iterator, unary
from flowrpc.schemas._proto import fill, jsonable, to_message, to_python
from flowrpc.schemas.actions import FlowRunCreate, LogCreate, TaskRunStart, WorkPoolCreate
from flowrpc.schemas.filters import (
    DeploymentFilter,
    FlowFilter,
    FlowRunFilter,
    LogFilter,
    TaskRunFilter,
    WorkPoolFilter,
    WorkQueueFilter,
    filter_set,
)
from flowrpc.schemas.objects import (
    Asset,
    Deployment,
    Flow,
    FlowRun,
    Log,
    State,
    TaskRun,
    TaskRunInput,
    WorkPool,
)
from flowrpc.schemas.responses import (
    BulkSetStateResult,
    DependencyResult,
    FlowRunCreateError,
    FlowRunCreateResult,
    FlowRunCreateSummary,
    FlowRunWatchEvent,
    HistoryResponse,
    OrchestrationResult,
    StartedTaskRun,
)
from flowrpc.schemas.sorting import FlowRunSort, LogSort
from flowrpc.states import Pending, Scheduled
from flowrpc.v1 import asset_service_pb2 as assets_pb
from flowrpc.v1 import (
    asset_service_pb2_grpc,
    deployment_service_pb2_grpc,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    log_pb2,
    log_service_pb2_grpc,
    state_pb2,
    task_run_service_pb2_grpc,
    work_pool_service_pb2_grpc,
)
from flowrpc.v1 import deployment_service_pb2 as deployments_pb
from flowrpc.v1 import flow_run_service_pb2 as flow_runs_pb
from flowrpc.v1 import flow_service_pb2 as flows_pb
from flowrpc.v1 import log_service_pb2 as logs_pb
from flowrpc.v1 import task_run_service_pb2 as task_runs_pb
from flowrpc.v1 import work_pool_service_pb2 as work_pools_pb

HEALTH = health_pb2_grpc.HealthStub
FLOWS = flow_service_pb2_grpc.FlowServiceStub
FLOW_RUNS = flow_run_service_pb2_grpc.FlowRunServiceStub
DEPLOYMENTS = deployment_service_pb2_grpc.DeploymentServiceStub
WORK_POOLS = work_pool_service_pb2_grpc.WorkPoolServiceStub
TASK_RUNS = task_run_service_pb2_grpc.TaskRunServiceStub
LOGS = log_service_pb2_grpc.LogServiceStub
ASSETS = asset_service_pb2_grpc.AssetServiceStub

IdLike = UUID | str


def _proposal(state: State, **details: Any) -> dict[str, Any]:
    """A state as proposed to the server: without id and timestamp, which the server assigns."""
    proposed = state.model_dump(exclude={"id", "timestamp"}, exclude_none=True)
    proposed["state_details"].update(details)
    return proposed


# ---- health ----


@unary
def hello() -> Operation:
    """Checks that the server is serving (grpc.health.v1 Check); returns "SERVING"."""
    response = yield Call(HEALTH, "Check", health_pb2.HealthCheckRequest())
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


# ---- flows ----


@unary
def create_flow(flow: Any) -> Operation:
    """Creates the flow named `flow.name` (or finds it); returns its id."""
    return (yield from create_flow_from_name(flow.name))


@unary
def create_flow_from_name(flow_name: str) -> Operation:
    """Creates a flow by name (or finds it); returns its id."""
    response = yield Call(FLOWS, "CreateFlow", flows_pb.CreateFlowRequest(name=flow_name))
    return UUID(response.flow.id)


@unary
def read_flow(flow_id: IdLike) -> Operation:
    """The flow with this id; ObjectNotFound if there is none."""
    response = yield Call(FLOWS, "GetFlow", flows_pb.GetFlowRequest(id=str(flow_id)))
    return Flow.from_proto(response.flow)


@unary
def read_flow_by_name(flow_name: str) -> Operation:
    """The flow of this name; ObjectNotFound if there is none."""
    request = flows_pb.GetFlowByNameRequest(name=flow_name)
    response = yield Call(FLOWS, "GetFlowByName", request)
    return Flow.from_proto(response.flow)


@unary
def read_flows(
    *, flow_filter: FlowFilter | None = None, limit: int | None = None, offset: int = 0
) -> Operation:
    """Flows matching the filter, by name. limit=None means the server default (200)."""
    request = to_message(
        flows_pb.ListFlowsRequest, {"flows": flow_filter, "limit": limit, "offset": offset}
    )
    response = yield Call(FLOWS, "ListFlows", request)
    return Flow.from_protos(response.flows)


@unary
def delete_flow(flow_id: IdLike) -> Operation:
    """Deletes the flow with its deployments and runs; ObjectNotFound if there is none."""
    yield Call(FLOWS, "DeleteFlow", flows_pb.DeleteFlowRequest(id=str(flow_id)))


# ---- deployments ----


@unary
def create_deployment(
    flow_id: IdLike,
    name: str,
    *,
    version: str | None = None,
    parameters: dict[str, Any] | None = None,
    description: str | None = None,
    work_queue_name: str | None = None,
    work_pool_name: str | None = None,
    tags: list[str] | None = None,
    path: str | None = None,
    entrypoint: str | None = None,
    paused: bool | None = None,
    job_variables: dict[str, Any] | None = None,
    labels: dict[str, Any] | None = None,
) -> Operation:
    """Creates (or replaces) the flow's deployment of this name; returns its id."""
    # The arguments are Deployment fields by name; unset ones stay unset.
    deployment = {key: value for key, value in locals().items() if value is not None}
    request = to_message(deployments_pb.CreateDeploymentRequest, {"deployment": deployment})
    response = yield Call(DEPLOYMENTS, "CreateDeployment", request)
    return UUID(response.deployment.id)


@unary
def read_deployment(deployment_id: IdLike) -> Operation:
    """The deployment with this id; ObjectNotFound if there is none."""
    request = deployments_pb.GetDeploymentRequest(id=str(deployment_id))
    response = yield Call(DEPLOYMENTS, "GetDeployment", request)
    return Deployment.from_proto(response.deployment)


@unary
def read_deployment_by_name(name: str) -> Operation:
    """The deployment named "<flow name>/<deployment name>" (as Prefect's); ObjectNotFound if
    there is none, ValueError if `name` is not of that form."""
    parts = name.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"A deployment name is '<flow name>/<deployment name>', e.g. 'etl/nightly'; "
            f"got {name[:100]!r}"
        )
    flow_name, deployment_name = parts
    request = deployments_pb.GetDeploymentByNameRequest(
        flow_name=flow_name, deployment_name=deployment_name
    )
    response = yield Call(DEPLOYMENTS, "GetDeploymentByName", request)
    return Deployment.from_proto(response.deployment)


@unary
def read_deployments(
    *,
    flow_filter: FlowFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Operation:
    """Deployments matching every given filter. limit=None means the server default (200)."""
    request = to_message(
        deployments_pb.ListDeploymentsRequest,
        {
            "flows": flow_filter,
            "deployments": deployment_filter,
            "work_pools": work_pool_filter,
            "work_pool_queues": work_queue_filter,
            "limit": limit,
            "offset": offset,
        },
    )
    response = yield Call(DEPLOYMENTS, "ListDeployments", request)
    return Deployment.from_protos(response.deployments)


@unary
def delete_deployment(deployment_id: IdLike) -> Operation:
    """Deletes the deployment (its runs stay); ObjectNotFound if there is none."""
    request = deployments_pb.DeleteDeploymentRequest(id=str(deployment_id))
    yield Call(DEPLOYMENTS, "DeleteDeployment", request)


# ---- work pools ----


@unary
def create_work_pool(work_pool: WorkPoolCreate) -> Operation:
    """Creates a work pool with its "default" queue; ObjectAlreadyExists if the name is taken."""
    request = to_message(work_pools_pb.CreateWorkPoolRequest, work_pool)
    response = yield Call(WORK_POOLS, "CreateWorkPool", request)
    return WorkPool.from_proto(response.work_pool)


@unary
def read_work_pool(work_pool_name: str) -> Operation:
    """The work pool of this name; ObjectNotFound if there is none."""
    request = work_pools_pb.GetWorkPoolRequest(name=work_pool_name)
    response = yield Call(WORK_POOLS, "GetWorkPool", request)
    return WorkPool.from_proto(response.work_pool)


@unary
def read_work_pools(
    limit: int | None = None, offset: int = 0, work_pool_filter: WorkPoolFilter | None = None
) -> Operation:
    """Work pools matching the filter. limit=None means the server default (200)."""
    request = to_message(
        work_pools_pb.ListWorkPoolsRequest,
        {"work_pools": work_pool_filter, "limit": limit, "offset": offset},
    )
    response = yield Call(WORK_POOLS, "ListWorkPools", request)
    return WorkPool.from_protos(response.work_pools)


# ---- flow runs ----


def _flow_run_request(flow: Any, flow_id: IdLike, **fields: Any) -> dict[str, Any]:
    """CreateFlowRunRequest's fields for a run of `flow` (create_flow_run's arguments)."""
    return {
        **fields,
        "flow_id": flow_id,
        "flow_version": getattr(flow, "version", None),
        "parameters": fields["parameters"] or {},
        "context": fields["context"] or {},
        "tags": list(fields["tags"] or []),
        "state": _proposal(fields["state"] or Pending()),
        "empirical_policy": {
            "retries": getattr(flow, "retries", None),
            "retry_delay": int(getattr(flow, "retry_delay_seconds", None) or 0),
        },
    }


@unary
def create_flow_run(
    flow: Any,
    name: str | None = None,
    parameters: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    parent_task_run_id: IdLike | None = None,
    state: State | None = None,
    work_pool_name: str | None = None,
    work_queue_name: str | None = None,
    job_variables: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    flow_id: IdLike | None = None,
) -> Operation:
    """Creates a run of `flow` (any object with .name; .version, .retries and
    .retry_delay_seconds are used when present), creating the flow first if needed.
    The initial state defaults to Pending. With an idempotency_key, a repeat returns the run
    the key made (and the call is retried on UNAVAILABLE). flow_id: the flow's id when the
    caller knows it (saves the CreateFlow call)."""
    if flow_id is None:
        flow_id = yield from create_flow(flow)
    fields = _flow_run_request(
        flow,
        flow_id,
        name=name,
        parameters=parameters,
        context=context,
        tags=tags,
        parent_task_run_id=parent_task_run_id,
        state=state,
        work_pool_name=work_pool_name,
        work_queue_name=work_queue_name,
        job_variables=job_variables,
        idempotency_key=idempotency_key,
    )
    request = to_message(flow_runs_pb.CreateFlowRunRequest, fields)
    response = yield Call(FLOW_RUNS, "CreateFlowRun", request)
    return FlowRun.from_proto(response.flow_run)


@unary
def create_flow_run_from_deployment(
    deployment_id: IdLike,
    *,
    parameters: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    state: State | None = None,
    name: str | None = None,
    tags: Iterable[str] | None = None,
    idempotency_key: str | None = None,
    parent_task_run_id: IdLike | None = None,
    work_queue_name: str | None = None,
    job_variables: dict[str, Any] | None = None,
    labels: dict[str, Any] | None = None,
) -> Operation:
    """Creates a run of a deployment; the initial state defaults to Scheduled (now)."""
    request = to_message(
        deployments_pb.CreateFlowRunFromDeploymentRequest,
        {
            "deployment_id": deployment_id,
            "parameters": parameters or {},
            "context": context or {},
            "state": _proposal(state or Scheduled()),
            "name": name,
            "tags": list(tags or []),
            "idempotency_key": idempotency_key,
            "parent_task_run_id": parent_task_run_id,
            "work_queue_name": work_queue_name,
            "job_variables": job_variables,
            "labels": labels,
        },
    )
    response = yield Call(DEPLOYMENTS, "CreateFlowRunFromDeployment", request)
    return FlowRun.from_proto(response.flow_run)


# What one CreateFlowRuns message carries at most: the server's bound on runs, and a size well
# within its default max_request_bytes (4 MiB). A larger run goes alone.
CREATE_BATCH_RUNS = 1000
CREATE_BATCH_BYTES = 1024 * 1024


# create_flow_runs' views: what each result carries, and how a response becomes results.
_CREATE_VIEWS = {
    "full": flow_runs_pb.CREATE_FLOW_RUNS_VIEW_FULL,
    "basic": flow_runs_pb.CREATE_FLOW_RUNS_VIEW_BASIC,
}


@unary
def create_flow_runs(
    flow_runs: Iterable[FlowRunCreate | dict[str, Any]],
    *,
    view: Literal["full", "basic"] = "full",
) -> Operation:
    """Creates many runs in one call, each as create_flow_run (flow_id) or
    create_flow_run_from_deployment (deployment_id alone) would: its initial state orchestrated
    the same way, a used idempotency_key returning the existing run. Returns one
    FlowRunCreateResult per run, in order: the run (`created` False for a key already used), or
    the error its single create would have raised. A run that fails fails alone. The runs travel
    in messages of up to 1,000; a call that fails part way raises with the results received
    before on the exception's `partial_results`.

    view="basic" returns a FlowRunCreateSummary per run instead: the run's id, name and state
    type and name (or its error), which is several times cheaper for both sides in a large
    call; read_flow_run reads a whole run."""
    if view not in _CREATE_VIEWS:
        raise ValueError(f"view must be 'full' or 'basic', got {view!r}")
    runs = [FlowRunCreate.model_validate(run) for run in flow_runs]  # all checked before sending
    messages = _create_messages(runs, _CREATE_VIEWS[view])
    results = _create_summaries if view == "basic" else _create_results
    return (yield Exchange(FLOW_RUNS, "CreateFlowRuns", messages, results))


def _create_messages(
    runs: list[FlowRunCreate], view: int
) -> Iterator[flow_runs_pb.CreateFlowRunsRequest]:
    """The runs as CreateFlowRuns messages, built as the stream takes them."""
    message, size = flow_runs_pb.CreateFlowRunsRequest(view=view), 0
    for run in runs:
        create = _run_create(run)
        run_size = create.ByteSize() + 4  # with its tag and length
        if message.runs and (
            len(message.runs) == CREATE_BATCH_RUNS or size + run_size > CREATE_BATCH_BYTES
        ):
            yield message
            message, size = flow_runs_pb.CreateFlowRunsRequest(view=view), 0
        message.runs.append(create)
        size += run_size
    if message.runs:
        yield message


def _run_create(run: FlowRunCreate) -> flow_runs_pb.FlowRunCreate:
    """The run as its single create's request, built field by field (this runs 100,000 times in
    a large call: about five times cheaper than the generic conversion)."""
    values = run.__dict__
    fields: dict[str, Any] = {
        name: str(values[name]) for name in _CREATE_STRINGS if values[name] is not None
    }
    for name in _CREATE_JSON:
        if values[name]:
            fields[name] = jsonable(values[name])
    if run.tags:
        fields["tags"] = run.tags
    if run.empirical_policy is not None:
        fields["empirical_policy"] = run.empirical_policy.model_dump(exclude_none=True)
    if run.flow_id is None:
        request = deployments_pb.CreateFlowRunFromDeploymentRequest(**fields)
        create = flow_runs_pb.FlowRunCreate(from_deployment=request)
        state = create.from_deployment.state
    else:
        create = flow_runs_pb.FlowRunCreate(flow_run=flow_runs_pb.CreateFlowRunRequest(**fields))
        state = create.flow_run.state
    if run.state is not None:
        _fill_state(state, run.state)
    return create


# FlowRunCreate's fields sent as strings (ids too) and as JSON, when set.
_CREATE_STRINGS = (
    "flow_id",
    "deployment_id",
    "name",
    "idempotency_key",
    "parent_task_run_id",
    "work_queue_name",
    "flow_version",
    "work_pool_name",
    "infrastructure_document_id",
)
_CREATE_JSON = ("parameters", "context", "labels", "job_variables")


def _fill_state(message: state_pb2.State, state: State) -> None:
    """A proposed state (no id or timestamp: the server assigns both)."""
    message.type = state_pb2.StateType.Value(f"STATE_TYPE_{state.type.value}")
    message.name = state.name or ""
    if state.message is not None:
        message.message = state.message
    if state.data is not None:
        fill(message.data, state.data)
    details = {
        name: value
        for name, value in state.state_details.__dict__.items()
        if value is not None and value is not False
    }
    if details:
        fill(message.state_details, details)


def _create_results(message: flow_runs_pb.CreateFlowRunsResponse) -> list[FlowRunCreateResult]:
    runs = iter(FlowRun.from_protos(r.flow_run for r in message.results if r.HasField("flow_run")))
    results = []
    for result in message.results:
        if result.HasField("error"):
            results.append(FlowRunCreateResult(error=_create_error(result.error)))
        else:
            results.append(FlowRunCreateResult(flow_run=next(runs), created=result.created))
    return results


def _create_summaries(
    message: flow_runs_pb.CreateFlowRunsResponse,
) -> list[FlowRunCreateSummary]:
    """The BASIC view's results, validated in one call (a dict a run: far cheaper than a model
    built field by field, which counts in a call of 100,000)."""
    results: list[dict[str, Any]] = []
    for result in message.results:
        if result.HasField("error"):
            results.append({"error": _create_error(result.error)})
            continue
        summary = result.summary
        results.append(
            {
                "id": summary.id,
                "name": summary.name,
                "state_type": _STATE_TYPES.get(summary.state_type),
                "state_name": summary.state_name or None,
                "created": result.created,
            }
        )
    return FlowRunCreateSummary.from_dicts(results)


def _create_error(error: flow_runs_pb.FlowRunCreateError) -> FlowRunCreateError:
    return FlowRunCreateError(
        code=_CODE_NAMES.get(error.code, "UNKNOWN"),
        reason=error.reason,
        message=error.message,
        field_violations={v.field: v.description for v in error.field_violations},
    )


_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# StateType numbers as the schema's names (UNSPECIFIED: no state).
_STATE_TYPES = {
    number: name.removeprefix("STATE_TYPE_")
    for name, number in state_pb2.StateType.items()
    if number != state_pb2.STATE_TYPE_UNSPECIFIED
}


@unary
def read_flow_run(flow_run_id: IdLike) -> Operation:
    """The flow run with this id; ObjectNotFound if there is none."""
    request = flow_runs_pb.GetFlowRunRequest(id=str(flow_run_id))
    response = yield Call(FLOW_RUNS, "GetFlowRun", request)
    return FlowRun.from_proto(response.flow_run)


@unary
def read_flow_runs(
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
    sort: FlowRunSort | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Operation:
    """Runs matching every given filter, in `sort` order (default ID_DESC, newest first).
    limit=None means the server default (200); use iter_flow_runs for more."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    request = to_message(
        flow_runs_pb.ListFlowRunsRequest,
        {"filter": filters, "sort": sort, "limit": limit, "offset": offset},
    )
    response = yield Call(FLOW_RUNS, "ListFlowRuns", request)
    return FlowRun.from_protos(response.flow_runs)


@unary
def count_flow_runs(
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
) -> Operation:
    """How many runs match every given filter."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    request = to_message(flow_runs_pb.CountFlowRunsRequest, {"filter": filters})
    response = yield Call(FLOW_RUNS, "CountFlowRuns", request)
    return response.count


@unary
def update_flow_run(
    flow_run_id: IdLike,
    flow_version: str | None = None,
    parameters: dict[str, Any] | None = None,
    name: str | None = None,
    tags: Iterable[str] | None = None,
    empirical_policy: Any = None,
    infrastructure_pid: str | None = None,
    job_variables: dict[str, Any] | None = None,
) -> Operation:
    """Writes the arguments that are not None, each replaced whole; returns the updated run
    (Prefect returns the HTTP response). name="" regenerates a slug."""
    changes = {
        "flow_version": flow_version,
        "parameters": parameters,
        "name": name,
        "tags": None if tags is None else list(tags),
        "empirical_policy": empirical_policy,
        "infrastructure_pid": infrastructure_pid,
        "job_variables": job_variables,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    request = to_message(
        flow_runs_pb.UpdateFlowRunRequest,
        {"flow_run": {"id": flow_run_id, **changes}, "update_mask": list(changes)},
    )
    response = yield Call(FLOW_RUNS, "UpdateFlowRun", request)
    return FlowRun.from_proto(response.flow_run)


@unary
def delete_flow_run(flow_run_id: IdLike) -> Operation:
    """Deletes the flow run with its task runs and logs; ObjectNotFound if there is none."""
    yield Call(FLOW_RUNS, "DeleteFlowRun", flow_runs_pb.DeleteFlowRunRequest(id=str(flow_run_id)))


@unary
def set_flow_run_state(flow_run_id: IdLike, state: State, force: bool = False) -> Operation:
    """Proposes `state`; REJECT/WAIT/ABORT come back in the result, not as exceptions.
    Like Prefect, each call carries a fresh transition_id, so a replayed call is a no-op."""
    request = to_message(
        flow_runs_pb.SetFlowRunStateRequest,
        {
            "flow_run_id": flow_run_id,
            "state": _proposal(state, flow_run_id=flow_run_id, transition_id=uuid4()),
            "force": force,
        },
    )
    response = yield Call(FLOW_RUNS, "SetFlowRunState", request)
    return OrchestrationResult.from_proto(response.result)


@unary
def resume_flow_run(flow_run_id: IdLike, run_input: dict[str, Any] | None = None) -> Operation:
    """Resumes a Paused run (with `run_input` when it waits for input); returns the result."""
    request = to_message(
        flow_runs_pb.ResumeFlowRunRequest, {"flow_run_id": flow_run_id, "run_input": run_input}
    )
    response = yield Call(FLOW_RUNS, "ResumeFlowRun", request)
    return OrchestrationResult.from_proto(response.result)


@unary
def read_flow_run_states(flow_run_id: IdLike) -> Operation:
    """All the run's states, oldest first (read a page at a time)."""
    states, page_token = [], ""
    while True:
        request = flow_runs_pb.ListFlowRunStatesRequest(
            flow_run_id=str(flow_run_id), page_token=page_token
        )
        response = yield Call(FLOW_RUNS, "ListFlowRunStates", request)
        states += State.from_protos(response.states)
        if not (page_token := response.next_page_token):
            return states


@unary
def read_flow_run_graph(flow_run_id: IdLike) -> Operation:
    """The run's task runs with their upstream dependencies."""
    request = flow_runs_pb.GetFlowRunGraphRequest(flow_run_id=str(flow_run_id))
    response = yield Call(FLOW_RUNS, "GetFlowRunGraph", request)
    return DependencyResult.from_protos(response.nodes)


# ---- task runs ----


def _task_run_request(
    task: Any,
    flow_run_id: IdLike | None,
    dynamic_key: str,
    name: str | None,
    extra_tags: Iterable[str] | None,
    state: State | None,
    task_inputs: dict[str, list[TaskRunInput | dict[str, Any]]] | None,
    id: IdLike | None = None,
) -> dict[str, Any]:
    retry_delay = getattr(task, "retry_delay_seconds", None)
    if isinstance(retry_delay, list):
        retry_delay = [int(delay) for delay in retry_delay]
    elif retry_delay is not None:
        retry_delay = int(retry_delay)
    return {
        "flow_run_id": flow_run_id,
        "name": name or f"{task.name}-{dynamic_key}",
        "task_key": getattr(task, "task_key", None) or task.name,
        "dynamic_key": str(dynamic_key),
        "task_version": getattr(task, "version", None),
        "tags": sorted(set(getattr(task, "tags", None) or ()).union(extra_tags or ())),
        "empirical_policy": {
            "retries": getattr(task, "retries", None),
            "retry_delay": retry_delay,
            "retry_jitter_factor": getattr(task, "retry_jitter_factor", None),
        },
        "state": _proposal(state) if state is not None else None,  # unset: Pending
        "task_inputs": task_inputs or {},
        "id": id,
    }


@unary
def create_task_run(
    task: Any,
    flow_run_id: IdLike | None,
    dynamic_key: str,
    name: str | None = None,
    extra_tags: Iterable[str] | None = None,
    state: State | None = None,
    task_inputs: dict[str, list[TaskRunInput | dict[str, Any]]] | None = None,
) -> Operation:
    """Creates a task run of `task` (any object with .name; .task_key, .version, .tags,
    .retries, .retry_delay_seconds and .retry_jitter_factor are used when present)."""
    request = to_message(
        task_runs_pb.CreateTaskRunRequest,
        _task_run_request(task, flow_run_id, dynamic_key, name, extra_tags, state, task_inputs),
    )
    response = yield Call(TASK_RUNS, "CreateTaskRun", request)
    return TaskRun.from_proto(response.task_run)


@unary
def read_task_run(task_run_id: IdLike) -> Operation:
    """The task run with this id; ObjectNotFound if there is none."""
    response = yield Call(
        TASK_RUNS, "GetTaskRun", task_runs_pb.GetTaskRunRequest(id=str(task_run_id))
    )
    return TaskRun.from_proto(response.task_run)


@unary
def read_task_runs(
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Operation:
    """Task runs matching every given filter, newest first. limit=None means the server default
    (200). A page of runs with large states holds fewer: iter_task_runs reads them all."""
    filters = _task_run_filters(flow_filter, flow_run_filter, task_run_filter, deployment_filter)
    fields = {**filters, "limit": limit, "offset": offset}
    request = to_message(task_runs_pb.ListTaskRunsRequest, fields)
    response = yield Call(TASK_RUNS, "ListTaskRuns", request)
    return TaskRun.from_protos(response.task_runs)


@iterator
def iter_task_runs(
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    page_size: int | None = None,
) -> Operation:
    """Every matching task run, newest first, fetched a page at a time with next_page_token.
    page_size=None means the server default (200)."""
    filters = _task_run_filters(flow_filter, flow_run_filter, task_run_filter, deployment_filter)
    fields = {**filters, "limit": page_size}
    request = task_runs_pb.ListTaskRunsRequest
    yield from _pages(TASK_RUNS, "ListTaskRuns", request, fields, lambda r: r.task_runs, TaskRun)


def _task_run_filters(
    flow_filter: FlowFilter | None,
    flow_run_filter: FlowRunFilter | None,
    task_run_filter: TaskRunFilter | None,
    deployment_filter: DeploymentFilter | None,
) -> dict[str, Any]:
    """The filter fields of a ListTaskRunsRequest."""
    return {
        "flows": flow_filter,
        "flow_runs": flow_run_filter,
        "task_runs": task_run_filter,
        "deployments": deployment_filter,
    }


@unary
def set_task_run_state(task_run_id: IdLike, state: State, force: bool = False) -> Operation:
    """Proposes `state` for the task run; REJECT/WAIT/ABORT come back in the result."""
    request = to_message(
        task_runs_pb.SetTaskRunStateRequest,
        {
            "task_run_id": task_run_id,
            "state": _proposal(state, task_run_id=task_run_id),
            "force": force,
        },
    )
    response = yield Call(TASK_RUNS, "SetTaskRunState", request)
    return OrchestrationResult.from_proto(response.result)


# ---- beyond Prefect ----


@unary
def start_flow_run(
    flow: Any,
    running: State,
    name: str | None = None,
    parameters: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    parent_task_run_id: IdLike | None = None,
    state: State | None = None,
    *,
    idempotency_key: str | None = None,
    flow_id: IdLike | None = None,
) -> Operation:
    """create_flow_run, then propose `running` (a Running state) in the same call; returns
    (flow run after the proposal, OrchestrationResult)."""
    if flow_id is None:
        flow_id = yield from create_flow(flow)
    fields = _flow_run_request(
        flow,
        flow_id,
        name=name,
        parameters=parameters,
        context=context,
        tags=tags,
        parent_task_run_id=parent_task_run_id,
        state=state,
        idempotency_key=idempotency_key,
    )
    request = to_message(
        flow_runs_pb.StartFlowRunRequest, {"flow_run": fields, "state": _proposal(running)}
    )
    response = yield Call(FLOW_RUNS, "StartFlowRun", request)
    return FlowRun.from_proto(response.flow_run), OrchestrationResult.from_proto(response.result)


@unary
def start_task_run(
    task: Any,
    flow_run_id: IdLike | None,
    dynamic_key: str,
    running: State,
    name: str | None = None,
    extra_tags: Iterable[str] | None = None,
    state: State | None = None,
    task_inputs: dict[str, list[TaskRunInput | dict[str, Any]]] | None = None,
    *,
    id: IdLike | None = None,
) -> Operation:
    """create_task_run (or find the run with this dynamic key), then propose `running` (a
    Running state, with its cache key) in the same call; returns (task run after the proposal,
    OrchestrationResult). `id`: the new run's id, minted by the caller (a UUID; UUIDv7 keeps
    runs newest first by id); the run found by its key keeps its own, and an id another run
    has is ObjectAlreadyExists."""
    create = _task_run_request(
        task, flow_run_id, dynamic_key, name, extra_tags, state, task_inputs, id
    )
    response = yield Call(TASK_RUNS, "StartTaskRun", _start_request(create, running))
    return TaskRun.from_proto(response.task_run), OrchestrationResult.from_proto(response.result)


def _start_request(
    create: dict[str, Any], running: State, then: Iterable[State] = ()
) -> task_runs_pb.StartTaskRunRequest:
    """A StartTaskRunRequest: the create (_task_run_request's fields), `running`, then `then`
    (the states filled directly: the generic conversion cost a third of the request)."""
    message = to_message(task_runs_pb.StartTaskRunRequest, {"task_run": create})
    _fill_state(message.state, running)
    for state in then:
        _fill_state(message.then.add(), state)
    return message


@unary
def start_task_runs(starts: Iterable[TaskRunStart]) -> Operation:
    """start_task_run for each TaskRunStart, in order, in one call of 1 to 100 (with at most
    100 `then` states in all) and one transaction (all or none: ObjectNotFound for a missing
    flow run); returns one StartedTaskRun (task run id, created, OrchestrationResult without the
    state's data and message, one more per `then` state) per start, not the runs themselves.
    With client-minted ids a caller runs its tasks at once and reports their starts in bulk,
    each with the states that followed it (`then`)."""
    items = [
        _start_request(
            _task_run_request(
                start.task,
                start.flow_run_id,
                start.dynamic_key,
                start.name,
                None,  # extra_tags
                None,  # initial state: Pending
                start.task_inputs,
                start.id,
            ),
            start.running,
            start.then,
        )
        for start in starts
    ]
    request = task_runs_pb.StartTaskRunsRequest(starts=items)
    response = yield Call(TASK_RUNS, "StartTaskRuns", request)
    return StartedTaskRun.from_protos(response.results)


@unary
def set_task_run_states(
    proposals: Iterable[tuple[IdLike, State]], force: bool = False
) -> Operation:
    """Proposes each (task_run_id, state), in order, in one call of at most 100; returns one
    OrchestrationResult per proposal, whose state carries no data and no message."""
    items = [
        to_message(
            task_runs_pb.TaskRunStateProposal,
            {
                "task_run_id": task_run_id,
                "state": _proposal(state, task_run_id=task_run_id),
                "force": force,
            },
        )
        for task_run_id, state in proposals
    ]
    request = task_runs_pb.SetTaskRunStatesRequest(proposals=items)
    response = yield Call(TASK_RUNS, "SetTaskRunStates", request)
    return OrchestrationResult.from_protos(response.results)


# ---- logs ----


_LOG_FIELDS = frozenset(LogCreate.model_fields)


def _log_message(log: LogCreate | Mapping[str, Any], index: int) -> log_pb2.LogCreate:
    """One record as its message, built directly: the generic conversion, through pydantic,
    cost 37 µs a record, more than the server's work on it. Ids are checked by the server."""
    data = dict(log) if isinstance(log, LogCreate) else log
    if unknown := data.keys() - _LOG_FIELDS:
        raise ValueError(f"logs[{index}]: LogCreate has no field {sorted(unknown)[0]!r}")
    try:
        message = log_pb2.LogCreate(name=data["name"], level=data["level"], message=data["message"])
    except KeyError as missing:
        raise ValueError(f"logs[{index}]: a log record needs {missing}") from None
    message.flow_run_id = str(data.get("flow_run_id") or "")
    message.task_run_id = str(data.get("task_run_id") or "")
    if (timestamp := data.get("timestamp")) is not None:
        message.timestamp.FromDatetime(timestamp)  # naive means UTC
    return message


@unary
def create_logs(logs: Iterable[LogCreate | Mapping[str, Any]]) -> Operation:
    """Stores log records (LogCreate objects or dicts of its fields) in one call, all or none;
    returns how many were stored. Each needs a flow_run_id; ObjectNotFound if a flow run or
    task run does not exist. A timestamp left out is the time the server receives the record."""
    messages = [_log_message(log, index) for index, log in enumerate(logs)]
    response = yield Call(LOGS, "CreateLogs", logs_pb.CreateLogsRequest(logs=messages))
    return response.created


@unary
def read_logs(
    log_filter: LogFilter | None = None,
    limit: int | None = None,
    offset: int | None = None,
    sort: LogSort = LogSort.TIMESTAMP_ASC,
) -> Operation:
    """Log records matching the filter, oldest first by default. limit=None means the server
    default (200); a page that would pass 4 MiB holds fewer records, so page on with
    offset + len(page)."""
    request = to_message(
        logs_pb.ListLogsRequest,
        {"logs": log_filter, "limit": limit, "offset": offset, "sort": sort},
    )
    response = yield Call(LOGS, "ListLogs", request)
    return Log.from_protos(response.logs)


@iterator
def iter_logs(
    log_filter: LogFilter | None = None,
    sort: LogSort = LogSort.TIMESTAMP_ASC,
    page_size: int | None = None,
) -> Operation:
    """Every matching log record in `sort` order, fetched a page at a time with
    next_page_token (a constant cost per page however deep). page_size=None means the server
    default (200)."""
    fields = {"logs": log_filter, "sort": sort, "limit": page_size}
    yield from _pages(LOGS, "ListLogs", logs_pb.ListLogsRequest, fields, lambda r: r.logs, Log)


# ---- assets ----


@unary
def create_asset_materialization(
    asset_keys: Iterable[str],
    task_run_id: IdLike,
    flow_run_id: IdLike | None = None,
    upstream_keys: Iterable[str] = (),
    timestamp: datetime | None = None,
) -> Operation:
    """Records that the task run materialized the assets, made from the upstream assets;
    returns those assets (Asset objects) with their lineage."""
    request = to_message(
        assets_pb.CreateAssetMaterializationRequest,
        {
            "asset_keys": list(asset_keys),
            "task_run_id": task_run_id,
            "flow_run_id": flow_run_id,
            "upstream_keys": list(upstream_keys),
            "timestamp": timestamp,
        },
    )
    response = yield Call(ASSETS, "CreateAssetMaterialization", request)
    return Asset.from_protos(response.assets)


@unary
def read_assets(
    keys: Iterable[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
    materializations: int | None = None,
) -> Operation:
    """Assets by key (only `keys` when given), each with its upstream keys and its newest
    materializations (up to `materializations`, default 20, at most 1000)."""
    request = to_message(
        assets_pb.ListAssetsRequest,
        {
            "keys": None if keys is None else list(keys),
            "limit": limit,
            "offset": offset,
            "materializations": materializations,
        },
    )
    response = yield Call(ASSETS, "ListAssets", request)
    return Asset.from_protos(response.assets)


# ---- beyond Prefect: streams and paging ----


@iterator
def iter_flow_runs(
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
    sort: FlowRunSort | None = None,
    page_size: int | None = None,
) -> Operation:
    """Every matching run in `sort` order, fetched a page at a time with next_page_token (a
    constant cost per page however deep). page_size=None means the server default (200)."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    fields = {"filter": filters, "sort": sort, "limit": page_size}
    request = flow_runs_pb.ListFlowRunsRequest
    yield from _pages(FLOW_RUNS, "ListFlowRuns", request, fields, lambda r: r.flow_runs, FlowRun)


def _pages(
    stub: Any,
    method: str,
    message: Any,
    fields: dict[str, Any],
    items: Callable[[Any], Any],
    schema: Any,
) -> Operation:
    """The items of every page of a list paged by next_page_token: `fields` make each request,
    with the page token of the response before."""
    page_token = ""
    while True:
        request = to_message(message, {**fields, "page_token": page_token})
        response = yield Call(stub, method, request)
        yield Items(schema.from_protos(items(response)))
        page_token = response.next_page_token
        if not page_token:
            return


@iterator
def stream_flow_run_history(
    history_start: datetime,
    history_end: datetime,
    history_interval: timedelta | float,
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
) -> Operation:
    """HistoryResponse intervals, oldest first, as the server streams them. history_interval is
    a timedelta or seconds (at least 1 s; at most 500 intervals)."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    request = _history_request(
        flow_runs_pb.StreamFlowRunHistoryRequest,
        history_start,
        history_end,
        history_interval,
        filters,
    )
    yield Stream(
        FLOW_RUNS,
        "StreamFlowRunHistory",
        request,
        lambda message: [HistoryResponse.from_proto(message)],
    )


@unary
def read_flow_run_history(
    history_start: datetime,
    history_end: datetime,
    history_interval: timedelta | float,
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
) -> Operation:
    """stream_flow_run_history's intervals as one list, from one response (cheaper for the
    few hundred intervals a history holds at most: what Prefect's /flow_runs/history route
    returns)."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    request = _history_request(
        flow_runs_pb.ReadFlowRunHistoryRequest,
        history_start,
        history_end,
        history_interval,
        filters,
    )
    response = yield Call(FLOW_RUNS, "ReadFlowRunHistory", request)
    return HistoryResponse.from_protos(response.intervals)


def _history_request(
    message_cls: type[Message],
    history_start: datetime,
    history_end: datetime,
    history_interval: timedelta | float,
    filters: dict[str, Any],
) -> Message:
    return to_message(
        message_cls,
        {
            "history_start": history_start,
            "history_end": history_end,
            "history_interval": history_interval,
            "filter": filters,
        },
    )


@iterator
def bulk_set_flow_run_state(
    state: State,
    force: bool = False,
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
    limit: int | None = None,
) -> Operation:
    """Proposes `state` to every run the filters select (at most `limit`; None means all),
    selected on the server; yields one BulkSetStateResult per run as batches arrive."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    request = to_message(
        flow_runs_pb.BulkSetFlowRunStateRequest,
        {"filter": filters, "state": _proposal(state), "force": force, "limit": limit},
    )

    def results(message: flow_runs_pb.BulkSetFlowRunStateResponse) -> list[BulkSetStateResult]:
        return [
            BulkSetStateResult.model_validate(
                {"flow_run_id": item.flow_run_id, **to_python(item.result)}
            )
            for item in message.results
        ]

    yield Stream(FLOW_RUNS, "BulkSetFlowRunState", request, results)


@iterator
def bulk_delete_flow_runs(
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
    limit: int | None = None,
) -> Operation:
    """Deletes every run the filters select (at most `limit`; None means all); yields the id
    of each deleted run as batches arrive."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    request = to_message(
        flow_runs_pb.BulkDeleteFlowRunsRequest, {"filter": filters, "limit": limit}
    )
    yield Stream(
        FLOW_RUNS,
        "BulkDeleteFlowRuns",
        request,
        lambda message: [UUID(run_id) for run_id in message.deleted_flow_run_ids],
    )


@iterator
def watch_flow_runs(
    *,
    flow_filter: FlowFilter | None = None,
    flow_run_filter: FlowRunFilter | None = None,
    task_run_filter: TaskRunFilter | None = None,
    deployment_filter: DeploymentFilter | None = None,
    work_pool_filter: WorkPoolFilter | None = None,
    work_queue_filter: WorkQueueFilter | None = None,
    since: str | None = None,
    snapshot: bool = True,
) -> Operation:
    """A live stream of FlowRunWatchEvent: the runs the filters select ("snapshot" events; not
    with since or snapshot=False), a "marker", then a "change" for every state change of a
    selected run as it is committed, until the caller stops iterating. since=<an event's
    cursor> resumes after it; a cursor older than the server's retention raises an RPC error
    with reason WATCH_CURSOR_EXPIRED (watch again without since)."""
    filters = filter_set(
        flow_filter,
        flow_run_filter,
        task_run_filter,
        deployment_filter,
        work_pool_filter,
        work_queue_filter,
    )
    request = to_message(
        flow_runs_pb.WatchFlowRunsRequest,
        {"filter": filters, "since": since or "", "skip_snapshot": not snapshot},
    )
    yield Stream(FLOW_RUNS, "WatchFlowRuns", request, _watch_events)


def _watch_events(message: flow_runs_pb.WatchFlowRunsResponse) -> list[FlowRunWatchEvent]:
    kind = message.WhichOneof("event")
    if kind == "snapshot":
        runs = FlowRun.from_protos(message.snapshot.flow_runs)
        return [FlowRunWatchEvent(type="snapshot", flow_run=run) for run in runs]
    if kind == "changes":
        changes = message.changes.changes
        runs = FlowRun.from_protos(change.flow_run for change in changes)
        return [
            FlowRunWatchEvent(type="change", flow_run=run, state=run.state, cursor=change.cursor)
            for run, change in zip(runs, changes, strict=True)
        ]
    if kind in ("marker", "progress"):
        return [FlowRunWatchEvent(type=kind, cursor=getattr(message, kind).cursor)]
    return []  # a kind of message newer than this client
