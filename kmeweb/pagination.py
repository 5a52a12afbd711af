"""One pagination helper for every table; counts come from SQL, never from loading rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

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
    session: Session, stmt: Select, page: int, per_page: int, total: int | None = None
) -> Page:
    """Run `stmt` for one page and count all matching rows with one grouped query (or take
    `total` when the caller already counted them).

    A page past the end (however large the number) shows the last page.
    """
    if total is None:
        total = (
            session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        )
    page = min(max(1, page), max(1, -(-total // per_page)))
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=total)
