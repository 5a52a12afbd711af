"""SQL helpers every area uses: long id lists cut into statements the database accepts, each
chunk sent as ONE parameter (not one per id), so neither SQLAlchemy nor the driver renders or
converts 20,000 placeholders per statement."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, Text, any_, cast, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

#: Ids per statement: one array (PostgreSQL) or JSON text (SQLite) parameter each.
ID_CHUNK = 20_000


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def int_array(ids: Iterable[int]) -> ColumnElement[Any]:
    """`ids` as one PostgreSQL int[] parameter, sent as its text ('{1,2,3}'): psycopg adapts a
    Python list element by element, about four times slower than this one string."""
    text = "{" + ",".join(map(str, map(int, ids))) + "}"
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


def pair_rows(session: Session, pairs: Sequence[tuple[int, int]]) -> Select:
    """A SELECT of (id, other) integer pairs as rows of columns `id` and `other`: unnest of two
    array parameters on PostgreSQL, json_each of one JSON text of [id, other] on SQLite."""
    if is_postgresql(session):
        both = (
            func.unnest(int_array(p[0] for p in pairs), int_array(p[1] for p in pairs))
            .table_valued("id", "other")
            .render_derived()
        )
        return select(both.c.id, both.c.other)
    text = json.dumps([[int(a), int(b)] for a, b in pairs])
    each = func.json_each(literal(text, Text())).table_valued("value")
    return select(
        func.json_extract(each.c.value, "$[0]").label("id"),
        func.json_extract(each.c.value, "$[1]").label("other"),
    )


def id_in(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column` in `ids` as one clause with one parameter, whatever the number of ids (cut long
    lists with `id_filters`): `= ANY(array)` on PostgreSQL, `IN (SELECT value FROM json_each)`
    on SQLite, which both read the ids from the column's index."""
    if is_postgresql(session):
        return column == any_(int_array(ids))
    each = func.json_each(literal(json_ids(ids), Text())).table_valued("value")
    return column.in_(select(each.c.value))


def id_filters(session: Session, column: Any, ids: Sequence[int]) -> Iterator[ColumnElement[bool]]:
    """`column` in `ids`, as one WHERE clause (`id_in`, one parameter) per ID_CHUNK ids."""
    ids = list(ids)
    for chunk in chunks(ids, ID_CHUNK):
        yield id_in(session, column, chunk)
