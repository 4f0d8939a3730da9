"""What a newcomer missed against Prefect's client, through a real server with both clients:
delete_flow and delete_deployment, read_deployment_by_name's errors, one-line error text."""

from __future__ import annotations

import inspect

import pytest

from flowrpc.client import (
    FlowRPCClient,
    InvalidRequest,
    ObjectNotFound,
    SyncFlowRPCClient,
)
from flowrpc.states import Pending


async def test_delete_flow_takes_its_deployments_and_runs(client):
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(flow_id, "nightly")
    run = await client.create_flow_run_from_deployment(deployment_id, state=Pending())
    other = await client.create_flow_from_name("reports")

    assert await client.delete_flow(flow_id) is None
    for read, object_id in [
        (client.read_flow, flow_id),
        (client.read_deployment, deployment_id),
        (client.read_flow_run, run.id),
    ]:
        with pytest.raises(ObjectNotFound):
            await read(object_id)
    assert [flow.id for flow in await client.read_flows()] == [other]
    with pytest.raises(ObjectNotFound, match="not found"):
        await client.delete_flow(flow_id)


async def test_delete_deployment_keeps_its_runs(client):
    flow_id = await client.create_flow_from_name("etl")
    deployment_id = await client.create_deployment(flow_id, "nightly")
    run = await client.create_flow_run_from_deployment(deployment_id, state=Pending())

    assert await client.delete_deployment(deployment_id) is None
    with pytest.raises(ObjectNotFound):
        await client.read_deployment(deployment_id)
    with pytest.raises(ObjectNotFound):
        await client.read_deployment_by_name("etl/nightly")
    assert (await client.read_flow_run(run.id)).deployment_id is None
    assert (await client.read_flow(flow_id)).name == "etl"
    with pytest.raises(ObjectNotFound, match="not found"):
        await client.delete_deployment(deployment_id)


async def test_read_deployment_by_name_errors(client):
    flow_id = await client.create_flow_from_name("etl")
    await client.create_deployment(flow_id, "nightly")
    for missing in ["etl/daily", "other/nightly"]:
        with pytest.raises(ObjectNotFound, match="not found"):
            await client.read_deployment_by_name(missing)
    # Prefect's form, "<flow name>/<deployment name>", both parts present, checked before a call.
    for malformed in ["nightly", "etl/", "/nightly", "etl/nightly/extra", ""]:
        with pytest.raises(ValueError, match="'<flow name>/<deployment name>'") as caught:
            await client.read_deployment_by_name(malformed)
        assert not isinstance(caught.value, InvalidRequest)


async def test_error_text_is_one_line_saying_each_thing_once(client):
    with pytest.raises(InvalidRequest) as caught:
        await client.read_flow("not-a-uuid")
    assert str(caught.value) == "id: must be a UUID, got 'not-a-uuid'"
    assert caught.value.field_violations == [("id", "must be a UUID, got 'not-a-uuid'")]

    with pytest.raises(InvalidRequest) as caught:
        await client.read_flow_runs(limit=-1)
    assert str(caught.value).count("limit") == 1
    assert "INVALID_ARGUMENT" not in str(caught.value)
    assert "\n" not in str(caught.value)

    missing = "01970000-0000-7000-8000-0000000000aa"
    with pytest.raises(ObjectNotFound) as caught:
        await client.read_flow_run(missing)
    assert str(caught.value) == f"Flow run '{missing}' not found."
    assert caught.value.reason == "FLOW_RUN_NOT_FOUND"


@pytest.mark.parametrize("cls", [FlowRPCClient, SyncFlowRPCClient])
def test_every_public_method_has_a_docstring(cls):
    methods = [name for name, member in inspect.getmembers(cls) if callable(member)]
    public = [name for name in methods if not name.startswith("_")]
    assert {"delete_flow", "delete_deployment", "delete_flow_run"} <= set(public)
    assert [name for name in public if not getattr(cls, name).__doc__] == []
