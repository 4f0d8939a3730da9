"""The hottest statements, run on the sqlite3 connection itself.

SQLAlchemy's execute path (cache lookup, execution context, events, result set-up) costs 15-30 µs
a statement: more than SQLite takes to run the three statements of a create or a transition. A
Prepared statement is compiled once per set of parameter names; on SQLite it goes straight to the
driver with SQLAlchemy's own bind and result processors (JSON, booleans), on PostgreSQL through
SQLAlchemy as usual but for many rows inserted at once, which go through COPY.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Processor = Callable[[Any], Any] | None
Params = Mapping[str, Any]


class Row(dict[str, Any]):
    """A result row read by name or attribute, like SQLAlchemy's Row (`row.id`, `row._mapping`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> Row:
        return self


@dataclass(frozen=True)
class _Plan:
    sql: str
    names: tuple[str, ...]  # the parameters, in the statement's positional order
    defaults: Mapping[str, Any]  # an insert's values for columns it is not given
    binds: tuple[Processor, ...]
    columns: tuple[str, ...]  # a select's result columns
    results: tuple[Processor, ...]

    def parameters(self, given: Params) -> list[Any]:
        """The positional parameters: each given value, else the column's default (none: SQL
        NULL, as SQLAlchemy leaves an omitted column), through its bind processor. Merged and
        picked in C, then only the processed columns converted: a bulk create binds 41 columns
        of 1,000 runs at once."""
        values = list(self._pick({**self._unset, **given}))
        for index, name, bind in self._processed:
            if name in given or values[index] is not None:
                values[index] = bind(values[index])
        return values

    @property
    def plain_insert(self) -> bool:
        """An INSERT ending with its VALUES (no ON CONFLICT, no RETURNING): its rows may be
        sent together."""
        return self.sql.startswith("INSERT") and self.sql.endswith(")")

    @functools.cached_property
    def _unset(self) -> dict[str, Any]:
        return {name: self.defaults.get(name) for name in self.names}

    @functools.cached_property
    def _pick(self) -> Callable[[Params], tuple[Any, ...]]:
        if len(self.names) == 1:
            return lambda row: (row[self.names[0]],)
        return operator.itemgetter(*self.names) if self.names else lambda row: ()

    @functools.cached_property
    def _processed(self) -> tuple[tuple[int, str, Callable[[Any], Any]], ...]:
        return tuple(
            (index, name, bind)
            for index, (name, bind) in enumerate(zip(self.names, self.binds, strict=True))
            if bind is not None
        )

    def row(self, values: Sequence[Any]) -> Row:
        return Row(
            (name, value if result is None else result(value))
            for name, value, result in zip(self.columns, values, self.results, strict=True)
        )


@dataclass(frozen=True)
class Bound:
    """An insert's rows as positional parameters, in its plan's order."""

    plan: _Plan
    rows: list[list[Any]]


class Prepared:
    """A statement with named bind parameters; an insert takes every column, missing ones
    getting their scalar defaults."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}

    def execute(self, conn: Connection, params: Params | list[Params]) -> None:
        """Runs the statement once, or once per parameter set (all with the same names)."""
        many = isinstance(params, list)
        if not params:
            return
        if many and self.statement.is_insert:
            plan = self._plan(conn.dialect, params[0])
            if plan.plain_insert:
                self.insert(conn, Bound(plan, [plan.parameters(p) for p in params]))
                return
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, params)
            return
        plan = self._plan(conn.dialect, params[0] if many else params)
        driver = conn.connection.driver_connection
        with _as_sqlalchemy_errors(plan.sql):
            if many:
                driver.executemany(plan.sql, [plan.parameters(p) for p in params])
            else:
                driver.execute(plan.sql, plan.parameters(params))

    def bind(self, dialect: Dialect, rows: list[Params]) -> Bound | None:
        """An insert's rows (all with the same names) bound ahead of the write, on any thread;
        None if there are none."""
        if not rows:
            return None
        plan = self._plan(dialect, rows[0])
        if not plan.plain_insert:
            raise ValueError(f"only a plain INSERT's rows are bound ahead: {plan.sql}")
        return Bound(plan, [plan.parameters(row) for row in rows])

    def insert(self, conn: Connection, bound: Bound | None) -> None:
        """Inserts bound rows: on SQLite a few multi-row statements, on PostgreSQL a COPY."""
        if bound is None:
            return
        if conn.dialect.name != "sqlite":
            _copy_rows(conn, self.statement.table.name, bound)
            return
        with _as_sqlalchemy_errors(bound.plan.sql):
            head = bound.plan.sql.rpartition(" VALUES ")[0]
            insert_rows(conn.connection.driver_connection, head, bound.rows)

    def first(self, conn: Connection, params: Params) -> Any:
        """The first result row, or None."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).first()
        plan = self._plan(conn.dialect, params)
        driver = conn.connection.driver_connection
        with _as_sqlalchemy_errors(plan.sql):
            values = driver.execute(plan.sql, plan.parameters(params)).fetchone()
        return None if values is None else plan.row(values)

    def _plan(self, dialect: Dialect, params: Params) -> _Plan:
        key = (dialect.name, frozenset(params))
        if (plan := self._plans.get(key)) is None:
            plan = self._plans[key] = _compile(self.statement, dialect, key[1])
        return plan


