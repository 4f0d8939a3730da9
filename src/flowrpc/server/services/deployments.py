"""DeploymentService."""

from __future__ import annotations

from typing import Any

from flowrpc.server.ids import now_micros
from flowrpc.server.limits import run_budget
from flowrpc.server.services import convert as c
from flowrpc.server.services.creates import deployment_run_create
from flowrpc.server.services.flows import require_name
from flowrpc.server.storage import deployments as storage
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.v1 import deployment_service_pb2 as pb
from flowrpc.v1 import deployment_service_pb2_grpc


class DeploymentService(deployment_service_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def CreateDeployment(self, request: pb.CreateDeploymentRequest, context: Any) -> Any:
        d = request.deployment
        values = {
            "name": require_name(d.name, "deployment.name"),
            "flow_id": c.require_id(d.flow_id, "deployment.flow_id"),
            "version": c.optional(d, "version"),
            "description": c.optional(d, "description"),
            "paused": d.paused,
            "tags": list(d.tags),
            "labels": c.plain_struct(d, "labels", "deployment.labels") or {},
            "parameters": c.plain_struct(d, "parameters", "deployment.parameters") or {},
            "job_variables": c.plain_struct(d, "job_variables", "deployment.job_variables") or {},
            "work_queue_name": c.optional(d, "work_queue_name"),
            "entrypoint": c.optional(d, "entrypoint"),
            "path": c.optional(d, "path"),
        }
        pool = c.optional(d, "work_pool_name")
        row, created = await self.db.write(storage.create_deployment, values, pool, now_micros())
        return pb.CreateDeploymentResponse(deployment=c.deployment_to_proto(row), created=created)

    async def GetDeployment(self, request: pb.GetDeploymentRequest, context: Any) -> Any:
        row = await self.db.read(storage.get_deployment, c.require_id(request.id, "id"))
        return pb.GetDeploymentResponse(deployment=c.deployment_to_proto(row))

    async def GetDeploymentByName(
        self, request: pb.GetDeploymentByNameRequest, context: Any
    ) -> Any:
        row = await self.db.read(
            storage.get_deployment_by_name,
            require_name(request.flow_name, "flow_name"),
            require_name(request.deployment_name, "deployment_name"),
        )
        return pb.GetDeploymentByNameResponse(deployment=c.deployment_to_proto(row))

    async def ListDeployments(self, request: pb.ListDeploymentsRequest, context: Any) -> Any:
        filters = {
            key: c.filters(getattr(request, key), key)
            for key in ("flows", "deployments", "work_pools", "work_pool_queues")
            if request.HasField(key)
        }
        rows = await self.db.read(
            storage.list_deployments, filters, c.limit_of(request), c.offset_of(request)
        )
        return pb.ListDeploymentsResponse(deployments=[c.deployment_to_proto(r) for r in rows])

    async def DeleteDeployment(self, request: pb.DeleteDeploymentRequest, context: Any) -> Any:
        await self.db.write(storage.delete_deployment, c.require_id(request.id, "id"))
        return pb.DeleteDeploymentResponse()

    async def CreateFlowRunFromDeployment(
        self, request: pb.CreateFlowRunFromDeploymentRequest, context: Any
    ) -> Any:
        now = now_micros()
        write, args = deployment_run_create(request, now, run_budget(self.settings)).write
        row, created = await self.db.write(write, *args)
        return pb.CreateFlowRunFromDeploymentResponse(
            flow_run=c.flow_run_fields(row, now), created=created
        )
