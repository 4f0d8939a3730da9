"""Log records of flow runs and task runs. They reference their flow run with ON DELETE CASCADE,
so deleting a flow run (alone, in bulk, or with its flow) deletes its logs in the same
transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from flowrpc.server.errors import InvalidArgument, not_found, quote
from flowrpc.server.ids import new_id
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.filters import (
    Criterion,
    Filter,
    _combine,
    compiler_for,
    is_null,
    time_range,
)

log = t.log.c
SORTS = {
    "TIMESTAMP_ASC": (log.timestamp.asc(), log.id.asc()),
    "TIMESTAMP_DESC": (log.timestamp.desc(), log.id.desc()),
}


INSERTED = ("id", "created", "flow_run_id", "task_run_id", "name", "level", "message", "timestamp")
_INSERT = f"INSERT INTO log ({', '.join(INSERTED)}) VALUES ({{}})"


def create_logs(conn: Connection, records: list[dict[str, Any]], now: int) -> int:
    """Inserts the records, all or none, after checking that their runs exist and that each
    task run belongs to the record's flow run. Ids are minted in order, so records of one
    batch with the same timestamp keep their order."""
    if not records:
        return 0
    _check_runs(conn, records)
    rows = [
        (new_id(), now, r["flow_run_id"], r["task_run_id"], r["name"], r["level"], r["message"],
         r["timestamp"])
        for r in records
    ]  # fmt: skip
    # Straight to the driver: SQLAlchemy's per-row parameter handling took as long as SQLite's
    # insert of the rows (about 7 µs a record).
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(_INSERT.format(", ".join([marker] * len(INSERTED))), rows)
    return len(rows)


def _check_runs(conn: Connection, records: list[dict[str, Any]]) -> None:
    lists = compiler_for(conn).lists
    flow_run_ids = sorted({r["flow_run_id"] for r in records})
    found = set(
        conn.execute(
            sa.select(t.flow_run.c.id).where(lists.one_of(t.flow_run.c.id, flow_run_ids))
        ).scalars()
    )
    for flow_run_id in flow_run_ids:
        if flow_run_id not in found:
            raise not_found("flow run", flow_run_id)
    task_run_ids = sorted({r["task_run_id"] for r in records if r["task_run_id"]})
    if not task_run_ids:
        return
    owners = dict(
        conn.execute(
            sa.select(t.task_run.c.id, t.task_run.c.flow_run_id).where(
                lists.one_of(t.task_run.c.id, task_run_ids)
            )
        ).all()
    )
    for index, record in enumerate(records):
        task_run_id = record["task_run_id"]
        if not task_run_id:
            continue
        if task_run_id not in owners:
            raise not_found("task run", task_run_id)
        if owners[task_run_id] != record["flow_run_id"]:
            raise InvalidArgument(
                {
                    f"logs[{index}].task_run_id": f"task run {quote(task_run_id)} belongs to "
                    f"flow run {quote(owners[task_run_id])}, not {quote(record['flow_run_id'])}"
                }
            )


def list_logs(
    conn: Connection,
    filters: Filter,
    sort: str,
    limit: int,
    offset: int,
    after: tuple[int, str] | None = None,
) -> list[Row[Any]]:
    """Records in `sort` order; with `after` (timestamp, id), those that come after it."""
    query = sa.select(t.log).where(log_criteria(conn, filters))
    if after is not None:
        timestamp, log_id = after
        later = (log.timestamp > timestamp) | ((log.timestamp == timestamp) & (log.id > log_id))
        earlier = (log.timestamp < timestamp) | ((log.timestamp == timestamp) & (log.id < log_id))
        query = query.where(later if sort == "TIMESTAMP_ASC" else earlier)
    query = query.order_by(*SORTS[sort]).limit(limit).offset(offset)
    return list(conn.execute(query))


def log_criteria(conn: Connection, f: Filter) -> Criterion:
    """Prefect's LogFilter as SQL (see storage/filters.py for the dict form)."""
    lists = compiler_for(conn).lists
    criteria: list[Criterion] = []
    if "level" in f:
        if "ge" in f["level"]:
            criteria.append(log.level >= f["level"]["ge"])
        if "le" in f["level"]:
            criteria.append(log.level <= f["level"]["le"])
    if "timestamp" in f:
        criteria += time_range(log.timestamp, f["timestamp"])
    if "flow_run_id" in f:
        criteria += lists.any_of(log.flow_run_id, f["flow_run_id"])
    if "task_run_id" in f:
        sub = f["task_run_id"]
        criteria += lists.any_of(log.task_run_id, sub) + is_null(log.task_run_id, sub)
    return _combine(f, criteria)