def insert_rows(driver: sqlite3.Connection, head: str, rows: list[list[Any]]) -> None:
    """Many rows inserted on SQLite by few statements (`head`: "INSERT INTO t (a, b)"), each
    with as many rows as SQLite takes bound values. Not executemany, one statement a row: inside
    a savepoint each statement's release walks SQLite's in-memory statement journal from its
    start, so a thousand rows cost a thousand walks of a journal that grows with them, and each
    statement waits for the GIL again. A column that is None in every row of a statement is
    written NULL, not bound: the sqlite3 module binds a None ten times slower than a number (it
    looks for an adapter)."""
    if not rows:
        return
    width = len(rows[0])
    per_statement = max(1, driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        columns = list(zip(*chunk, strict=True))
        bound = [column.count(None) < len(chunk) for column in columns]
        one = f"({', '.join('?' if kept else 'NULL' for kept in bound)})"
        values = chain.from_iterable(zip(*compress(columns, bound), strict=True))
        driver.execute(f"{head} VALUES {', '.join([one] * len(chunk))}", list(values))


def _copy_rows(conn: Connection, table: str, bound: Bound) -> None:
    """Many rows into a PostgreSQL table with COPY: psycopg's executemany sends a statement a
    row, and a multi-row INSERT makes psycopg parse thousands of placeholders in Python."""
    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table)} ({', '.join(map(quote, bound.plan.names))}) FROM STDIN"
    driver = conn.connection.driver_connection
    with (
        _as_sqlalchemy_errors(sql, psycopg.Error),
        driver.cursor() as cursor,
        cursor.copy(sql) as copy,
    ):
        for row in bound.rows:
            copy.write_row(row)


@contextlib.contextmanager
def _as_sqlalchemy_errors(sql: str, kind: type[Exception] = sqlite3.Error) -> Iterator[None]:
    """Driver errors raised as SQLAlchemy would (IntegrityError, ...): callers catch one kind."""
    try:
        yield
    except kind as error:
        raise sa.exc.DBAPIError.instance(sql, None, error, kind) from error


def _compile(statement: Any, dialect: Dialect, names: frozenset[str]) -> _Plan:
    """SQL with positional parameters for these parameter names, and the type processors."""
    defaults: dict[str, Any] = {}
    writer = dialect if dialect.positional else _positional(type(dialect))
    if statement.is_insert:
        defaults = insert_defaults(statement.table)
        compiled = statement.compile(dialect=writer, column_keys=list(defaults))
    else:
        compiled = statement.compile(dialect=writer, column_keys=sorted(names))
    if compiled.insert_prefetch or compiled.update_prefetch:
        raise ValueError(f"columns with Python-side defaults need SQLAlchemy: {statement}")
    order = tuple(compiled.positiontup or ())
    binds = tuple(_type(compiled.binds[n].type, dialect).bind_processor(dialect) for n in order)
    selected = list(statement.selected_columns.items()) if statement.is_select else []
    results = tuple(_type(c.type, dialect).result_processor(dialect, None) for _, c in selected)
    return _Plan(compiled.string, order, defaults, binds, tuple(k for k, _ in selected), results)


@functools.cache
def _positional(dialect_class: type[Dialect]) -> Dialect:
    """The dialect writing positional parameters, for the order of a plan's values; the types'
    processors still come from the engine's own dialect."""
    return dialect_class(paramstyle="format")


def _type(type_: Any, dialect: Dialect) -> Any:
    return type_.dialect_impl(dialect)


def insert_defaults(table: sa.Table) -> dict[str, Any]:
    """What an insert leaves in each column it is not given (None: no default, SQL NULL)."""
    return {c.key: _scalar_default(c) for c in table.c}


def _scalar_default(column: sa.Column[Any]) -> Any:
    if column.server_default is not None or (
        column.default is not None and not column.default.is_scalar
    ):
        raise ValueError(f"{column} has a default only SQLAlchemy can apply")
    return column.default.arg if column.default is not None else None
