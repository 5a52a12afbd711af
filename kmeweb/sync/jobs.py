"""RQ job functions: they take ids only, run inside the worker's app context, are
idempotent, record failures where admins see them, and re-raise."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kmeweb.apitokens import services as api_tokens
from kmeweb.audit import services as audit
from kmeweb.extensions import db, utcnow
from kmeweb.integration.models import get_integration
from kmeweb.knox import KnoxError
from kmeweb.operations import dispatch
from kmeweb.operations import queue as rq_queue
from kmeweb.operations import services as operations
from kmeweb.operations.models import ACTIVE, Operation, OperationKind
from kmeweb.ops.metrics import refresh_inventory
from kmeweb.outbox.models import Change, ChangeStatus
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles.models import Profile
from kmeweb.sync import push
from kmeweb.sync.knox import knox_client
from kmeweb.sync.pull import run_pull

log = logging.getLogger("kmeweb.sync")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def push_job(operation_id: int | None = None) -> int:
    """Send every due outbox change to KME (not only this operation's); returns how many.

    Leaves changes pending while the integration is inactive. Schedules itself again
    for changes waiting on a retry delay.
    """
    session = db.session
    integration = get_integration(session)
    if integration is None or not integration.active:
        return 0
    try:
        client = knox_client(integration)
    except (KnoxError, ValueError) as exc:  # unusable credentials: say so where admins look
        record_integration_error(session, f"cannot push to KME: {exc}")
        session.commit()
        raise
    with client:
        processed = push.run_push(session, client, worker_name())
    log.info("push sent %s change(s) to KME", processed)
    if processed:
        session.execute(
            update(type(integration))
            .where(type(integration).id == integration.id)
            .values(last_push_at=utcnow())
        )
        session.commit()
    schedule_followup(session)
    return processed


def schedule_followup(session: Session) -> None:
    """Make sure a push runs when the next pending change is due."""
    due_in = push.next_due_in(session)
    session.rollback()
    if due_in is None:
        return
    if due_in <= 0.5:
        rq_queue.enqueue_unique(rq_queue.PUSH_JOB, None, job_id="push-now", queue="knox")
    else:
        slot = int((utcnow() + timedelta(seconds=due_in)).timestamp())
        job_id = f"push-at-{slot}"
        if rq_queue.job_status(job_id) is None:
            rq_queue.enqueue_in(due_in, rq_queue.PUSH_JOB, None, job_id=job_id, queue="knox")


def pull_job(operation_id: int) -> dict[str, int]:
    """Run the pull of an operation (kind pull or pull.full); records its outcome."""
    session = db.session
    operation = session.get(Operation, operation_id)
    if operation is None or operation.status not in ACTIVE:
        return {}
    integration = get_integration(session)
    if integration is None or not integration.active:
        operations.finish(session, operation_id, "The Knox integration is not active.")
        session.commit()
        return {}
    operations.mark_running(session, operation_id)
    session.commit()
    try:
        with knox_client(integration) as client:
            summary = run_pull(
                session,
                client,
                integration,
                operation_id,
                full=operation.kind == OperationKind.PULL_FULL,
            )
    except rq_queue.JOB_FAILURES as exc:  # RQ's timeout too: say why it stopped
        session.rollback()
        message = push.readable(exc) if isinstance(exc, KnoxError) else f"pull failed: {exc}"
        operations.finish(session, operation_id, message)
        record_integration_error(session, message)
        session.commit()
        raise
    operations.finish(session, operation_id)
    session.commit()
    if summary.get("devices_sent_again"):  # portal policy OURS: push kmeweb's values now
        schedule_followup(session)
    log.info("pull finished (operation %s): %s", operation_id, summary)
    return summary


def record_integration_error(session: Session, message: str) -> None:
    integration = get_integration(session)
    if integration is not None:
        integration.last_error = message[:2000]
        integration.last_error_at = utcnow()


def running_pull(session: Session) -> Operation | None:
    """The pull (incremental or full) that is queued or running now, if any."""
    return operations.active_operation(session, "pull")


def start_pull(session: Session, actor: Any, full: bool = False) -> Operation:
    """Start a pull now unless one is queued or running (then return that one).

    Flushes; the job is enqueued after the commit. Used by Sync now, `flask sync now`
    and the schedule.
    """
    kind = OperationKind.PULL_FULL if full else OperationKind.PULL
    running = running_pull(session)
    if running is not None:
        return running
    label = "Full sync from KME" if full else "Sync from KME"
    operation = operations.create_operation(session, kind, label, 0, actor, dedup_key="pull")
    if not isinstance(actor, str) or actor != "scheduler":
        audit.record(session, actor, "sync.start", "operation", operation.id, {"full": full})
    dispatch.after_commit(session, operation)
    return operation


def scheduled_pull() -> int | None:
    session = db.session
    integration = get_integration(session)
    if integration is None or not integration.active:
        return None
    operation = start_pull(session, "scheduler")
    session.commit()
    return operation.id


def scheduled_full_pull() -> int | None:
    session = db.session
    integration = get_integration(session)
    if integration is None or not integration.active:
        return None
    operation = start_pull(session, "scheduler", full=True)
    session.commit()
    return operation.id


def sweep_job() -> dict[str, int]:
    """Put back changes whose worker died, and re-enqueue due work whose job is gone; forget
    the API's idempotency keys older than a day; count devices for /metrics; recount every
    profile's devices and repair kept counts that are wrong (kmeweb.profiles.counts).

    The database, not Redis, is the record of what must still happen: after a Redis
    flush or a killed worker this brings everything back.
    """
    session = db.session
    now = utcnow()
    released = session.execute(
        update(Change)
        .where(Change.status == ChangeStatus.RUNNING, Change.next_attempt_at < now)
        .values(status=ChangeStatus.PENDING, claimed_by=None, next_attempt_at=now)
    ).rowcount
    # Operations whose job vanished (Redis flushed, worker killed) with nothing left to push.
    stale = 0
    for operation in session.scalars(select(Operation).where(Operation.status.in_(ACTIVE))):
        unfinished = session.scalar(
            select(func.count())
            .select_from(Change)
            .where(Change.operation_id == operation.id, Change.status.in_(push.UNFINISHED))
        )
        if operation.kind in dispatch.JOBS and not _is_push(session, operation):
            # a job of its own (pull, import, a move not yet materialised), not a push
            if _pull_vanished(operation, now):
                operations.finish(session, operation.id, "The worker running it stopped.")
                stale += 1
        elif not unfinished:
            push.maybe_finish_operation(session, operation.id)
    forgotten = api_tokens.forget_old_idempotency_keys(session)
    session.commit()
    due = session.execute(
        select(Change.operation_id, Operation.kind)
        .join(Operation, Operation.id == Change.operation_id, isouter=True)
        .where(Change.status == ChangeStatus.PENDING, Change.next_attempt_at <= now)
        .group_by(Change.operation_id, Operation.kind)
        .limit(50)
    ).all()
    session.rollback()
    enqueued = 0
    for operation_id, kind in due:
        if operation_id is None:
            rq_queue.enqueue_unique(rq_queue.PUSH_JOB, None, job_id="push-now", queue="knox")
        else:
            dispatch.enqueue_operation(operation_id, kind or "push")
            if rq_queue.job_status(f"op-{operation_id}") == "started":
                # Its job may be a killed worker's, "started" in RQ until a maintenance pass
                # minutes later: a generic push (any due change, SKIP LOCKED) takes them now.
                rq_queue.enqueue_unique(rq_queue.PUSH_JOB, None, job_id="push-now", queue="knox")
        enqueued += 1
    if released or stale:
        log.warning("sweeper released %s changes and closed %s stale pulls", released, stale)
    _refresh_inventory_metrics(session)
    return {
        "released": released,
        "enqueued": enqueued,
        "stale_pulls": stale,
        "idempotency_keys_forgotten": forgotten,
        "profile_counts_repaired": _repair_kept_counts(session),
    }


def _repair_kept_counts(session: Session) -> int:
    """Recount every profile's devices and repair kept counts a bug left wrong (logged and
    audited by kmeweb.profiles.counts); returns how many profiles were repaired."""
    try:
        repaired = kept_counts.check_and_repair(session)
        session.commit()
        return len(repaired)
    except Exception:  # noqa: BLE001 - the sweep goes on; the next one checks again
        session.rollback()
        log.warning("sweeper could not check the kept device counts", exc_info=True)
        return 0


def _is_push(session: Session, operation: Operation) -> bool:
    """True for an operation whose job wrote its outbox changes (dispatch.PREPARES_CHANGES):
    from then on it is a push, finished when its changes are done."""
    if operation.kind not in dispatch.PREPARES_CHANGES:
        return False
    return (
        session.scalar(select(Change.id).where(Change.operation_id == operation.id).limit(1))
        is not None
    )


def _refresh_inventory_metrics(session: Session) -> None:
    """Count devices and tokens for /metrics (a scrape reads the counts from Redis)."""
    try:
        refresh_inventory(session, rq_queue.redis_connection())
    except Exception:  # noqa: BLE001 - metrics must not fail the sweep; the next one recounts
        log.warning("sweeper could not count devices for /metrics", exc_info=True)
    finally:
        session.rollback()


def _pull_vanished(operation: Operation, now: datetime) -> bool:
    """True when a queued or running pull has had no live job for PULL_STALE_S: its job is gone
    from Redis, finished without closing it, or still "started" but its worker stopped
    heartbeating (killed with -9: RQ itself notices only much later)."""
    stale = timedelta(seconds=float(current_app.config["PULL_STALE_S"]))
    if now - (operation.started_at or operation.created_at) <= stale:
        return False
    state = rq_queue.job_status(operation.job_id)
    if state not in rq_queue.ACTIVE_STATUSES:
        return True
    if state != "started":
        return False  # still waiting in a queue: no worker has taken it yet
    seen = rq_queue.job_last_seen(operation.job_id)
    return seen is None or now - seen > stale  # no heartbeat at all: its horse never ran


def token_expiry_job() -> int:
    """Record an audit event for each profile token that expired since the last check."""
    session = db.session
    now = utcnow()
    since = now - timedelta(days=1, minutes=5)
    expired = session.scalars(
        select(Profile).where(
            Profile.token_expires_at.is_not(None),
            Profile.token_expires_at <= now,
            Profile.token_expires_at > since,
        )
    ).all()
    for profile in expired:
        audit.record(
            session,
            "sync",
            "profile.token_expired",
            "profile",
            profile.id,
            {"name": profile.name, "expired_at": profile.token_expires_at.isoformat()},
        )
    session.commit()
    return len(expired)
