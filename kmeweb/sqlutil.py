"""SQL helpers every area uses: long id lists cut into statements the database accepts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, any_, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def id_filters(session: Session, column: Any, ids: Sequence[int]) -> Iterator[ColumnElement[bool]]:
    """`column` in `ids`, as one WHERE clause per chunk of ids: on SQLite `IN (...)` lists of
    900 (below its variable limit); on PostgreSQL `= ANY(array)` with one array parameter
    per 20,000 ids, so neither SQLAlchemy nor psycopg renders one placeholder per id."""
    ids = list(ids)
    if session.get_bind().dialect.name == "postgresql":
        for chunk in chunks(ids, 20_000):
            yield column == any_(literal(list(chunk), ARRAY(Integer)))
    else:
        for chunk in chunks(ids, 900):
            yield column.in_(chunk)
