"""Resellers: the Resellers tab and a reseller's page. What happens to a reseller's uploads
is said by the routing rules (kmeweb.rules), which replaced its auto-approve and default
profile (migration 0015).
"""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from kmeweb.errors import NotFound
from kmeweb.integration.models import Reseller


def _searched(stmt: Select, search: str | None) -> Select:
    search = (search or "").strip()
    if not search:
        return stmt
    return stmt.where(
        or_(
            Reseller.name.icontains(search, autoescape=True),
            Reseller.kme_reseller_id.icontains(search, autoescape=True),
        )
    )


def list_resellers_query(search: str | None = None) -> Select:
    """Resellers for the Resellers tab, by name; `search` matches the name or the Knox
    reseller id."""
    return _searched(select(Reseller).order_by(func.lower(Reseller.name), Reseller.id), search)


def reseller_rows(search: str | None = None) -> Select:
    """Rows (reseller id, Reseller) matching `search` as the Resellers tab's search does, for a
    list paged by reseller id (the JSON API)."""
    return _searched(select(Reseller.id, Reseller), search)


def get_reseller_or_404(session: Session, reseller_id: int) -> Reseller:
    """Raises NotFound."""
    reseller = session.get(Reseller, reseller_id)
    if reseller is None:
        raise NotFound("No such reseller.")
    return reseller
