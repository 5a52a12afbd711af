from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, url_for
from flask_login import current_user

from kmeweb.audit import retention, services
from kmeweb.audit.forms import AuditFilterForm, RetentionForm
from kmeweb.audit.readable import readable
from kmeweb.extensions import db
from kmeweb.forms import submit
from kmeweb.htmx import redirect, render
from kmeweb.pagination import page_args, paginate

bp = Blueprint("audit", __name__, url_prefix="/audit")

DATE_HINT = "Use a date like 2026-11-24."
PAGE = "audit/index.html"


def _log_context() -> dict[str, Any]:
    """The filtered, paginated events (and the filter form, with its errors) of the page."""
    filters = AuditFilterForm()
    filters.set_actions(services.known_actions(db.session))
    valid = filters.validate_query()
    for field in (filters.date_from, filters.date_to):
        # WTForms says "Not a valid date value."; say what to type instead.
        field.errors = [DATE_HINT if "valid date" in e else e for e in field.errors]
    # Filters that parsed still apply while another one shows its error.
    data = {name: None if f.errors else f.data for name, f in filters._fields.items()}
    stmt = services.query_events(
        (data["actor"] or "").strip() or None,
        data["action"] or None,
        data["date_from"],
        data["date_to"],
    )
    page, per_page = page_args()
    events = paginate(db.session, stmt, page, per_page, count_limit=services.COUNT_LIMIT)
    shown = readable(db.session, events.items)
    return {"filters": filters, "valid": valid, "events": events, "shown": shown}


def _retention_context() -> dict[str, Any]:
    return {
        "retention": retention.get_retention(db.session),
        "last_purge": retention.last_purge(db.session),
        "purge_every_s": current_app.config["PURGE_INTERVAL_S"],
        "retention_min": retention.DAYS_MIN,
        "retention_max": retention.DAYS_MAX,
    }


@bp.get("/")
def index():
    """The audit log, newest first, filtered by actor, action and date range; its retention."""
    context = {**_log_context(), **_retention_context()}
    form = RetentionForm.for_settings(context["retention"])
    code = 200 if context["valid"] else 422
    return render(PAGE, "audit/_content.html", code=code, form=form, **context)


@bp.post("/retention")
def update_retention():
    """Save the retention and the legal hold (admins only; each change is audited)."""
    form = RetentionForm()

    def saved(_settings: retention.Retention):
        flash("The retention settings were saved.", "success")
        return redirect(url_for("audit.index"))

    return submit(
        form,
        lambda: retention.save_retention(db.session, form.settings_data(), current_user),
        saved,
        page=PAGE,
        partial="audit/_retention.html",
        context=lambda: {**_log_context(), **_retention_context()},
    )
