"""Job functions for the queue tests: a worker imports them by dotted path, as it does ours."""

from __future__ import annotations

from flask import current_app

from kmeweb.audit import services as audit
from kmeweb.extensions import db


def record_run(tag: str) -> str:
    """Write an audit event (so the test sees the job ran, in the database, once per run)."""
    audit.record(db.session, "job", "test.job_ran", details={"tag": tag})
    db.session.commit()
    return current_app.config["REDIS_URL"]


def fail(message: str) -> None:
    raise RuntimeError(message)
