"""Generated stubs on an async channel to the test server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import grpc
import pytest

from flowrpc.v1 import (
    asset_service_pb2_grpc,
    deployment_service_pb2_grpc,
    flow_run_service_pb2_grpc,
    flow_service_pb2_grpc,
    log_service_pb2_grpc,
    task_run_service_pb2_grpc,
    work_pool_service_pb2_grpc,
)


@pytest.fixture
async def stubs(flowrpc_server: str) -> AsyncIterator[SimpleNamespace]:
    async with grpc.aio.insecure_channel(flowrpc_server) as channel:
        yield SimpleNamespace(
            channel=channel,
            flow_runs=flow_run_service_pb2_grpc.FlowRunServiceStub(channel),
            flows=flow_service_pb2_grpc.FlowServiceStub(channel),
            deployments=deployment_service_pb2_grpc.DeploymentServiceStub(channel),
            work_pools=work_pool_service_pb2_grpc.WorkPoolServiceStub(channel),
            task_runs=task_run_service_pb2_grpc.TaskRunServiceStub(channel),
            logs=log_service_pb2_grpc.LogServiceStub(channel),
            assets=asset_service_pb2_grpc.AssetServiceStub(channel),
        )
