from __future__ import annotations

from flask import Blueprint

from kmeweb.audit import services
from kmeweb.audit.forms import AuditFilterForm
from kmeweb.audit.readable import readable
from kmeweb.extensions import db
from kmeweb.htmx import render
from kmeweb.pagination import page_args, paginate

bp = Blueprint("audit", __name__, url_prefix="/audit")

DATE_HINT = "Use a date like 2026-11-24."


@bp.get("/")
def index():
    """The audit log, newest first, filtered by actor, action and date range."""
    form = AuditFilterForm()
    form.set_actions(services.known_actions(db.session))
    valid = form.validate_query()
    for field in (form.date_from, form.date_to):
        # WTForms says "Not a valid date value."; say what to type instead.
        field.errors = [DATE_HINT if "valid date" in e else e for e in field.errors]
    # Filters that parsed still apply while another one shows its error.
    data = {name: None if f.errors else f.data for name, f in form._fields.items()}
    stmt = services.query_events(
        (data["actor"] or "").strip() or None,
        data["action"] or None,
        data["date_from"],
        data["date_to"],
    )
    page, per_page = page_args()
    events = paginate(db.session, stmt, page, per_page)
    return render(
        "audit/index.html",
        "audit/_content.html",
        code=200 if valid else 422,
        events=events,
        shown=readable(db.session, events.items),
        form=form,
    )
