"""One pagination helper for every table; counts come from SQL, never from loading rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request
from sqlalchemy import Select, func, literal_column, select
from sqlalchemy.orm import Session

from kmeweb.ids import MAX_DB_INT


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int
    #: True when `total` is a lower bound: counting stopped there (see paginate's count_limit).
    more: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages or self.more

    @property
    def first_index(self) -> int:
        return 0 if self.total == 0 else (self.page - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        return min(self.total, self.page * self.per_page)


def page_args(default_per_page: int = 50) -> tuple[int, int]:
    """Read ?page= and ?per_page= from the request, clamped to sane bounds."""
    page = request.args.get("page", 1, type=int) or 1
    per_page = request.args.get("per_page", default_per_page, type=int) or default_per_page
    return max(1, page), min(max(1, per_page), 500)


def paginate(
    session: Session,
    stmt: Select,
    page: int,
    per_page: int,
    total: int | None = None,
    count_limit: int | None = None,
) -> Page:
    """Run `stmt` for one page and count all matching rows with one grouped query (or take
    `total` when the caller already counted them).

    With `count_limit`, counting stops past that many rows (or past the page asked for, if
    further): a table of millions of rows (the audit log) costs the rows counted, not the
    table, and the page says "more than N" (`Page.more`). A page number past any table's size
    counts them all.

    A page past the end (however large the number) shows the last page.
    """
    more = False
    if total is None and count_limit is not None and page * per_page < MAX_DB_INT:
        limit = max(count_limit, page * per_page) + 1
        one = stmt.with_only_columns(literal_column("1"), maintain_column_froms=True)
        rows = one.limit(limit).subquery()
        total = session.scalar(select(func.count()).select_from(rows)) or 0
        if total == limit:
            total, more = limit - 1, True
    elif total is None:
        total = (
            session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        )
    page = min(max(1, page), max(1, -(-total // per_page)))
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=total, more=more)
