"""The history purge: delete what is older than the retention (kmeweb.audit.retention), in
small batches that never hold a lock a page waits on.

What "history" is here:

- audit events whose `at` is older than the cutoff;
- finished outbox changes (done or failed) created and finished before the cutoff;
- finished operations (done or failed) created and finished before the cutoff, together with
  their changes, in the same transaction, once every one of their changes is finished and
  older than the cutoff too. A change that belongs to an operation goes only with it, so an
  operation never loses the per-device results it shows, and one that is still queued or
  running keeps every change it needs. A change that is pending or running is never deleted.

Alert deliveries are not history: their (destination, event) row is what keeps one alert from
being sent twice. Idempotency keys are forgotten by the sweeper after a day.

How it stays out of the pages' way: each table is walked by primary key (`id > last`, up to
the highest id older than the cutoff, read first through the index on the timestamp), at most
`batch_size` rows per batch, each batch its own short transaction (DELETE by id range,
commit). Nothing is locked but the rows being deleted, which no page reads under a lock:
PostgreSQL's readers never wait for a writer, and SQLite's (WAL) neither; on SQLite the purge
pauses between batches so that a page that writes gets the single write lock in turn. The run
stops when its time budget is used; the next run goes on where it stopped (the deleted rows
are gone). The settings are read again before each batch: a legal hold switched on, or a
retention lengthened, during a run takes effect at the next batch. A run that deleted
something writes one audit event, "history.purge", with the cutoff and the counts: the only
row the purge writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.audit.retention import PURGE_ACTION, get_retention
from kmeweb.extensions import utcnow
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.outbox.models import Change, ChangeStatus

FINISHED_CHANGES = (ChangeStatus.DONE, ChangeStatus.FAILED)
FINISHED_OPERATIONS = (OperationStatus.DONE, OperationStatus.FAILED)
PROGRESS_EVERY = 100  # batches


@dataclass
class Batch:
    """What one batch deleted, and the last id it covered (None: nothing was left)."""

    audit_events: int = 0
    changes: int = 0
    operations: int = 0
    last_id: int | None = None


@dataclass
class PurgeReport:
    """What one run did. `complete` is False when the time budget ran out with rows left
    (the next run goes on); `cutoff` is None when nothing was to be purged."""

    cutoff: datetime | None
    audit_events: int = 0
    changes: int = 0
    operations: int = 0
    batches: int = 0
    complete: bool = True
    held: bool = False

    @property
    def deleted(self) -> int:
        return self.audit_events + self.changes + self.operations

    def add(self, batch: Batch) -> None:
        self.audit_events += batch.audit_events
        self.changes += batch.changes
        self.operations += batch.operations
        self.batches += 1

    def details(self) -> dict[str, Any]:
        """The details of the run's "history.purge" audit event."""
        return {
            "cutoff": self.cutoff.isoformat(timespec="seconds") if self.cutoff else None,
            "audit_events": self.audit_events,
            "changes": self.changes,
            "operations": self.operations,
            "complete": self.complete,
        }


def finished_change(cutoff: datetime) -> list[ColumnElement[bool]]:
    """A change that is done or failed, created and finished before `cutoff`."""
    return [
        Change.status.in_(FINISHED_CHANGES),
        Change.created_at < cutoff,
        or_(Change.done_at.is_(None), Change.done_at < cutoff),
    ]


def purgeable_operation(cutoff: datetime) -> list[ColumnElement[bool]]:
    """An operation that is done or failed, created and finished before `cutoff`, none of
    whose changes is unfinished or newer than `cutoff`."""
    kept_change = exists().where(
        Change.operation_id == Operation.id,
        or_(
            Change.status.not_in(FINISHED_CHANGES),
            Change.created_at >= cutoff,
            Change.done_at >= cutoff,
        ),
    )
    return [
        Operation.status.in_(FINISHED_OPERATIONS),
        Operation.created_at < cutoff,
        or_(Operation.finished_at.is_(None), Operation.finished_at < cutoff),
        ~kept_change,
    ]


def _last_of_batch(
    session: Session, pk: Any, where: list[ColumnElement[bool]], after: int, hi: int, size: int
) -> int | None:
    """The highest id of the next `size` rows matching `where` with `after < id <= hi`."""
    window = select(pk.label("id")).where(*where, pk > after, pk <= hi).order_by(pk).limit(size)
    return session.scalar(select(func.max(window.subquery().c.id)))


def delete_audit_batch(session: Session, cutoff: datetime, after: int, hi: int, size: int) -> Batch:
    """Delete the next `size` audit events older than `cutoff` (ids in `after`..`hi`).
    Does not commit: the caller ends the batch's transaction."""
    where = [AuditEvent.at < cutoff]
    last = _last_of_batch(session, AuditEvent.id, where, after, hi, size)
    if last is None:
        return Batch()
    stmt = delete(AuditEvent).where(AuditEvent.id > after, AuditEvent.id <= last, *where)
    return Batch(audit_events=session.execute(stmt).rowcount, last_id=last)


