"""SQL helpers every area uses: long id lists cut into statements the database accepts, each
chunk sent as ONE parameter (not one per id), so neither SQLAlchemy nor the driver renders or
converts 20,000 placeholders per statement; and `DriverStatement`, a Core statement run on the
driver's cursor for the device side's hot path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    Integer,
    Select,
    Text,
    cast,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session

#: Ids per statement: one array (PostgreSQL) or JSON text (SQLite) parameter each.
ID_CHUNK = 20_000


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def int_array(ids: Iterable[int | None]) -> ColumnElement[Any]:
    """`ids` as one PostgreSQL int[] parameter, sent as its text ('{1,2,NULL}'): psycopg adapts
    a Python list element by element, about four times slower than this one string."""
    text = "{" + ",".join("NULL" if i is None else str(int(i)) for i in ids) + "}"
    return cast(literal(text, Text()), ARRAY(Integer))


def json_ids(ids: Iterable[Any]) -> str:
    """`ids` as the JSON text SQLite's json_each reads (one parameter)."""
    return json.dumps([int(i) for i in ids])


def id_rows(session: Session, ids: Sequence[int]) -> Select:
    """A SELECT of `ids` as rows of one column `id`: unnest of one array parameter on
    PostgreSQL, json_each of one JSON text on SQLite (for INSERT ... SELECT and joins)."""
    if is_postgresql(session):
        return select(func.unnest(int_array(ids)).label("id"))
    each = func.json_each(literal(json_ids(ids), Text())).table_valued("value")
    return select(each.c.value.label("id"))


def pair_rows(session: Session, pairs: Sequence[tuple[int, int | None]]) -> Select:
    """A SELECT of (id, other) integer pairs as rows of columns `id` and `other` (None: NULL, a
    change of devices that only kmeweb holds): unnest of two array parameters on PostgreSQL,
    json_each of one JSON text of [id, other] on SQLite."""
    if is_postgresql(session):
        both = (
            func.unnest(int_array(p[0] for p in pairs), int_array(p[1] for p in pairs))
            .table_valued("id", "other")
            .render_derived()
        )
        return select(both.c.id, both.c.other)
    text = json.dumps([[int(a), None if b is None else int(b)] for a, b in pairs])
    each = func.json_each(literal(text, Text())).table_valued("value")
    return select(
        func.json_extract(each.c.value, "$[0]").label("id"),
        func.json_extract(each.c.value, "$[1]").label("other"),
    )


def grouped_rows(session: Session, groups: Mapping[int | None, Sequence[int]]) -> Select:
    """A SELECT of rows (id, other): each id of `groups` with the key of its group ({other:
    [ids]}; None: NULL), as `pair_rows` gives them when many ids share an `other` (the devices
    of each outbox change, or of a change only kmeweb holds). On SQLite one JSON object
    {other: [ids]} read by two json_each, with no json_extract per row: in bench/approve.py's
    history INSERTs of 20,000 devices, 17 ms each this way against 26-29 ms from pair_rows (and
    8-10 ms from plain ids, id_rows). On PostgreSQL, pair_rows."""
    if is_postgresql(session):
        return pair_rows(session, [(i, other) for other, ids in groups.items() for i in ids])
    # JSON keys are text: "" stands for None.
    text = json.dumps(
        {"" if key is None else str(int(key)): [int(i) for i in ids] for key, ids in groups.items()}
    )
    outer = func.json_each(literal(text, Text())).table_valued("key", "value").alias("grp")
    inner = func.json_each(outer.c.value).table_valued("value").alias("member")
    other = cast(func.nullif(outer.c.key, ""), Integer)
    return select(inner.c.value.label("id"), other.label("other")).select_from(
        outer.join(inner, true())
    )


