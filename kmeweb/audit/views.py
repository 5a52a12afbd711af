from __future__ import annotations

from datetime import date

from flask import Blueprint, request

from kmeweb.audit import services
from kmeweb.extensions import db
from kmeweb.htmx import render
from kmeweb.pagination import page_args, paginate

bp = Blueprint("audit", __name__, url_prefix="/audit")


def _date_arg(name: str) -> tuple[date | None, str | None]:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None, None
    try:
        return date.fromisoformat(raw), None
    except ValueError:
        return None, "Use a date like 2026-11-24."


@bp.get("/")
def index():
    """The audit log, newest first, filtered by actor, action and date range."""
    actor = request.args.get("actor", "").strip()
    action = request.args.get("action", "").strip()
    date_from, from_error = _date_arg("from")
    date_to, to_error = _date_arg("to")
    page, per_page = page_args()
    stmt = services.query_events(actor or None, action or None, date_from, date_to)
    events = paginate(db.session, stmt, page, per_page)
    errors = {k: v for k, v in (("from", from_error), ("to", to_error)) if v}
    return render(
        "audit/index.html",
        "audit/_table.html",
        code=422 if errors else 200,
        events=events,
        actions=services.known_actions(db.session),
        filters={
            "actor": actor,
            "action": action,
            "from": request.args.get("from", ""),
            "to": request.args.get("to", ""),
        },
        errors=errors,
    )
