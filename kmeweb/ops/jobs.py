"""RQ jobs of the operator's chores: the scheduled history purge."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app

from kmeweb.extensions import db
from kmeweb.ops.retention import purge_history

log = logging.getLogger("kmeweb.retention")


def purge_history_job() -> dict[str, Any]:
    """Purge the history older than the retention for at most PURGE_BUDGET_S (the scheduler
    runs it again every PURGE_INTERVAL_S while a retention is set). Commits each batch;
    returns the counts."""
    cfg = current_app.config
    report = purge_history(
        db.session,
        "scheduler",
        batch_size=int(cfg["PURGE_BATCH_SIZE"]),
        budget_s=float(cfg["PURGE_BUDGET_S"]),
        pause_s=float(cfg["PURGE_PAUSE_S"]),
    )
    if report.deleted:
        log.info("history purge: %s", report.details())
    return {**report.details(), "held": report.held}
