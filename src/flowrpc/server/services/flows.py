"""FlowService."""

from __future__ import annotations

from typing import Any

from flowrpc.server.errors import InvalidArgument
from flowrpc.server.ids import now_micros
from flowrpc.server.services import convert as c
from flowrpc.server.storage import flows as storage
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.v1 import flow_service_pb2 as pb
from flowrpc.v1 import flow_service_pb2_grpc


def require_name(value: str, field: str = "name") -> str:
    if not value:
        raise InvalidArgument({field: "is required"})
    return value


class FlowService(flow_service_pb2_grpc.FlowServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def CreateFlow(self, request: pb.CreateFlowRequest, context: Any) -> Any:
        values = {
            "name": require_name(request.name),
            "tags": list(request.tags),
            "labels": c.plain_struct(request, "labels") or {},
        }
        row, created = await self.db.write(storage.create_flow, values, now_micros())
        return pb.CreateFlowResponse(flow=c.flow_to_proto(row), created=created)

    async def GetFlow(self, request: pb.GetFlowRequest, context: Any) -> Any:
        row = await self.db.read(storage.get_flow, c.require_id(request.id, "id"))
        return pb.GetFlowResponse(flow=c.flow_to_proto(row))

    async def GetFlowByName(self, request: pb.GetFlowByNameRequest, context: Any) -> Any:
        row = await self.db.read(storage.get_flow_by_name, require_name(request.name))
        return pb.GetFlowByNameResponse(flow=c.flow_to_proto(row))

    async def ListFlows(self, request: pb.ListFlowsRequest, context: Any) -> Any:
        filters = c.filters(request.flows, "flows")
        rows = await self.db.read(
            storage.list_flows, filters, c.limit_of(request), c.offset_of(request)
        )
        return pb.ListFlowsResponse(flows=[c.flow_to_proto(row) for row in rows])

    async def DeleteFlow(self, request: pb.DeleteFlowRequest, context: Any) -> Any:
        await self.db.write(storage.delete_flow, c.require_id(request.id, "id"))
        return pb.DeleteFlowResponse()
