"""The Overview: the page `/` opens after sign-in."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from kmeweb.alerts.forms import ActionForm
from kmeweb.extensions import db, utcnow
from kmeweb.htmx import is_htmx, render
from kmeweb.operations.queue import redis_connection
from kmeweb.overview import services
from kmeweb.overview.forms import FunnelFilterForm
from kmeweb.sync.status import integration_status

bp = Blueprint("overview", __name__)


def _redis():
    """Redis for the funnel's cache and the next scheduled pull (one client per app, so a
    request does not open a new connection); the page still works without it."""
    try:
        redis = current_app.extensions.get("kmeweb_overview_redis")
        if redis is None:
            redis = current_app.extensions["kmeweb_overview_redis"] = redis_connection()
        redis.ping()
    except Exception:  # noqa: BLE001 - the Overview without the schedule beats an error page
        return None
    return redis


@bp.get("/")
def index():
    """Enrollment funnel, Needs attention and Sync health; as htmx, the funnel alone."""
    form = FunnelFilterForm()
    choices = services.filter_choices(db.session)
    form.set_choices(choices["resellers"], choices["profiles"])
    valid = form.validate_query()
    redis = _redis()
    stages, counted_at = services.cached_funnel(
        db.session,
        redis,
        float(current_app.config["OVERVIEW_CACHE_S"]),
        form.selected("reseller"),
        form.selected("profile"),
    )
    context = {"form": form, "stages": stages, "counted_at": counted_at}
    code = 200 if valid else 422
    if is_htmx():
        return render("overview/index.html", "overview/_funnel.html", code=code, **context)
    return render(
        "overview/index.html",
        "overview/_funnel.html",
        code=code,
        action_form=ActionForm(),
        **_health(redis),
        **context,
    )


def _health(redis: Any) -> dict[str, Any]:
    """Needs attention and Sync health, below the funnel on the full page."""
    now = utcnow()
    status = integration_status(db.session, redis)
    return {
        "attention": services.needs_attention(
            db.session, now, status["last_error"], status["last_error_at"]
        ),
        "status": status,
        "spark": services.sparkline(services.changes_per_hour(db.session, now)),
        "token_days": services.TOKEN_WARNING_DAYS,
    }
