"""AssetService."""

from __future__ import annotations

from typing import Any

from flowrpc.server.errors import InvalidArgument
from flowrpc.server.ids import now_micros
from flowrpc.server.limits import fitted
from flowrpc.server.services import convert as c
from flowrpc.server.storage import assets as storage
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.v1 import asset_service_pb2 as pb
from flowrpc.v1 import asset_service_pb2_grpc

MAX_KEY_LENGTH = 512  # Prefect's bound on asset keys; also what the key index can hold
DEFAULT_MATERIALIZATIONS = 20
MAX_MATERIALIZATIONS = 1000


class AssetService(asset_service_pb2_grpc.AssetServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def CreateAssetMaterialization(
        self, request: pb.CreateAssetMaterializationRequest, context: Any
    ) -> Any:
        if not request.asset_keys:
            raise InvalidArgument({"asset_keys": "at least one asset key is required"})
        timestamp = c.micros(request, "timestamp")
        values = {
            "asset_keys": _keys(request.asset_keys, "asset_keys"),
            "upstream_keys": _keys(request.upstream_keys, "upstream_keys"),
            "task_run_id": c.require_id(request.task_run_id, "task_run_id"),
            "flow_run_id": c.optional_id(request.flow_run_id, "flow_run_id"),
            "timestamp": now_micros() if timestamp is None else timestamp,
        }
        rows = await self.db.write(storage.create_materialization, values, DEFAULT_MATERIALIZATIONS)
        response = pb.CreateAssetMaterializationResponse(assets=[asset_to_proto(r) for r in rows])
        return fitted(response, "assets", lambda kept: None)

    async def ListAssets(self, request: pb.ListAssetsRequest, context: Any) -> Any:
        keys = list(request.keys.values) if request.HasField("keys") else None
        count = DEFAULT_MATERIALIZATIONS
        if request.HasField("materializations"):
            count = request.materializations
            if not 0 <= count <= MAX_MATERIALIZATIONS:
                raise InvalidArgument(
                    {"materializations": f"must be from 0 to {MAX_MATERIALIZATIONS}, got {count}"}
                )
        rows = await self.db.read(
            storage.list_assets, keys, c.limit_of(request), c.offset_of(request), count
        )
        response = pb.ListAssetsResponse(assets=[asset_to_proto(r) for r in rows])
        return fitted(response, "assets", lambda kept: None)


def _keys(keys: Any, field: str) -> list[str]:
    for index, key in enumerate(keys):
        if not key:
            raise InvalidArgument({f"{field}[{index}]": "an asset key may not be empty"})
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidArgument(
                {
                    f"{field}[{index}]": f"{len(key)} characters, over the {MAX_KEY_LENGTH} an "
                    "asset key may have"
                }
            )
    return list(keys)


def asset_to_proto(row: Any) -> dict[str, Any]:
    """An Asset message, as its constructor takes it."""
    return {
        "key": row.key,
        "created": c.timestamp(row.created),
        "upstream_keys": row.upstream_keys,
        "materialization_count": row.materialization_count,
        "materializations": [
            {
                "task_run_id": m.task_run_id,
                "flow_run_id": m.flow_run_id or "",
                "timestamp": c.timestamp(m.timestamp),
            }
            for m in row.materializations
        ],
    }
