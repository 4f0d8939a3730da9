"""Prefect's filter objects compiled to SQL criteria.

Filters arrive as plain nested dicts keyed by the proto field names (`{"state": {"type": {"any_of":
["SCHEDULED"]}}, "operator": "OR"}`), with lists for list operands, microseconds for times and
enum names without their prefix. Absent criteria are ignored; each filter object combines its own
criteria with AND, or OR when its operator says so (semantics §3).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from flowrpc.server.storage import tables as t

Filter = Mapping[str, Any]
Criterion = ColumnElement[bool]
REMEMBERED_FILTERS = 256  # flow-run filter sets whose criteria are kept for reuse
REMEMBERED_FILTER_BYTES = 4096  # larger ones (long id lists) are compiled every time
# Lists longer than this are bound as one parameter (see Lists): as many bind parameters cost
# PostgreSQL 1.2 s for 10,000 ids (one array: 0.2 s) and SQLite twice the time of one JSON array.
# Shorter lists keep their parameters, which the query planners see.
LONG_LIST = 100
LIKE_SPECIAL = frozenset("%_\\")  # wildcards, and PostgreSQL's escape character


def _combine(filter_: Filter, criteria: list[Criterion]) -> Criterion:
    if not criteria:
        return sa.true()
    return sa.or_(*criteria) if filter_.get("operator") == "OR" else sa.and_(*criteria)


def _compile(
    filter_: Filter, fields: Mapping[str, Callable[[Filter], list[Criterion]]]
) -> Criterion:
    """Applies each present field's builder and combines the criteria."""
    criteria = [
        c for name, build in fields.items() if name in filter_ for c in build(filter_[name])
    ]
    return _combine(filter_, criteria)


# ---- operators on one column ----


class Lists:
    """List operands of any length as flat SQL: IN and NOT IN, and case-insensitive prefixes."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"

    def rows(self, items: list[Any], type_: Any = sa.String) -> Any:
        """`items` as a table of one column, `value`, bound as one parameter: an array on
        PostgreSQL, a JSON array on SQLite."""
        if self.postgres:
            array = sa.bindparam(None, items, type_=ARRAY(type_))
            return sa.func.unnest(array).table_valued("value").render_derived()
        text = sa.bindparam(None, orjson.dumps(items).decode(), type_=sa.String)
        return sa.func.json_each(text).table_valued("value")

    def operand(self, items: list[Any]) -> Any:
        return items if len(items) <= LONG_LIST else sa.select(self.rows(items).c.value)

    def one_of(self, column: Any, items: list[Any]) -> Criterion:
        return column.in_(self.operand(items)) if items else sa.false()

    def none_of(self, column: Any, items: list[Any]) -> Criterion:
        return column.not_in(self.operand(items))

    def any_of(self, column: Any, sub: Filter) -> list[Criterion]:
        criteria = []
        if "any_of" in sub:
            criteria.append(self.one_of(column, sub["any_of"]))
        if sub.get("not_any_of"):
            criteria.append(self.none_of(column, sub["not_any_of"]))
        return criteria

    def startswith(self, column: Any, prefixes: list[str]) -> Criterion:
        """Whether `column` starts with any of `prefixes`, ignoring case, as Prefect's ILIKE
        'prefix%' does. One LIKE per prefix, ORed, made an expression as deep as the list
        (SQLite refuses more than 1,000) and cost seconds and 170 MB for 50,000 prefixes. Here
        the plain prefixes are looked up by length, lower(substr(column, 1, n)) IN (those of
        length n); the rare ones with LIKE's special characters are still matched with LIKE."""
        if not prefixes:
            return sa.false()
        plain = [p for p in prefixes if LIKE_SPECIAL.isdisjoint(p)]
        patterns = [p for p in prefixes if not LIKE_SPECIAL.isdisjoint(p)]
        criteria = []
        if plain:
            length = self.rows(sorted({len(p) for p in plain}), sa.Integer)
            prefix = self.rows(plain)
            head = sa.func.lower(sa.func.substr(column, 1, length.c.value))
            wanted = sa.select(sa.func.lower(prefix.c.value))
            criteria.append(sa.exists(sa.select(1).select_from(length).where(head.in_(wanted))))
        if patterns:
            pattern = self.rows(patterns)
            matched = sa.select(1).select_from(pattern).where(column.ilike(pattern.c.value + "%"))
            criteria.append(sa.exists(matched))
        return sa.or_(*criteria)


