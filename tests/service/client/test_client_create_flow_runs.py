"""create_flow_runs through the async and the sync client: per-run results in order, runs as
their single creates make them, per-run errors, batching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pydantic
import pytest

from flowrpc.client import operations
from flowrpc.schemas.actions import FlowRunCreate, WorkPoolCreate
from flowrpc.schemas.objects import StateType
from flowrpc.schemas.responses import FlowRunCreateSummary
from flowrpc.states import Completed, Pending, Running, Scheduled


async def test_runs_of_flows_and_deployments_with_failures_in_order(client):
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(
        flow_id, "nightly", parameters={"a": 1, "b": 2}, tags=["dep"]
    )
    await client.create_work_pool(WorkPoolCreate(name="pool"))
    later = datetime.now(UTC) + timedelta(days=1)
    results = await client.create_flow_runs(
        [
            FlowRunCreate(flow_id=flow_id, name="plain", parameters={"x": [1, 2]}),
            {"deployment_id": deployment_id, "parameters": {"b": 3}, "tags": ["mine"]},
            FlowRunCreate(flow_id=flow_id, state=Running(), work_pool_name="pool"),
            FlowRunCreate(flow_id=uuid4()),
            FlowRunCreate(deployment_id=deployment_id, state=Scheduled(scheduled_time=later)),
            FlowRunCreate(flow_id=flow_id, work_pool_name="no-such-pool"),
            FlowRunCreate(flow_id=flow_id, state=Completed(data={"result": 42}), tags=["t"]),
        ]
    )
    assert [r.error is None for r in results] == [True, True, True, False, True, False, True]
    plain, from_deployment, running, _, scheduled, _, completed = (r.flow_run for r in results)
    assert plain.name == "plain" and plain.parameters == {"x": [1, 2]}
    assert plain.state.is_pending() and plain.flow_id == flow_id
    assert from_deployment.parameters == {"a": 1, "b": 3}
    assert sorted(from_deployment.tags) == ["dep", "mine"]
    assert from_deployment.state.is_scheduled() and from_deployment.deployment_id == deployment_id
    assert running.state.is_running() and running.run_count == 1
    assert running.work_pool_name == "pool" and running.work_queue_name == "default"
    assert scheduled.next_scheduled_start_time == later
    assert completed.state.is_completed() and completed.state.data == {"result": 42}
    assert all(r.created for r in results if r.error is None)

    missing_flow, missing_pool = results[3].error, results[5].error
    assert (missing_flow.code, missing_flow.reason) == ("NOT_FOUND", "FLOW_NOT_FOUND")
    assert (missing_pool.code, missing_pool.reason) == ("NOT_FOUND", "WORK_POOL_NOT_FOUND")
    assert "no-such-pool" in missing_pool.message
    # Each run is stored as its result says, and only those runs.
    stored = await client.read_flow_run(running.id)
    assert stored.state.is_running() and stored.start_time == running.start_time
    assert await client.count_flow_runs() == 5


async def test_invalid_initial_state_is_a_field_violation_of_that_run(client):
    flow_id = await client.create_flow_from_name("etl")
    results = await client.create_flow_runs(
        [
            FlowRunCreate(flow_id=flow_id, state=Completed(data={"loss": float("nan")})),
            FlowRunCreate(flow_id=flow_id),
        ]
    )
    error = results[0].error
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert list(error.field_violations) == ["flow_run.state.data.loss"]
    assert "finite" in error.field_violations["flow_run.state.data.loss"]
    assert results[1].flow_run is not None


async def test_idempotency_keys_within_and_across_calls(client):
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(flow_id, "nightly")
    single = await client.create_flow_run_from_deployment(deployment_id, idempotency_key="old")
    runs = [
        FlowRunCreate(flow_id=flow_id, idempotency_key="k", name="first"),
        FlowRunCreate(flow_id=flow_id, idempotency_key="k", name="second"),
        FlowRunCreate(deployment_id=deployment_id, idempotency_key="old"),
    ]
    first = await client.create_flow_runs(runs)
    assert [r.created for r in first] == [True, False, False]
    assert first[1].flow_run.id == first[0].flow_run.id and first[1].flow_run.name == "first"
    assert first[2].flow_run.id == single.id
    again = await client.create_flow_runs(runs)
    assert [r.created for r in again] == [False, False, False]
    assert [r.flow_run.id for r in again] == [r.flow_run.id for r in first]


async def test_runs_travel_in_batches_and_come_back_in_order(client, monkeypatch):
    """Batches of at most CREATE_BATCH_RUNS runs and CREATE_BATCH_BYTES bytes (made small here),
    a run larger than a batch's bytes alone in its message."""
    monkeypatch.setattr(operations, "CREATE_BATCH_RUNS", 3)
    monkeypatch.setattr(operations, "CREATE_BATCH_BYTES", 2_000)
    flow_id = await client.create_flow_from_name("etl")
    runs = [FlowRunCreate(flow_id=flow_id, name=f"run-{i}") for i in range(10)]
    runs[4] = FlowRunCreate(flow_id=flow_id, name="run-4", parameters={"big": "x" * 5_000})
    messages = list(operations._create_messages(runs, 0))
    assert [len(m.runs) for m in messages] == [3, 1, 1, 3, 2]
    results = await client.create_flow_runs(runs)
    assert [r.flow_run.name for r in results] == [f"run-{i}" for i in range(10)]
    assert results[4].flow_run.parameters == {"big": "x" * 5_000}


