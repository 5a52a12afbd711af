"""The scheduler's job that keeps the Overview's unfiltered funnel counted ahead of visits."""

from __future__ import annotations

from flask import current_app

from kmeweb.extensions import db
from kmeweb.operations.queue import redis_connection
from kmeweb.overview import services


def refresh_funnel_job() -> int:
    """Count the funnel and store it for the Overview; returns the uploaded-device count."""
    ttl = float(current_app.config["OVERVIEW_CACHE_S"])
    stages, _at = services.cached_funnel(db.session, redis_connection(), ttl, refresh=True)
    db.session.rollback()
    return stages[0].count