def delete_loose_changes_batch(
    session: Session, cutoff: datetime, after: int, hi: int, size: int
) -> Batch:
    """Delete the next `size` finished changes older than `cutoff` that belong to no operation.
    Does not commit."""
    where = [Change.operation_id.is_(None), *finished_change(cutoff)]
    last = _last_of_batch(session, Change.id, where, after, hi, size)
    if last is None:
        return Batch()
    stmt = delete(Change).where(Change.id > after, Change.id <= last, *where)
    return Batch(changes=session.execute(stmt).rowcount, last_id=last)


def delete_operations_batch(
    session: Session, cutoff: datetime, after: int, hi: int, size: int
) -> Batch:
    """Delete the next purgeable operations (ids in `after`..`hi`) with their changes, about
    `size` rows in all (one operation alone when it has more changes). Does not commit."""
    where = purgeable_operation(cutoff)
    changes = (
        select(func.count())
        .where(Change.operation_id == Operation.id)
        .correlate(Operation)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Operation.id, changes)
        .where(*where, Operation.id > after, Operation.id <= hi)
        .order_by(Operation.id)
        .limit(size)
    ).all()
    last, total = None, 0
    for operation_id, count in rows:
        if last is not None and total + 1 + count > size:
            break
        last, total = operation_id, total + 1 + count
    if last is None:
        return Batch()
    in_batch = select(Operation.id).where(*where, Operation.id > after, Operation.id <= last)
    deleted_changes = session.execute(
        delete(Change)
        .where(Change.operation_id.in_(in_batch), *finished_change(cutoff))
        .execution_options(synchronize_session=False)
    ).rowcount
    deleted_operations = session.execute(
        delete(Operation)
        .where(Operation.id > after, Operation.id <= last, *where)
        .execution_options(synchronize_session=False)
    ).rowcount
    return Batch(changes=deleted_changes, operations=deleted_operations, last_id=last)


@dataclass(frozen=True)
class Step:
    """One table's walk: the highest id to purge, and the batch that deletes."""

    name: str
    highest: Callable[[datetime], Any]
    batch: Callable[[Session, datetime, int, int, int], Batch]


STEPS: tuple[Step, ...] = (
    Step(
        "audit_events",
        lambda cutoff: select(func.max(AuditEvent.id)).where(AuditEvent.at < cutoff),
        delete_audit_batch,
    ),
    Step(
        "changes",
        lambda cutoff: select(func.max(Change.id)).where(
            Change.operation_id.is_(None), *finished_change(cutoff)
        ),
        delete_loose_changes_batch,
    ),
    Step(
        "operations",
        lambda cutoff: select(func.max(Operation.id)).where(*purgeable_operation(cutoff)),
        delete_operations_batch,
    ),
)


def purge_history(
    session: Session,
    actor: Any,
    *,
    batch_size: int = 5000,
    budget_s: float = 0.0,
    pause_s: float = 0.0,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[PurgeReport], None] | None = None,
) -> PurgeReport:
    """Delete the history older than the retention, `batch_size` rows per transaction, for at
    most `budget_s` seconds (0: until done); see the module docstring for what and how.

    Commits each batch, and records "history.purge" (actor `actor`) when it deleted anything.
    `pause_s` is slept between batches on SQLite only (its busy handler retries a waiting
    writer at intervals of up to 100 ms). `progress` is called every PROGRESS_EVERY batches.
    Does nothing under a legal hold or without a retention.
    """
    now = now or utcnow()
    settings = get_retention(session)
    session.rollback()
    report = PurgeReport(settings.cutoff(now), held=settings.legal_hold)
    if report.cutoff is None:
        return report
    deadline = clock() + budget_s if budget_s > 0 else None
    pause = pause_s if session.get_bind().dialect.name == "sqlite" else 0.0
    for step in STEPS:
        hi = session.scalar(step.highest(report.cutoff))
        session.rollback()  # no transaction stays open between the batches
        after = 0
        while hi is not None and after < hi and report.complete:
            if deadline is not None and clock() >= deadline:
                report.complete = False
                break
            _follow_settings(session, report, now)
            if not report.complete:
                break
            batch = step.batch(session, report.cutoff, after, hi, batch_size)
            session.commit()
            if batch.last_id is None:
                break
            report.add(batch)
            after = batch.last_id
            if progress is not None and report.batches % PROGRESS_EVERY == 0:
                progress(report)
            if pause:
                time.sleep(pause)
        if not report.complete:
            break
    if report.deleted:
        audit.record(session, actor, PURGE_ACTION, details=report.details())
        session.commit()
    return report


def _follow_settings(session: Session, report: PurgeReport, now: datetime) -> None:
    """Read the settings again (in the batch's transaction): a legal hold or a removed
    retention stops the run; a lengthened retention moves its cutoff earlier (never later)."""
    settings = get_retention(session)
    current = settings.cutoff(now)
    if current is None:
        session.rollback()
        report.complete, report.held = False, settings.legal_hold
    elif report.cutoff is None or current < report.cutoff:
        report.cutoff = current
