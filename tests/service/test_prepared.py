"""Prepared statements store and read exactly what SQLAlchemy would: the same bytes in every
column (JSON, JSON null, omitted columns, scalar defaults, booleans) and the same result rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from flowrpc.server.ids import new_id, now_micros
from flowrpc.server.storage import tables as t
from flowrpc.server.storage.database import Database
from flowrpc.server.storage.prepared import Prepared

INSERT = Prepared(sa.insert(t.flow_run))
UPDATE = Prepared(sa.update(t.flow_run).where(t.flow_run.c.id == sa.bindparam("run_id")))
READ = Prepared(
    sa.select(t.flow_run, t.flow.c.labels.label("flow_labels"))
    .join(t.flow, t.flow.c.id == t.flow_run.c.flow_id)
    .where(t.flow_run.c.id == sa.bindparam("run_id"))
)


def _run(flow_id: str, name: str) -> dict:
    # Some columns left out (their defaults apply), one JSON column given as None.
    return {
        "id": new_id(),
        "created": now_micros(),
        "updated": now_micros(),
        "name": name,
        "flow_id": flow_id,
        "parameters": {"n": 3, "nested": {"ok": True, "items": [1.5, None, "x"]}},
        "context": None,
        "tags": ["etl", "nightly"],
        "state_type": "SCHEDULED",
    }


def _stored(conn, run_id: str) -> tuple:
    """The run's columns as the driver returns them (JSON as text on SQLite), but the id."""
    row = conn.execute(sa.text("SELECT * FROM flow_run WHERE id = :id"), {"id": run_id}).one()
    return tuple(row[1:])


@contextlib.contextmanager
def _transaction_with_a_flow(database) -> Iterator[tuple[sa.Connection, str]]:
    """A write transaction on the migrated test database, and the id of a flow made in it."""
    db = Database(database.database_url)
    db.migrate()
    try:
        with db._write_engine.begin() as conn:
            flow_id, now = new_id(), now_micros()
            conn.execute(
                sa.insert(t.flow).values(
                    id=flow_id, created=now, updated=now, name="f", labels={"team": "data"}
                )
            )
            yield conn, flow_id
    finally:
        db.close()


def test_prepared_statements_match_sqlalchemy(database):
    with _transaction_with_a_flow(database) as (conn, flow_id):
        ours, theirs = _run(flow_id, "same"), _run(flow_id, "same")
        theirs["created"] = theirs["updated"] = ours["created"]
        INSERT.execute(conn, ours)
        conn.execute(sa.insert(t.flow_run), theirs)
        change = {"updated": 7, "run_count": 2, "auto_scheduled": True, "job_variables": None}
        UPDATE.execute(conn, [{**change, "run_id": ours["id"]}])
        conn.execute(UPDATE.statement, {**change, "run_id": theirs["id"]})

        assert _stored(conn, ours["id"]) == _stored(conn, theirs["id"])
        ours_read = READ.first(conn, {"run_id": ours["id"]})
        theirs_read = conn.execute(READ.statement, {"run_id": theirs["id"]}).first()
        assert dict(ours_read._mapping) == {**theirs_read._mapping, "id": ours["id"]}
        assert ours_read.flow_labels == {"team": "data"}
        assert ours_read.auto_scheduled is True
        assert READ.first(conn, {"run_id": new_id()}) is None
        with pytest.raises(sa.exc.IntegrityError):  # as SQLAlchemy raises it
            INSERT.execute(conn, {**_run(flow_id, "again"), "id": ours["id"]})


def test_many_rows_past_one_statements_bound_values_are_all_stored_as_given(database):
    # 32 columns a run: SQLite binds at most 32,766 values a statement, so 2,500 runs take
    # three INSERT statements; every run is stored as SQLAlchemy stores it, none twice.
    with _transaction_with_a_flow(database) as (conn, flow_id):
        runs = [_run(flow_id, f"run-{i}") for i in range(2500)]
        INSERT.execute(conn, runs)
        reference = {**_run(flow_id, "run-0"), "created": runs[0]["created"]}
        reference["updated"] = runs[0]["updated"]
        conn.execute(sa.insert(t.flow_run), reference)
        count = sa.select(sa.func.count()).select_from(t.flow_run)
        assert conn.execute(count).scalar() == 2501
        assert _stored(conn, runs[0]["id"]) == _stored(conn, reference["id"])
        names = conn.execute(sa.select(t.flow_run.c.id, t.flow_run.c.name)).all()
        assert {(r["id"], r["name"]) for r in runs} <= set(map(tuple, names))


def test_columns_none_in_some_rows_or_in_every_row_are_stored_as_given(database):
    # On SQLite a column None in every row of a statement is written NULL rather than bound.
    with _transaction_with_a_flow(database) as (conn, flow_id):
        runs = [
            {
                **_run(flow_id, f"run-{i}"),
                "idempotency_key": f"key-{i}" if i % 2 else None,
                "infrastructure_pid": None,
                "run_count": i,
            }
            for i in range(10)
        ]
        INSERT.execute(conn, runs)
        run = t.flow_run.c
        columns = (run.name, run.idempotency_key, run.infrastructure_pid, run.run_count)
        stored = sorted(map(tuple, conn.execute(sa.select(*columns))))
        assert stored == [(r["name"], r["idempotency_key"], None, r["run_count"]) for r in runs]
