"""LogService."""

from __future__ import annotations

from typing import Any

from flowrpc.server.errors import InvalidArgument
from flowrpc.server.ids import now_micros
from flowrpc.server.services import convert as c
from flowrpc.server.services.pages import PageTokens, is_time
from flowrpc.server.storage import logs as storage
from flowrpc.server.storage.database import Database
from flowrpc.settings import Settings
from flowrpc.v1 import log_pb2, log_service_pb2_grpc
from flowrpc.v1 import log_service_pb2 as pb


class LogService(log_service_pb2_grpc.LogServiceServicer):
    def __init__(self, db: Database, settings: Settings, page_tokens: PageTokens) -> None:
        self.db = db
        self.settings = settings
        self.page_tokens = page_tokens

    async def CreateLogs(self, request: pb.CreateLogsRequest, context: Any) -> Any:
        now = now_micros()
        records = _records(request.logs, now)
        created = await self.db.write(storage.create_logs, records, now)
        return pb.CreateLogsResponse(created=created)

    async def ListLogs(self, request: pb.ListLogsRequest, context: Any) -> Any:
        filters = c.filters(request.logs, "logs")
        sort = c.enum_name(log_pb2.LogSort.DESCRIPTOR, request.sort, "sort")
        sort = "TIMESTAMP_ASC" if sort == "UNSPECIFIED" else sort
        limit, offset = c.limit_of(request), c.offset_of(request)
        after = self.page_tokens.position(request.page_token, offset, request.logs, sort, is_time)
        rows = await self.db.read(storage.list_logs, filters, sort, limit + 1, offset, after)
        response = pb.ListLogsResponse(logs=[log_to_proto(row) for row in rows[:limit]])
        # Messages may be up to max_json_bytes each: a page holds fewer when they are.
        return self.page_tokens.fitted_page(
            response, "logs", rows, request.logs, sort, lambda row: row.timestamp
        )


def _records(logs: Any, now: int) -> list[dict[str, Any]]:
    """The records to store. A batch mostly names one run: each distinct id is checked once."""
    ids: dict[str, str | None] = {"": None}

    def checked(value: str, path: str) -> str | None:
        if value not in ids:
            ids[value] = c.require_id(value, path)
        return ids[value]

    records = []
    for index, item in enumerate(logs):
        flow_run_id = checked(item.flow_run_id, f"logs[{index}].flow_run_id")
        if flow_run_id is None:
            raise InvalidArgument({f"logs[{index}].flow_run_id": "a flow run id is required"})
        timestamp = c.micros(item, "timestamp", f"logs[{index}].timestamp")
        records.append(
            {
                "flow_run_id": flow_run_id,
                "task_run_id": checked(item.task_run_id, f"logs[{index}].task_run_id"),
                "name": item.name,
                "level": item.level,
                "message": item.message,
                "timestamp": now if timestamp is None else timestamp,
            }
        )
    return records


def log_to_proto(row: Any) -> dict[str, Any]:
    """A Log message, as its constructor takes it."""
    return {
        "id": row.id,
        "created": c.timestamp(row.created),
        "name": row.name,
        "level": row.level,
        "message": row.message,
        "timestamp": c.timestamp(row.timestamp),
        "flow_run_id": row.flow_run_id,
        "task_run_id": row.task_run_id or "",
    }
