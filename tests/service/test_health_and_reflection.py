"""Standard services: grpc.health.v1 and server reflection."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

FLOWRPC_SERVICES = {
    "flowrpc.v1.FlowRunService",
    "flowrpc.v1.FlowService",
    "flowrpc.v1.DeploymentService",
    "flowrpc.v1.WorkPoolService",
    "flowrpc.v1.TaskRunService",
    "flowrpc.v1.LogService",
    "flowrpc.v1.AssetService",
}


@pytest.mark.parametrize("service", ["", *sorted(FLOWRPC_SERVICES)])
async def test_health_check_reports_serving(stubs, service):
    health = health_pb2_grpc.HealthStub(stubs.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_check_of_an_unknown_service_is_not_found(stubs):
    health = health_pb2_grpc.HealthStub(stubs.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def reflect(stubs, request):
    stub = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    call = stub.ServerReflectionInfo(iter([request]))
    return [response async for response in call]


async def test_reflection_lists_the_flowrpc_services(stubs):
    (response,) = await reflect(stubs, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in response.list_services_response.service}
    assert names >= FLOWRPC_SERVICES
    assert "grpc.health.v1.Health" in names


async def test_reflection_describes_a_service(stubs):
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="flowrpc.v1.FlowRunService"
    )
    (response,) = await reflect(stubs, request)
    protos = response.file_descriptor_response.file_descriptor_proto
    files = [descriptor_pb2.FileDescriptorProto.FromString(p) for p in protos]
    by_name = {file.name: file for file in files}
    service_file = by_name["flowrpc/v1/flow_run_service.proto"]
    methods = {m.name for m in service_file.service[0].method}
    assert {"CreateFlowRun", "StreamFlowRunHistory", "BulkSetFlowRunState"} <= methods
