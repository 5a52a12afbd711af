"""The history purge: delete what is older than the retention (kmeweb.audit.retention), in
small batches that never hold a lock a page waits on.

What "history" is here:

- audit events whose `at` is older than the cutoff;
- device history events (`device_event`) older than the cutoff. That table has no index on
  `at`: it is walked by its primary key, oldest id first, and a batch stops at the first event
  not older than the cutoff (ids follow time; an event written with an earlier `at` than its
  neighbours goes when the walk reaches it). The attempts of a change (`change_attempt`) go
  with their change (ON DELETE CASCADE; SQLite's foreign keys are on in every connection);
- finished outbox changes (done or failed) created and finished before the cutoff;
- finished operations (done or failed) created and finished before the cutoff, together with
  their changes, in the same transaction, once every one of their changes is finished and
  older than the cutoff too. A change that belongs to an operation goes only with it, so an
  operation never loses the per-device results it shows, and one that is still queued or
  running keeps every change it needs. A change that is pending or running is never deleted.

Alert deliveries are not history: their (destination, event) row is what keeps one alert from
being sent twice. Idempotency keys are forgotten by the sweeper after a day.

How it stays out of the pages' way: each table is walked oldest first through the index on its
timestamp (`audit_event.at`, `change.created_at`, `operation.created_at`), from the last
(timestamp, id) it covered up to the cutoff, so it reads neither the rows it already deleted
nor those it keeps; at most `batch_size` rows per batch, each batch its own short transaction
(SELECT the next keys, DELETE that key range, commit). Nothing is locked but the rows being
deleted, which no page reads under a lock: PostgreSQL's readers never wait for a writer, and
SQLite's (WAL) neither; on SQLite the purge pauses between batches so that a page that writes
gets the single write lock in turn. The run stops when its time budget is used; the next run
starts again from the oldest row left. The settings are read again before each batch: a legal
hold switched on, or a retention lengthened, during a run takes effect at the next batch. A
run that deleted something writes one audit event, "history.purge", with the cutoff and the
counts: the only row the purge writes.
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
from kmeweb.devices.models import DeviceEvent
from kmeweb.extensions import utcnow
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.outbox.models import Change, ChangeStatus
from kmeweb.sqlutil import id_filters

FINISHED_CHANGES = (ChangeStatus.DONE, ChangeStatus.FAILED)
FINISHED_OPERATIONS = (OperationStatus.DONE, OperationStatus.FAILED)
PROGRESS_EVERY = 100  # batches


@dataclass
class Batch:
    """What one batch deleted, and the (timestamp, id) of the last row it covered (None:
    nothing was left to delete)."""

    audit_events: int = 0
    changes: int = 0
    operations: int = 0
    device_events: int = 0
    last: tuple[datetime, int] | None = None
    #: True when the batch was as large as allowed: there may be more after `last`.
    full: bool = False


@dataclass
class PurgeReport:
    """What one run did. `complete` is False when the time budget ran out with rows left
    (the next run goes on); `cutoff` is None when nothing was to be purged."""

    cutoff: datetime | None
    audit_events: int = 0
    changes: int = 0
    operations: int = 0
    device_events: int = 0
    batches: int = 0
    complete: bool = True
    held: bool = False

    @property
    def deleted(self) -> int:
        return self.audit_events + self.changes + self.operations + self.device_events

    def add(self, batch: Batch) -> None:
        self.device_events += batch.device_events
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
            "device_events": self.device_events,
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


#: Where a walk stands: the (timestamp, id) of the last row it covered; None before the first.
Key = tuple[datetime, int] | None


def _next_keys(
    session: Session, ts: Any, pk: Any, where: list[ColumnElement[bool]], after: Key, size: int
) -> list[tuple[datetime, int]]:
    """The (timestamp, id) of the next `size` rows matching `where`, in that order, after
    `after`: a range of the timestamp's index (`ts >= last`), which `where` bounds by the
    cutoff, so the walk reads neither the rows it deleted nor those it keeps."""
    stmt = select(ts, pk).where(*where, *_after(ts, pk, after)).order_by(ts, pk).limit(size)
    return [(row[0], row[1]) for row in session.execute(stmt)]


def _after(ts: Any, pk: Any, key: Key) -> list[ColumnElement[bool]]:
    """(ts, pk) > key, with `ts >= key's` for the index to start from."""
    if key is None:
        return []
    key_ts, key_id = key
    return [ts >= key_ts, or_(ts > key_ts, pk > key_id)]


def _up_to(ts: Any, pk: Any, key: tuple[datetime, int]) -> list[ColumnElement[bool]]:
    """(ts, pk) <= key, with `ts <= key's` for the index to stop at."""
    key_ts, key_id = key
    return [ts <= key_ts, or_(ts < key_ts, pk <= key_id)]


def _delete_ids(session: Session, model: Any, ids: list[int], *where: Any) -> int:
    """Delete the rows of `model` with these ids that still match `where`; how many."""
    deleted = 0
    for ids_clause in id_filters(session, model.id, ids):
        stmt = delete(model).where(ids_clause, *where).execution_options(synchronize_session=False)
        deleted += session.execute(stmt).rowcount
    return deleted


def delete_audit_batch(session: Session, cutoff: datetime, after: Key, size: int) -> Batch:
    """Delete the next `size` audit events older than `cutoff`, oldest first, after `after`.
    Does not commit: the caller ends the batch's transaction."""
    at, pk = AuditEvent.at, AuditEvent.id
    keys = _next_keys(session, at, pk, [at < cutoff], after, size)
    if not keys:
        return Batch()
    # The same range of the `at` index again, in key order: no probe per id.
    where = [at < cutoff, *_after(at, pk, after), *_up_to(at, pk, keys[-1])]
    stmt = delete(AuditEvent).where(*where).execution_options(synchronize_session=False)
    deleted = session.execute(stmt).rowcount
    return Batch(audit_events=deleted, last=keys[-1], full=len(keys) == size)


