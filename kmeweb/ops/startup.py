"""Checks a worker or scheduler makes before it starts: it exits with one line, never a URL."""

from __future__ import annotations

from flask import Flask
from redis import Redis
from sqlalchemy import text

from kmeweb.extensions import db
from kmeweb.ops import check_database


def check_services(app: Flask) -> str | None:
    """None when Redis and the database answer and the schema is current; else why not."""
    try:
        Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=3, socket_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - the reason, without the URL
        return f"Redis does not answer at REDIS_URL ({type(exc).__name__})"
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        return f"the database does not answer at DATABASE_URL ({type(exc).__name__})"
    state = check_database()
    if state != "ok":
        return f"database: {state}"
    return None
