"""The two clients are thin drivers over one set of operations."""

from __future__ import annotations

import ast
import inspect
import pathlib

import pytest

import flowrpc
from flowrpc import get_client
from flowrpc.client import FlowRPCClient, SyncFlowRPCClient
from flowrpc.client.protocol import OPERATIONS

PREFECT_METHODS = {
    "hello",
    "create_flow",
    "create_flow_from_name",
    "read_flow",
    "read_flows",
    "delete_flow",
    "create_deployment",
    "read_deployment",
    "read_deployment_by_name",
    "read_deployments",
    "delete_deployment",
    "create_work_pool",
    "read_work_pools",
    "create_flow_run",
    "create_flow_run_from_deployment",
    "read_flow_run",
    "read_flow_runs",
    "count_flow_runs",
    "update_flow_run",
    "delete_flow_run",
    "set_flow_run_state",
    "resume_flow_run",
    "read_flow_run_states",
    "read_flow_run_graph",
    "create_task_run",
    "set_task_run_state",
    "read_task_runs",
    "create_logs",
    "read_logs",
}
# What REST could not do (streams), and history in one call (Prefect has only its route).
BEYOND_PREFECT = {
    "read_flow_run_history",
    "stream_flow_run_history",
    "bulk_set_flow_run_state",
    "bulk_delete_flow_runs",
    "iter_flow_runs",
    "start_task_run",
    "start_flow_run",
    "set_task_run_states",
    "start_task_runs",
    "iter_logs",
    "create_asset_materialization",
    "read_assets",
    "watch_flow_runs",
}


def test_both_clients_have_every_operation_with_the_same_signature():
    assert set(OPERATIONS) >= PREFECT_METHODS | BEYOND_PREFECT
    for name in OPERATIONS:
        async_method = getattr(FlowRPCClient, name)
        sync_method = getattr(SyncFlowRPCClient, name)
        assert inspect.signature(async_method) == inspect.signature(sync_method)
        assert async_method.__doc__ == sync_method.__doc__
        is_iterator = OPERATIONS[name][1]
        assert inspect.iscoroutinefunction(async_method) == (not is_iterator)
        assert not inspect.iscoroutinefunction(sync_method)


def test_prefect_keyword_arguments():
    parameters = inspect.signature(FlowRPCClient.read_flow_runs).parameters
    assert list(parameters) == [
        "self",
        "flow_filter",
        "flow_run_filter",
        "task_run_filter",
        "deployment_filter",
        "work_pool_filter",
        "work_queue_filter",
        "sort",
        "limit",
        "offset",
    ]
    assert list(inspect.signature(SyncFlowRPCClient.set_flow_run_state).parameters) == [
        "self",
        "flow_run_id",
        "state",
        "force",
    ]


def test_get_client_returns_the_right_kind():
    assert isinstance(get_client(), FlowRPCClient)
    assert isinstance(get_client(sync_client=True), SyncFlowRPCClient)
    assert flowrpc.get_client is get_client


async def test_a_client_must_be_entered_before_use():
    with pytest.raises(RuntimeError, match="not open"):
        await get_client().read_flow_run("x")
    with pytest.raises(RuntimeError, match="not open"):
        get_client(sync_client=True).read_flow_run("x")


async def test_nested_entering_shares_one_channel():
    client = get_client(api_url="127.0.0.1:1")
    async with client:
        channel = client._channel
        async with client:
            assert client._channel is channel
        assert client._channel is channel
    assert client._channel is None


def test_client_never_imports_the_server():
    root = pathlib.Path(flowrpc.__file__).parent
    files = [*root.joinpath("client").rglob("*.py"), *root.joinpath("schemas").rglob("*.py")]
    files.append(root / "states.py")
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("flowrpc.server"), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("flowrpc.server") for a in node.names), path