def delete_device_events_batch(session: Session, cutoff: datetime, after: Key, size: int) -> Batch:
    """Delete the next device history events older than `cutoff`, by id, after `after`: the
    next `size` ids, up to the first one not older than the cutoff (the walk ends there).
    Does not commit."""
    last_id = after[1] if after is not None else 0
    rows = session.execute(
        select(DeviceEvent.at, DeviceEvent.id)
        .where(DeviceEvent.id > last_id)
        .order_by(DeviceEvent.id)
        .limit(size)
    ).all()
    old = []
    for at, event_id in rows:
        if at >= cutoff:
            break
        old.append((at, event_id))
    if not old:
        return Batch()
    stmt = (
        delete(DeviceEvent)
        .where(DeviceEvent.id > last_id, DeviceEvent.id <= old[-1][1], DeviceEvent.at < cutoff)
        .execution_options(synchronize_session=False)
    )
    deleted = session.execute(stmt).rowcount
    return Batch(device_events=deleted, last=old[-1], full=len(old) == size)


def delete_loose_changes_batch(session: Session, cutoff: datetime, after: Key, size: int) -> Batch:
    """Delete the next `size` finished changes older than `cutoff` that belong to no operation.
    Does not commit."""
    where = [Change.operation_id.is_(None), *finished_change(cutoff)]
    keys = _next_keys(session, Change.created_at, Change.id, where, after, size)
    if not keys:
        return Batch()
    in_range = [*_after(Change.created_at, Change.id, after)]
    in_range += _up_to(Change.created_at, Change.id, keys[-1])
    stmt = delete(Change).where(*where, *in_range).execution_options(synchronize_session=False)
    deleted = session.execute(stmt).rowcount
    return Batch(changes=deleted, last=keys[-1], full=len(keys) == size)


def delete_operations_batch(session: Session, cutoff: datetime, after: Key, size: int) -> Batch:
    """Delete the next purgeable operations with their changes, about `size` rows in all (one
    operation alone when it has more changes). Does not commit."""
    where = purgeable_operation(cutoff)
    keys = _next_keys(session, Operation.created_at, Operation.id, where, after, size)
    if not keys:
        return Batch()
    counts = dict(
        session.execute(
            select(Change.operation_id, func.count())
            .where(Change.operation_id.in_([key[1] for key in keys]))
            .group_by(Change.operation_id)
        ).all()
    )
    taken: list[tuple[datetime, int]] = []
    total = 0
    for key in keys:
        rows = 1 + counts.get(key[1], 0)
        if taken and total + rows > size:
            break
        taken.append(key)
        total += rows
    ids = [key[1] for key in taken]
    # The changes first, each still finished and old (a retry may have put one back in the
    # outbox since), then the operations that still have nothing left to keep.
    changes = 0
    for ids_clause in id_filters(session, Change.operation_id, ids):
        stmt = (
            delete(Change)
            .where(ids_clause, *finished_change(cutoff))
            .execution_options(synchronize_session=False)
        )
        changes += session.execute(stmt).rowcount
    operations = _delete_ids(session, Operation, ids, *where)
    full = len(keys) == size or len(taken) < len(keys)
    return Batch(changes=changes, operations=operations, last=taken[-1], full=full)


@dataclass(frozen=True)
class Step:
    """One table's walk, oldest first: its batch deletes the rows after a key."""

    name: str
    batch: Callable[[Session, datetime, Key, int], Batch]


STEPS: tuple[Step, ...] = (
    Step("audit_events", delete_audit_batch),
    Step("device_events", delete_device_events_batch),
    Step("changes", delete_loose_changes_batch),
    Step("operations", delete_operations_batch),
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
    most `budget_s` seconds (0: until done; the batch in hand when it runs out is finished);
    see the module docstring for what and how.

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
        after: Key = None
        while report.complete:
            _follow_settings(session, report, now)
            if not report.complete:
                break
            batch = step.batch(session, report.cutoff, after, batch_size)
            session.commit()
            if batch.last is None:
                break
            report.add(batch)
            after = batch.last
            if progress is not None and report.batches % PROGRESS_EVERY == 0:
                progress(report)
            if not batch.full:
                break  # this table has nothing older left
            if deadline is not None and clock() >= deadline:
                report.complete = False
                break
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