def like(column: Any, sub: Filter) -> list[Criterion]:
    return [column.ilike(f"%{sub['like']}%")] if "like" in sub else []


def time_range(column: Any, sub: Filter, null_column: Any = None) -> list[Criterion]:
    criteria = []
    if "before" in sub:
        criteria.append(column <= sub["before"])
    if "after" in sub:
        criteria.append(column >= sub["after"])
    return criteria + is_null(null_column if null_column is not None else column, sub)


def is_null(column: Any, sub: Filter) -> list[Criterion]:
    if "is_null" not in sub:
        return []
    return [column.is_(None) if sub["is_null"] else column.is_not(None)]


def times(column: Any) -> Callable[[Filter], list[Criterion]]:
    return lambda sub: time_range(column, sub)


# ---- JSON tag lists ----


class Tags:
    """Tag-list criteria: JSONB operators on PostgreSQL, json_each on SQLite."""

    def __init__(self, lists: Lists) -> None:
        self.lists = lists
        self.postgres = lists.postgres

    def __call__(self, column: Any) -> Callable[[Filter], list[Criterion]]:
        def build(sub: Filter) -> list[Criterion]:
            criteria = []
            if "all_of" in sub:
                criteria.append(self.has_all(column, sub["all_of"]))
            if "any_of" in sub:
                criteria.append(self.has_any(column, sub["any_of"]))
            if "is_null" in sub:
                empty = self.is_empty(column)
                criteria.append(empty if sub["is_null"] else sa.not_(empty))
            return [_combine(sub, criteria)] if criteria else []

        return build

    def has_any(self, column: Any, tags: list[str]) -> Criterion:
        if not tags:
            return sa.false()
        if self.postgres:
            return sa.type_coerce(column, JSONB).has_any(sa.cast(tags, sa.ARRAY(sa.String)))
        each = sa.func.json_each(column).table_valued("value")
        return sa.exists(
            sa.select(1).select_from(each).where(self.lists.one_of(each.c.value, tags))
        )

    def has_all(self, column: Any, tags: list[str]) -> Criterion:
        if not tags:
            return sa.true()
        if self.postgres:
            return sa.type_coerce(column, JSONB).contains(sorted(set(tags)))
        each = sa.func.json_each(column).table_valued("value")
        distinct = sorted(set(tags))
        matched = sa.select(sa.func.count(sa.distinct(each.c.value))).where(
            self.lists.one_of(each.c.value, distinct)
        )
        return matched.select_from(each).scalar_subquery() == len(distinct)

    def is_empty(self, column: Any) -> Criterion:
        length = sa.func.jsonb_array_length if self.postgres else sa.func.json_array_length
        return sa.or_(column.is_(None), length(column) == 0)


# ---- the filter objects ----


