"""RQ jobs of the alerts: the periodic evaluation and the delivery of one alert."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError

from kmeweb.alerts import services
from kmeweb.extensions import db, utcnow
from kmeweb.operations import queue as rq_queue

log = logging.getLogger("kmeweb.alerts")

DELIVER_JOB = "kmeweb.alerts.jobs.deliver_job"


def enqueue_delivery(delivery_id: int) -> None:
    """Enqueue the job that sends a delivery (call after the commit), with RQ retries at the
    configured backoff; one job id per delivery, so a duplicate enqueue is a no-op."""
    rq_queue.enqueue_unique(
        DELIVER_JOB,
        delivery_id,
        job_id=f"alert-{delivery_id}",
        queue="default",
        retry=rq_queue.retry_policy(services.backoff_intervals(current_app.config)),
    )


def evaluate_alerts_job() -> dict[str, int]:
    """Insert a delivery for each new event per destination and enqueue those this run
    inserted; re-enqueue deliveries whose job vanished. Commits."""
    session = db.session
    now = utcnow()
    new_ids = services.evaluate(session, now, current_app.config.get("PUBLIC_URL", ""))
    session.commit()
    for delivery_id in new_ids:
        enqueue_delivery(delivery_id)
    # A job lost with Redis or a killed worker: the row, not the queue, says what is owed.
    grace = timedelta(seconds=max(30.0, float(current_app.config["ALERT_INTERVAL_S"])))
    stranded = 0
    for delivery_id in services.stranded_deliveries(session, now, grace):
        if rq_queue.job_status(f"alert-{delivery_id}") not in rq_queue.ACTIVE_STATUSES:
            enqueue_delivery(delivery_id)
            stranded += 1
    session.rollback()
    if new_ids or stranded:
        log.info("alerts: %s new deliveries, %s re-enqueued", len(new_ids), stranded)
    return {"new": len(new_ids), "requeued": stranded}


def deliver_job(delivery_id: int) -> str:
    """Send one alert (one attempt). Raises DeliveryFailed while attempts are left, so that
    RQ retries it after the backoff; the last failure marks the destination failing."""
    attempt = services.deliver(db.session, delivery_id, current_app.config)
    if attempt.outcome == "retry":
        raise services.DeliveryFailed(attempt.error)
    return attempt.outcome


EVALUATE_JOB = "kmeweb.alerts.jobs.evaluate_alerts_job"


def evaluate_soon() -> None:
    """Evaluate the alerts now rather than at the next tick (an event that must not wait, such
    as a break-glass sign-in). Best effort: the scheduled evaluation catches up if Redis is
    down."""
    try:
        rq_queue.enqueue_unique(EVALUATE_JOB, job_id="alerts-now", queue="maintenance")
    except RedisError:  # Redis unavailable: the next scheduled tick sends it
        log.warning("could not enqueue an alert evaluation now", exc_info=True)
