"""WorkPoolService."""

from __future__ import annotations

from typing import Any

from flowrpc.server.ids import now_micros
from flowrpc.server.services import convert as c
from flowrpc.server.services.flows import require_name
from flowrpc.server.storage import work_pools as storage
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.v1 import work_pool_service_pb2 as pb
from flowrpc.v1 import work_pool_service_pb2_grpc


class WorkPoolService(work_pool_service_pb2_grpc.WorkPoolServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def CreateWorkPool(self, request: pb.CreateWorkPoolRequest, context: Any) -> Any:
        values = {
            "name": require_name(request.name),
            "description": c.optional(request, "description"),
            "type": request.type or "process",
            "base_job_template": c.plain_struct(request, "base_job_template") or {},
            "is_paused": request.is_paused,
            "concurrency_limit": c.optional_count(request, "concurrency_limit"),
        }
        row = await self.db.write(storage.create_work_pool, values, now_micros())
        return pb.CreateWorkPoolResponse(work_pool=c.work_pool_to_proto(row))

    async def GetWorkPool(self, request: pb.GetWorkPoolRequest, context: Any) -> Any:
        row = await self.db.read(storage.get_work_pool, require_name(request.name))
        return pb.GetWorkPoolResponse(work_pool=c.work_pool_to_proto(row))

    async def ListWorkPools(self, request: pb.ListWorkPoolsRequest, context: Any) -> Any:
        filters = c.filters(request.work_pools, "work_pools")
        rows = await self.db.read(
            storage.list_work_pools, filters, c.limit_of(request), c.offset_of(request)
        )
        return pb.ListWorkPoolsResponse(work_pools=[c.work_pool_to_proto(r) for r in rows])

    async def DeleteWorkPool(self, request: pb.DeleteWorkPoolRequest, context: Any) -> Any:
        await self.db.write(storage.delete_work_pool, require_name(request.name))
        return pb.DeleteWorkPoolResponse()

    async def CreateWorkQueue(self, request: pb.CreateWorkQueueRequest, context: Any) -> Any:
        values = {
            "name": require_name(request.name),
            "description": c.optional(request, "description"),
            "is_paused": request.is_paused,
            "concurrency_limit": c.optional_count(request, "concurrency_limit"),
            "priority": c.optional_count(request, "priority"),
        }
        pool = require_name(request.work_pool_name, "work_pool_name")
        row = await self.db.write(storage.create_work_queue, pool, values, now_micros())
        return pb.CreateWorkQueueResponse(work_queue=c.work_queue_to_proto(row))

    async def ListWorkQueues(self, request: pb.ListWorkQueuesRequest, context: Any) -> Any:
        pool = require_name(request.work_pool_name, "work_pool_name")
        rows = await self.db.read(storage.list_work_queues, pool)
        return pb.ListWorkQueuesResponse(work_queues=[c.work_queue_to_proto(r) for r in rows])
