"""Schema <-> protobuf conversion through the generic converter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from flowrpc import states
from flowrpc.client import operations
from flowrpc.schemas._proto import to_message, to_python
from flowrpc.schemas.actions import WorkPoolCreate
from flowrpc.schemas.objects import (
    Constant,
    FlowRun,
    FlowRunPolicy,
    Parameter,
    State,
    StateType,
    TaskRun,
    TaskRunPolicy,
    TaskRunResult,
)
from flowrpc.schemas.responses import (
    BulkSetStateResult,
    HistoryResponse,
    OrchestrationResult,
    SetStateStatus,
    StateAcceptDetails,
    StateRejectDetails,
    StateWaitDetails,
)
from flowrpc.schemas.sorting import FlowRunSort
from flowrpc.v1 import (
    flow_run_pb2,
    flow_run_service_pb2,
    orchestration_pb2,
    state_pb2,
    task_run_pb2,
    work_pool_service_pb2,
)

T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
RUN_ID = UUID("01970000-0000-7000-8000-0000000000aa")
FLOW_ID = UUID("01970000-0000-7000-8000-0000000000bb")


def _run_message() -> flow_run_pb2.FlowRun:
    message = flow_run_pb2.FlowRun(
        id=str(RUN_ID),
        name="orange-salamander",
        flow_id=str(FLOW_ID),
        state_type=state_pb2.STATE_TYPE_SCHEDULED,
        state_name="Late",
        run_count=2,
        tags=["a", "b"],
        work_queue_name="",
        infrastructure_pid="1234",
        empirical_policy=flow_run_pb2.FlowRunPolicy(retries=3, retry_delay=10, pause_keys=["k"]),
        created_by=flow_run_pb2.CreatedBy(type="SCHEDULE"),
        state=state_pb2.State(
            id=str(uuid4()),
            type=state_pb2.STATE_TYPE_SCHEDULED,
            name="Late",
            message="late!",
            state_details=state_pb2.StateDetails(flow_run_id=str(RUN_ID)),
        ),
    )
    message.expected_start_time.FromDatetime(T0)
    message.state.timestamp.FromDatetime(T0)
    message.state.state_details.scheduled_time.FromDatetime(T0)
    message.total_run_time.FromTimedelta(timedelta(seconds=42.5))
    message.parameters.update({"n": 3, "x": 1.5, "nested": {"k": [1, "two", None]}})
    message.labels.update({"prefect.flow.id": str(FLOW_ID)})
    return message


def test_flow_run_from_proto_has_python_types():
    run = FlowRun.from_proto(_run_message())
    assert run.id == RUN_ID
    assert run.flow_id == FLOW_ID
    assert run.state_type is StateType.SCHEDULED
    assert run.state_name == "Late"
    assert run.run_count == 2
    assert run.expected_start_time == T0
    assert run.expected_start_time.tzinfo is UTC
    assert run.start_time is None
    assert run.end_time is None
    assert run.total_run_time == timedelta(seconds=42.5)
    assert run.estimated_run_time == timedelta(0)
    assert run.deployment_id is None  # empty id string -> None
    assert run.work_queue_name == ""  # optional string present but empty stays ""
    assert run.infrastructure_pid == "1234"
    assert run.parameters == {"n": 3, "x": 1.5, "nested": {"k": [1, "two", None]}}
    assert type(run.parameters["n"]) is int
    assert run.labels == {"prefect.flow.id": str(FLOW_ID)}
    assert run.empirical_policy == FlowRunPolicy(retries=3, retry_delay=10, pause_keys={"k"})
    assert run.created_by.type == "SCHEDULE"
    assert run.created_by.id is None
    assert run.state.is_scheduled()
    assert run.state.name == "Late"
    assert run.state.timestamp == T0
    assert run.state.state_details.scheduled_time == T0
    assert run.state.state_details.flow_run_id == RUN_ID


def test_flow_run_round_trip():
    run = FlowRun.from_proto(_run_message())
    again = FlowRun.from_proto(run.to_proto(flow_run_pb2.FlowRun))
    assert again == run


def test_flow_run_equality_ignores_estimates():
    run = FlowRun.from_proto(_run_message())
    later = run.model_copy(update={"estimated_run_time": timedelta(seconds=9)})
    assert later == run
    assert run.model_copy(update={"run_count": 3}) != run


def test_state_round_trip_with_data_and_details():
    state = states.Paused(
        timeout_seconds=30, pause_key="k", message="wait", data={"storage_key": "abc", "n": 1}
    )
    message = state.to_proto(state_pb2.State)
    assert message.type == state_pb2.STATE_TYPE_PAUSED
    assert message.state_details.pause_key == "k"
    assert message.data.struct_value["storage_key"] == "abc"
    again = State.from_proto(message)
    assert again.id == state.id
    assert again.timestamp == state.timestamp
    assert again.data == {"storage_key": "abc", "n": 1}
    assert again.state_details == state.state_details


def test_proposal_strips_id_and_timestamp():
    state = states.Completed(message="done")
    proposal = to_message(state_pb2.State, operations._proposal(state, transition_id=RUN_ID))
    assert proposal.id == ""
    assert not proposal.HasField("timestamp")
    assert proposal.name == "Completed"
    assert proposal.message == "done"
    assert proposal.state_details.transition_id == str(RUN_ID)


def test_orchestration_result_details_from_the_oneof():
    reject = orchestration_pb2.OrchestrationResult(
        status=orchestration_pb2.SET_STATE_STATUS_REJECT,
        reject=orchestration_pb2.RejectDetails(reason="This run is already completed."),
        state=state_pb2.State(id=str(uuid4()), type=state_pb2.STATE_TYPE_COMPLETED),
    )
    result = OrchestrationResult.from_proto(reject)
    assert result.status is SetStateStatus.REJECT
    assert result.details == StateRejectDetails(reason="This run is already completed.")
    assert result.details.type == "reject_details"
    assert result.state.is_completed()

    wait = orchestration_pb2.OrchestrationResult(
        status=orchestration_pb2.SET_STATE_STATUS_WAIT,
        wait=orchestration_pb2.WaitDetails(
            delay_seconds=12, reason="Scheduled time is in the future"
        ),
    )
    result = OrchestrationResult.from_proto(wait)
    assert result.details == StateWaitDetails(
        delay_seconds=12, reason="Scheduled time is in the future"
    )
    assert result.state is None

    accept = orchestration_pb2.OrchestrationResult(
        status=orchestration_pb2.SET_STATE_STATUS_ACCEPT, accept=orchestration_pb2.AcceptDetails()
    )
    assert OrchestrationResult.from_proto(accept).details == StateAcceptDetails()


def test_bulk_result_and_history_items():
    item = flow_run_service_pb2.BulkSetFlowRunStateResult(
        flow_run_id=str(RUN_ID),
        result=orchestration_pb2.OrchestrationResult(
            status=orchestration_pb2.SET_STATE_STATUS_ABORT,
            abort=orchestration_pb2.AbortDetails(reason="Run is already in terminal state."),
        ),
    )
    results = [
        BulkSetStateResult.model_validate(
            {"flow_run_id": item.flow_run_id, **to_python(item.result)}
        )
    ]
    assert results[0].flow_run_id == RUN_ID
    assert results[0].status is SetStateStatus.ABORT
    assert results[0].details.reason == "Run is already in terminal state."

    interval = flow_run_service_pb2.StreamFlowRunHistoryResponse()
    interval.interval_start.FromDatetime(T0)
    interval.interval_end.FromDatetime(T0 + timedelta(hours=1))
    summary = interval.states.add(
        state_type=state_pb2.STATE_TYPE_COMPLETED, state_name="Completed", count_runs=4
    )
    summary.sum_estimated_run_time.FromTimedelta(timedelta(seconds=8))
    history = HistoryResponse.from_proto(interval)
    assert history.interval_start == T0
    assert history.interval_end == T0 + timedelta(hours=1)
    assert history.states[0].state_type is StateType.COMPLETED
    assert history.states[0].count_runs == 4
    assert history.states[0].sum_estimated_run_time == timedelta(seconds=8)
    assert history.states[0].sum_estimated_lateness == timedelta(0)


def test_task_run_inputs_and_retry_delay_round_trip():
    upstream = uuid4()
    run = TaskRun(
        id=uuid4(),
        name="t-1",
        task_key="t",
        dynamic_key="1",
        empirical_policy=TaskRunPolicy(retries=2, retry_delay=[1, 5]),
        task_inputs={
            "x": [TaskRunResult(id=upstream), Parameter(name="p")],
            "y": [Constant(type="int")],
        },
    )
    message = run.to_proto(task_run_pb2.TaskRun)
    assert (
        message.task_inputs["x"].inputs[0].input_type == task_run_pb2.TASK_RUN_INPUT_TYPE_TASK_RUN
    )
    assert message.task_inputs["x"].inputs[0].id == str(upstream)
    assert list(message.empirical_policy.retry_delay) == [1, 5]
    again = TaskRun.from_proto(message)
    assert again.task_inputs["x"] == [TaskRunResult(id=upstream), Parameter(name="p")]
    assert again.task_inputs["y"] == [Constant(type="int")]
    assert again.empirical_policy.retry_delay == [1, 5]

    single = TaskRunPolicy(retry_delay=5).to_proto(task_run_pb2.TaskRunPolicy)
    assert list(single.retry_delay) == [5]
    assert TaskRunPolicy.from_proto(single).retry_delay == 5


def test_request_building_for_list_and_update():
    request = to_message(
        flow_run_service_pb2.ListFlowRunsRequest,
        {"filter": {"flow_runs": {"name": {"like_": "x"}}}, "sort": FlowRunSort.END_TIME_DESC},
    )
    assert request.sort == flow_run_pb2.FLOW_RUN_SORT_END_TIME_DESC
    assert not request.HasField("limit")  # limit=None: the server default
    assert request.filter.flow_runs.name.like == "x"
    assert not request.filter.HasField("deployments")

    update = to_message(
        flow_run_service_pb2.UpdateFlowRunRequest,
        {"flow_run": {"id": RUN_ID, "tags": []}, "update_mask": ["tags"]},
    )
    assert update.flow_run.id == str(RUN_ID)
    assert list(update.update_mask.paths) == ["tags"]


def test_struct_values_accept_non_json_python():
    request = to_message(
        flow_run_service_pb2.CreateFlowRunRequest,
        {"flow_id": FLOW_ID, "parameters": {"when": T0, "id": RUN_ID}},
    )
    assert request.parameters["when"] == "2025-06-01T12:00:00.123456Z"
    assert request.parameters["id"] == str(RUN_ID)


def test_work_pool_create_is_strict_and_converts():
    pool = WorkPoolCreate(name="pool", concurrency_limit=3)
    request = to_message(work_pool_service_pb2.CreateWorkPoolRequest, pool)
    assert request.name == "pool"
    assert request.type == "process"
    assert request.concurrency_limit == 3
    assert not request.HasField("description")


def test_unknown_keys_never_vanish_into_a_request():
    with pytest.raises(ValueError, match="no field"):
        to_message(flow_run_service_pb2.ListFlowRunsRequest, {"limitt": 3})
