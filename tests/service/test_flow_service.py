"""FlowService: idempotent create by name, get, get by name, list, delete."""

from __future__ import annotations

import grpc
import pytest
from helpers import error_info, get_run, make_flow, make_run, strings

from flowrpc.v1 import filter_pb2 as f
from flowrpc.v1 import flow_service_pb2 as fl


async def test_create_flow_is_idempotent_by_name(stubs):
    first = await stubs.flows.CreateFlow(fl.CreateFlowRequest(name="etl", tags=["a"]))
    again = await stubs.flows.CreateFlow(fl.CreateFlowRequest(name="etl", tags=["b"]))
    other = await stubs.flows.CreateFlow(fl.CreateFlowRequest(name="ml"))
    assert first.created is True and again.created is False and other.created is True
    assert again.flow.id == first.flow.id
    assert list(again.flow.tags) == ["a"]  # the existing flow, unchanged
    assert other.flow.id != first.flow.id


async def test_get_flow_by_id_and_by_name(stubs):
    flow = await make_flow(stubs, "etl", tags=["x"])
    by_id = (await stubs.flows.GetFlow(fl.GetFlowRequest(id=flow.id))).flow
    by_name = (await stubs.flows.GetFlowByName(fl.GetFlowByNameRequest(name="etl"))).flow
    assert by_id.name == "etl" and list(by_id.tags) == ["x"]
    assert by_name.id == flow.id
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.flows.GetFlowByName(fl.GetFlowByNameRequest(name="nope"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "FLOW_NOT_FOUND"


async def test_list_flows_by_name_with_filter_limit_and_offset(stubs):
    for name in ("c", "a", "b"):
        await make_flow(stubs, name, tags=["even"] if name != "b" else [])
    listed = (await stubs.flows.ListFlows(fl.ListFlowsRequest())).flows
    assert [flow.name for flow in listed] == ["a", "b", "c"]
    page = (await stubs.flows.ListFlows(fl.ListFlowsRequest(limit=1, offset=1))).flows
    assert [flow.name for flow in page] == ["b"]
    tagged = f.FlowFilter(tags=f.FlowFilterTags(all_of=strings("even")))
    filtered = (await stubs.flows.ListFlows(fl.ListFlowsRequest(flows=tagged))).flows
    assert [flow.name for flow in filtered] == ["a", "c"]


async def test_delete_flow_deletes_its_runs(stubs):
    flow = await make_flow(stubs)
    run = await make_run(stubs, flow.id)
    await stubs.flows.DeleteFlow(fl.DeleteFlowRequest(id=flow.id))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.flows.GetFlow(fl.GetFlowRequest(id=flow.id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await get_run(stubs, run.id)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_create_flow_without_name_is_invalid(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stubs.flows.CreateFlow(fl.CreateFlowRequest(name=""))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_create_run_of_a_missing_flow_is_not_found(stubs):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await make_run(stubs, "00000000-0000-7000-8000-000000000000")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(raised.value).reason == "FLOW_NOT_FOUND"