class FilterCompiler:
    """Builds the WHERE criteria of every query that takes Prefect's filters."""

    def __init__(self, dialect: str) -> None:
        self.lists = Lists(dialect)
        self.tags = Tags(self.lists)

    def any_of(self, column: Any) -> Callable[[Filter], list[Criterion]]:
        return lambda sub: self.lists.any_of(column, sub)

    def names(self, column: Any) -> Callable[[Filter], list[Criterion]]:
        return lambda sub: self.lists.any_of(column, sub) + like(column, sub)

    def any_or_null(self, column: Any) -> Callable[[Filter], list[Criterion]]:
        def build(sub: Filter) -> list[Criterion]:
            criteria = self.lists.any_of(column, sub) + is_null(column, sub)
            return [_combine(sub, criteria)] if criteria else []

        return build

    def flow(self, f: Filter) -> Criterion:
        c = t.flow.c
        has_deployment = sa.exists().where(t.deployment.c.flow_id == c.id)
        return _compile(
            f,
            {
                "id": self.any_of(c.id),
                "deployment": lambda s: (
                    [sa.not_(has_deployment) if s["is_null"] else has_deployment]
                    if "is_null" in s
                    else []
                ),
                "name": self.names(c.name),
                "tags": self.tags(c.tags),
            },
        )

    def flow_run(self, f: Filter) -> Criterion:
        c = t.flow_run.c
        return _compile(
            f,
            {
                "id": self.any_of(c.id),
                "name": self.names(c.name),
                "tags": self.tags(c.tags),
                "deployment_id": self.any_or_null(c.deployment_id),
                "work_queue_name": self.any_or_null(c.work_queue_name),
                "state": self._flow_run_state,
                "flow_version": self.any_of(c.flow_version),
                "start_time": lambda s: time_range(
                    sa.func.coalesce(c.start_time, c.expected_start_time), s, c.start_time
                ),
                "end_time": times(c.end_time),
                "expected_start_time": times(c.expected_start_time),
                "next_scheduled_start_time": times(c.next_scheduled_start_time),
                "parent_flow_run_id": self._parent_flow_run_id,
                "parent_task_run_id": self.any_or_null(c.parent_task_run_id),
                "idempotency_key": self.any_of(c.idempotency_key),
                "created_by": self._created_by,
            },
        )

    def _flow_run_state(self, sub: Filter) -> list[Criterion]:
        c = t.flow_run.c
        criteria = [
            criterion
            for key, column in (("type", c.state_type), ("name", c.state_name))
            # Prefect applies a sub-filter only when it is a single comparison.
            if key in sub and len(sub[key]) == 1
            for criterion in self.lists.any_of(column, sub[key])
        ]
        return [_combine(sub, criteria)] if criteria else []

    def _parent_flow_run_id(self, sub: Filter) -> list[Criterion]:
        if "any_of" not in sub:
            return []
        parents = sa.select(t.task_run.c.id).where(
            self.lists.one_of(t.task_run.c.flow_run_id, sub["any_of"])
        )
        return [t.flow_run.c.parent_task_run_id.in_(parents)]

    def _created_by(self, sub: Filter) -> list[Criterion]:
        column = t.flow_run.c.created_by
        criteria = []
        for key in ("id", "type"):
            if key in sub:
                criteria.append(self.lists.one_of(column[key].as_string(), sub[key]))
        if "is_null" in sub:
            missing = sa.or_(column.is_(None), sa.cast(column, sa.String) == "null")
            criteria.append(missing if sub["is_null"] else sa.not_(missing))
        return [_combine(sub, criteria)] if criteria else []

    def task_run(self, f: Filter) -> Criterion:
        c = t.task_run.c
        return _compile(
            f,
            {
                "id": self.any_of(c.id),
                "name": self.names(c.name),
                "tags": self.tags(c.tags),
                "state": self._task_run_state,
                "start_time": times(c.start_time),
                "end_time": times(c.end_time),
                "expected_start_time": times(c.expected_start_time),
                "subflow_runs": self._subflow_runs,
                "flow_run_id": self._task_flow_run_id,
            },
        )

    def _task_run_state(self, sub: Filter) -> list[Criterion]:
        c = t.task_run.c
        criteria = []
        if "type" in sub:
            criteria += self.lists.any_of(c.state_type, sub["type"])
        if "name" in sub:
            criteria += self.lists.any_of(c.state_name, sub["name"])
        return [_combine(sub, criteria)] if criteria else []

    def _subflow_runs(self, sub: Filter) -> list[Criterion]:
        if "exists" not in sub:
            return []
        is_parent = t.task_run.c.id.in_(
            sa.select(t.flow_run.c.parent_task_run_id).where(
                t.flow_run.c.parent_task_run_id.is_not(None)
            )
        )
        return [is_parent if sub["exists"] else sa.not_(is_parent)]

    def _task_flow_run_id(self, sub: Filter) -> list[Criterion]:
        column = t.task_run.c.flow_run_id
        criteria = self.lists.any_of(column, sub)
        # Prefect's is_null_ defaults to False: without any_of, task runs need a flow run.
        if sub.get("is_null"):
            criteria.append(column.is_(None))
        elif "any_of" not in sub:
            criteria.append(column.is_not(None))
        return [_combine(sub, criteria)]

    def deployment(self, f: Filter) -> Criterion:
        c = t.deployment.c
        return _compile(
            f,
            {
                "id": self.any_of(c.id),
                "name": self.names(c.name),
                "flow_or_deployment_name": self._flow_or_deployment_name,
                "paused": lambda s: [c.paused == s["eq"]] if "eq" in s else [],
                "tags": self.tags(c.tags),
                "work_queue_name": self.any_of(c.work_queue_name),
            },
        )

    def _flow_or_deployment_name(self, sub: Filter) -> list[Criterion]:
        if "like" not in sub:
            return []
        flow_named = sa.exists().where(
            t.flow.c.id == t.deployment.c.flow_id, *like(t.flow.c.name, sub)
        )
        return [sa.or_(*like(t.deployment.c.name, sub), flow_named)]

    def work_pool(self, f: Filter) -> Criterion:
        c = t.work_pool.c
        return _compile(
            f,
            {
                "id": self.any_of(c.id),
                "name": self.any_of(c.name),
                "type": self.any_of(c.type),
            },
        )

    def work_queue(self, f: Filter) -> Criterion:
        c = t.work_queue.c
        return _compile(
            f,
            {
                "id": self.any_of(c.id),
                "name": self._work_queue_name,
            },
        )

    def _work_queue_name(self, sub: Filter) -> list[Criterion]:
        criteria = self.lists.any_of(t.work_queue.c.name, sub)
        if "startswith" in sub:
            criteria.append(self.lists.startswith(t.work_queue.c.name, sub["startswith"]))
        return criteria

    def flow_run_set(self, filters: Filter) -> Criterion:
        """The six filter objects of a flow-run query, ANDed (semantics §3.3)."""
        run = t.flow_run.c
        criteria = []
        if "flow_runs" in filters:
            criteria.append(self.flow_run(filters["flow_runs"]))
        if "flows" in filters:
            criteria.append(
                sa.exists().where(t.flow.c.id == run.flow_id, self.flow(filters["flows"]))
            )
        if "task_runs" in filters:
            criteria.append(
                sa.exists().where(
                    t.task_run.c.flow_run_id == run.id, self.task_run(filters["task_runs"])
                )
            )
        if "deployments" in filters:
            criteria.append(
                sa.exists().where(
                    t.deployment.c.id == run.deployment_id,
                    self.deployment(filters["deployments"]),
                )
            )
        # Correlate on the run only: queries that read runs also outer-join their work queue
        # and pool, which auto-correlation would otherwise take out of these subqueries.
        if "work_pools" in filters:
            criteria.append(
                sa.exists()
                .where(
                    t.work_queue.c.id == run.work_queue_id,
                    t.work_pool.c.id == t.work_queue.c.work_pool_id,
                    self.work_pool(filters["work_pools"]),
                )
                .correlate(t.flow_run)
            )
        if "work_pool_queues" in filters:
            criteria.append(
                sa.exists()
                .where(
                    t.work_queue.c.id == run.work_queue_id,
                    self.work_queue(filters["work_pool_queues"]),
                )
                .correlate(t.flow_run)
            )
        return sa.and_(sa.true(), *criteria)