async def test_an_empty_list_creates_nothing(client):
    assert await client.create_flow_runs([]) == []


async def test_malformed_specs_fail_before_anything_is_sent(client):
    flow_id = await client.create_flow_from_name("etl")
    with pytest.raises(pydantic.ValidationError, match="needs a flow_id or a deployment_id"):
        await client.create_flow_runs([FlowRunCreate(flow_id=flow_id), {"name": "orphan"}])
    with pytest.raises(pydantic.ValidationError, match="work_pool_name: only for a run of a flow"):
        FlowRunCreate(deployment_id=uuid4(), work_pool_name="pool")
    assert await client.count_flow_runs() == 0


async def test_a_run_of_a_flow_may_name_a_deployment(client):
    """As Prefect's FlowRunCreate: flow_id with deployment_id makes a run of the flow that
    records the deployment (not a run created from it)."""
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(flow_id, "nightly", parameters={"a": 1})
    [result] = await client.create_flow_runs(
        [FlowRunCreate(flow_id=flow_id, deployment_id=deployment_id, state=Pending())]
    )
    assert result.flow_run.deployment_id == deployment_id
    assert result.flow_run.parameters == {}  # nothing merged from the deployment


async def test_the_basic_view_returns_ids_states_and_errors(client):
    """view="basic": a FlowRunCreateSummary a run, saying what the full view would (the run
    read back has that id, name and state; the same errors; a key used again: created False)."""
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(flow_id, "nightly")
    runs = [
        FlowRunCreate(flow_id=flow_id, name="keyed", idempotency_key="k"),
        FlowRunCreate(deployment_id=deployment_id, state=Running()),
        FlowRunCreate(flow_id=uuid4()),
        FlowRunCreate(flow_id=flow_id, idempotency_key="k", name="same key"),
        FlowRunCreate(flow_id=flow_id, state=Completed(data={"loss": float("nan")})),
    ]
    basic = await client.create_flow_runs(runs, view="basic")
    assert all(isinstance(r, FlowRunCreateSummary) for r in basic)
    assert [r.created for r in basic] == [True, True, False, False, False]
    assert basic[3].id == basic[0].id and basic[3].name == "keyed"
    for summary in (basic[0], basic[1]):
        stored = await client.read_flow_run(summary.id)
        assert (stored.name, stored.state.type, stored.state.name) == (
            summary.name,
            summary.state_type,
            summary.state_name,
        )
    assert (basic[1].state_type, basic[1].state_name) == (StateType.RUNNING, "Running")

    full = await client.create_flow_runs(runs)
    assert [r.error for r in full] == [r.error for r in basic]
    assert (basic[2].error.code, basic[2].error.reason) == ("NOT_FOUND", "FLOW_NOT_FOUND")
    assert list(basic[4].error.field_violations) == ["flow_run.state.data.loss"]
    assert full[0].flow_run.id == basic[0].id and not full[0].created
    assert full[1].flow_run.state.type == basic[1].state_type
    assert await client.count_flow_runs() == 3  # keyed once, the deployment's run twice


async def test_an_unknown_view_is_refused_before_anything_is_sent(client):
    flow_id = await client.create_flow_from_name("etl")
    with pytest.raises(ValueError, match="view must be 'full' or 'basic'"):
        await client.create_flow_runs([FlowRunCreate(flow_id=flow_id)], view="ids")
    assert await client.count_flow_runs() == 0


async def test_integers_beyond_what_json_fields_hold_exactly_are_refused(client):
    flow_id = await client.create_flow_from_name("ids")
    edge = {"max": 2**53, "min": -(2**53), "list": [2**53 - 1]}
    [result] = await client.create_flow_runs([FlowRunCreate(flow_id=flow_id, parameters=edge)])
    assert (await client.read_flow_run(result.flow_run.id)).parameters == edge

    too_large = {"nested": {"id": [2**53 + 1]}}
    with pytest.raises(ValueError, match=r"9007199254740993 cannot be sent exactly"):
        await client.create_flow_runs([FlowRunCreate(flow_id=flow_id, parameters=too_large)])
    with pytest.raises(ValueError, match=r"-9007199254740993 cannot be sent exactly"):
        await client.create_flow_run(
            SimpleNamespace(name="ids"), flow_id=flow_id, parameters={"id": -(2**53) - 1}
        )
    assert await client.count_flow_runs() == 1
