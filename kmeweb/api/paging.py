"""Cursor paging: a list answers `limit` items and an opaque `next_cursor` that names where
the next page starts (the sort key of the last item), so page 500 costs what page 1 does: an
index range, never an OFFSET over the rows before it."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.orm import Session

from kmeweb.errors import ApiProblem
from kmeweb.ids import MAX_DB_INT

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000


class PageQuery(BaseModel):
    """The paging fields of every list's query."""

    limit: int = Field(LIMIT_DEFAULT, ge=1, le=LIMIT_MAX, description="Items per page")
    cursor: str | None = Field(
        None, max_length=200, description="The `next_cursor` of the previous page"
    )


def encode(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def invalid_cursor() -> ApiProblem:
    """The problem of a cursor this API did not give out."""
    return ApiProblem(
        422,
        "invalid_cursor",
        "The cursor is not one this API gave out.",
        [{"field": "cursor", "message": "Use the next_cursor of the previous page."}],
    )


def decode(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise invalid_cursor() from None


def keyset(
    session: Session,
    stmt: Select,
    column: Any,
    query: PageQuery,
    descending: bool = False,
) -> tuple[list[Any], str | None]:
    """One page of `stmt` (a select of ORM rows, of tuples or of the key alone) ordered by the
    unique integer `column`, starting after the cursor's key. Returns the rows and the next
    cursor (None on the last page)."""
    if query.cursor:
        after = decode(query.cursor)
        # Only an id can be a cursor: anything past the integer columns' range (a forged
        # cursor) would be a database error, a 500, instead of the invalid_cursor problem.
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_DB_INT:
            raise invalid_cursor()
        stmt = stmt.where(column < after if descending else column > after)
    stmt = stmt.order_by(None).order_by(column.desc() if descending else column)
    rows = list(session.execute(stmt.limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    items = [row[0] if len(row) == 1 else row for row in rows]
    if not more or not items:
        return items, None
    last = items[-1]
    if isinstance(last, int):  # a select of the key alone
        return items, encode(last)
    key = getattr(last, column.key) if hasattr(last, column.key) else last[0]
    return items, encode(key)