@functools.cache
def _compiler(dialect: str) -> FilterCompiler:
    return FilterCompiler(dialect)


def compiler_for(conn: Connection) -> FilterCompiler:
    return _compiler(conn.dialect.name)


def compiler_for_dialect(dialect: str) -> FilterCompiler:
    """The compiler of a dialect ("sqlite", "postgresql"), for criteria built ahead of a query."""
    return _compiler(dialect)


def flow_run_criteria(conn: Connection, filters: Filter) -> Criterion:
    """compiler_for(conn).flow_run_set(filters), remembered for recent filter sets: clients
    poll with the same filters, and building the expression (68 µs for one state type) took
    twice as long as SQLite's count of a thousand runs. Criteria are immutable, so calls on
    any thread may share them."""
    criteria = remembered_flow_run_criteria(conn, filters)
    return compiler_for(conn).flow_run_set(filters) if criteria is None else criteria


def remembered_flow_run_criteria(conn: Connection, filters: Filter) -> Criterion | None:
    """The remembered criteria of a small filter set; None for a large one (long id lists),
    which is built each time: nothing may keep its lists once the call is over."""
    key = orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)  # filters are plain JSON values
    if len(key) > REMEMBERED_FILTER_BYTES:
        return None
    return _remembered_flow_run_set(conn.dialect.name, key)


@functools.lru_cache(maxsize=REMEMBERED_FILTERS)
def _remembered_flow_run_set(dialect: str, key: bytes) -> Criterion:
    return _compiler(dialect).flow_run_set(orjson.loads(key))