def id_in(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column` in `ids` as one clause with one parameter, whatever the number of ids (cut long
    lists with `id_filters`): `= ANY(array)` on PostgreSQL, `IN (SELECT value FROM json_each)`
    on SQLite, which both read the ids from the column's index."""
    if is_postgresql(session):
        # Not `= ANY(CAST(text AS int[]))`: that cast is not folded into a constant, so a plan
        # that scans the table searches the whole array for each row (100,000 x 20,000
        # comparisons per chunk). A semi-join on unnest probes the column's index per id.
        return column.in_(select(func.unnest(int_array(ids))))
    each = func.json_each(literal(json_ids(ids), Text())).table_valued("value")
    return column.in_(select(each.c.value))


def id_filters(session: Session, column: Any, ids: Sequence[int]) -> Iterator[ColumnElement[bool]]:
    """`column` in `ids`, as one WHERE clause (`id_in`, one parameter) per ID_CHUNK ids."""
    ids = list(ids)
    for chunk in chunks(ids, ID_CHUNK):
        yield id_in(session, column, chunk)


def upsert(
    session: Session,
    table: Any,
    key: str,
    columns: Sequence[str],
    rows: Select | None = None,
    on_clash: Mapping[str, Any] | None = None,
) -> Executable:
    """INSERT of `columns` into `table`, of the rows of `rows` (a SELECT of those columns in
    that order, with a WHERE clause: SQLite reads `SELECT ... ON CONFLICT` without one as a
    join) or, without it, of the parameter sets it is executed with; a row whose `key` is
    already there gets the new values instead, except where `on_clash` says ({column: a
    function of the new row's columns (`excluded`) giving the value to set})."""
    stmt = (pg_insert if is_postgresql(session) else sqlite_insert)(table)
    if rows is not None:
        stmt = stmt.from_select(list(columns), rows)
    clash = {c: stmt.excluded[c] for c in columns if c != key}
    for name, make in (on_clash or {}).items():
        clash[name] = make(stmt.excluded)
    return stmt.on_conflict_do_update(index_elements=[table.c[key]], set_=clash)


def connection_of(bind: Session | scoped_session | Connection) -> Connection:
    """The connection a Session works on (it begins its transaction), or `bind` itself."""
    return bind if isinstance(bind, Connection) else bind.connection()


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    #: Parameter names in placeholder order (qmark drivers: SQLite), None for named (psycopg).
    order: tuple[str, ...] | None
    #: (name, bind processor) of each parameter the caller passes.
    given: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    #: The statement's own values (literal()), already processed.
    constants: dict[str, Any]
    #: The result processor of each selected column (None: the driver's value as it is).
    results: tuple[Callable[[Any], Any] | None, ...]


class DriverStatement:
    """A Core statement run on the DBAPI cursor of a connection, inside whatever transaction the
    connection is in: for the few one-row statements the device side runs per request, where
    SQLAlchemy's execution layer (execution context, result object) costs several times what
    the driver does. The statement is compiled once per dialect, and values still go through
    the column types (UTC timestamps, JSON), so it reads and writes what `conn.execute` would.

    What it does not do: Python-side column defaults (`default=`, `onupdate=`) need
    SQLAlchemy's execution context, so a statement relying on one is refused when compiled
    (give every column a value); engine events do not fire; a driver error is raised as
    SQLAlchemy's DBAPIError, and a lost connection is invalidated, as `conn.execute` does.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row the statement returns (a SELECT, or RETURNING), processed."""
        compiled = self._for(conn.dialect)
        rows = self._run(conn, compiled, params, fetch=True)
        if any(compiled.results):
            return [
                tuple(v if p is None else p(v) for p, v in zip(compiled.results, row, strict=True))
                for row in rows
            ]
        return rows

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """The rows an INSERT, UPDATE or DELETE changed."""
        return self._run(conn, self._for(conn.dialect), params, fetch=False)

    def _for(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)  # the SQL and the bind processors differ by driver
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self.statement, dialect)
        return found

    def _run(self, conn: Connection, compiled: _Compiled, params: Mapping[str, Any], fetch: bool):
        if not conn.in_transaction():
            conn.begin()  # as conn.execute does: the caller commits, or closing rolls back
        values = dict(compiled.constants)
        for name, processor in compiled.given:
            value = params[name]
            values[name] = value if processor is None else processor(value)
        args: Any = values if compiled.order is None else tuple(values[n] for n in compiled.order)
        fairy = conn.connection
        # One cursor per DBAPI connection, kept with it (the pool's `info` lives as long as
        # the connection): making a psycopg cursor costs about half of a one-row statement.
        cursor = fairy.info.get(_CURSOR)
        if cursor is None:
            cursor = fairy.info[_CURSOR] = fairy.cursor()
        try:
            cursor.execute(compiled.sql, args)
            return cursor.fetchall() if fetch else cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as err:
            fairy.info.pop(_CURSOR, None)
            lost = conn.dialect.is_disconnect(err, fairy.dbapi_connection, cursor)
            if lost:
                conn.invalidate(err)
            raise DBAPIError.instance(
                compiled.sql,
                args,
                err,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=conn.dialect,
            ) from err


_CURSOR = "kmeweb.sqlutil.cursor"


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    if compiled.insert_prefetch or compiled.update_prefetch:
        columns = [c.name for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        raise ValueError(f"give these columns a value, their defaults need SQLAlchemy: {columns}")
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError("expanding and literal-execute parameters need SQLAlchemy")
    given: dict[str, Callable[[Any], Any] | None] = {}
    constants: dict[str, Any] = {}
    for bind, name in compiled.bind_names.items():
        if bind.callable is not None:
            raise ValueError(f"{name}: a value computed per execution needs SQLAlchemy")
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required:
            given[name] = processor
        else:
            constants[name] = bind.value if processor is None else processor(bind.value)
    columns = getattr(statement, "selected_columns", ())
    return _Compiled(
        sql=str(compiled),
        order=tuple(compiled.positiontup) if compiled.positiontup is not None else None,
        given=tuple(given.items()),
        constants=constants,
        results=tuple(_result_processor(column, dialect) for column in columns),
    )


def _result_processor(column: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    return column.type.dialect_impl(dialect).result_processor(dialect, None)
