"""Operation rows mirror background jobs; work is enqueued only after the commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.errors import Conflict, NotFound
from kmeweb.extensions import utcnow
from kmeweb.operations import dispatch
from kmeweb.operations.models import ACTIVE, Operation, OperationStatus
from kmeweb.outbox.models import Change, ChangeStatus


def actor_id(actor: Any) -> int | None:
    """The admin id of an actor (None for "sync", "cli" and other system actors)."""
    return None if actor is None or isinstance(actor, str) else actor.id


def create_operation(
    session: Session,
    kind: str,
    label: str,
    total: int = 0,
    actor: Any = None,
    dedup_key: str | None = None,
) -> Operation:
    """Add a queued operation (flushes so it has an id)."""
    operation = Operation(
        kind=kind,
        label=label[:200],
        status=OperationStatus.QUEUED,
        total=total,
        done=0,
        created_by=actor_id(actor),
        dedup_key=dedup_key,
    )
    session.add(operation)
    session.flush()
    return operation


def start_operation(session: Session, kind: str, label: str, total: int, actor: Any) -> Operation:
    """Create the operation that groups a service's changes; its push job is enqueued after
    the commit."""
    operation = create_operation(session, kind, label, total, actor)
    dispatch.after_commit(session, operation)
    return operation


def active_operation(session: Session, dedup_key: str) -> Operation | None:
    """The queued or running operation with this dedup key, if any ("already running?")."""
    return session.scalar(
        select(Operation)
        .where(Operation.dedup_key == dedup_key, Operation.status.in_(ACTIVE))
        .order_by(Operation.id.desc())
        .limit(1)
    )


def get_operation(session: Session, operation_id: int) -> Operation:
    """Raises NotFound."""
    operation = session.get(Operation, operation_id)
    if operation is None:
        raise NotFound("No such operation.")
    return operation


def mark_running(session: Session, operation_id: int) -> None:
    session.execute(
        update(Operation)
        .where(Operation.id == operation_id, Operation.status == OperationStatus.QUEUED)
        .values(status=OperationStatus.RUNNING, started_at=utcnow())
    )


def add_progress(session: Session, operation_id: int, n: int) -> None:
    """Atomically count `n` more items done (many workers may report at once)."""
    if n:
        session.execute(
            update(Operation).where(Operation.id == operation_id).values(done=Operation.done + n)
        )


def finish(session: Session, operation_id: int, error: str | None = None) -> None:
    """Mark the operation done, or failed with `error`."""
    session.execute(
        update(Operation)
        .where(Operation.id == operation_id)
        .values(
            status=OperationStatus.FAILED if error else OperationStatus.DONE,
            error=error[:2000] if error else None,
            finished_at=utcnow(),
        )
    )


def query_operations(status: str | None = None, kind: str | None = None) -> Select:
    """Recent operations first; `status` is queued/running/done/failed or "active"."""
    stmt = select(Operation).order_by(Operation.id.desc())
    if status == "active":
        stmt = stmt.where(Operation.status.in_(ACTIVE))
    elif status:
        stmt = stmt.where(Operation.status == status)
    if kind:
        stmt = stmt.where(Operation.kind == kind)
    return stmt


def changes_of(session: Session, operation_id: int, limit: int = 200) -> list[Change]:
    """The outbox rows of an operation, in order (at most `limit`)."""
    return list(
        session.scalars(
            select(Change)
            .where(Change.operation_id == operation_id)
            .order_by(Change.id)
            .limit(limit)
        )
    )


def retry_operation(session: Session, operation_id: int, actor: Any) -> Operation:
    """Put a failed operation's failed changes back in the outbox and queue it again.

    Raises NotFound, or Conflict when the operation has not failed.
    """
    operation = get_operation(session, operation_id)
    if operation.status != OperationStatus.FAILED:
        raise Conflict("Only a failed operation can be retried.")
    session.execute(
        update(Change)
        .where(Change.operation_id == operation.id, Change.status == ChangeStatus.FAILED)
        .values(status=ChangeStatus.PENDING, attempts=0, next_attempt_at=utcnow(), last_error=None)
    )
    operation.status = OperationStatus.QUEUED
    operation.error = None
    operation.finished_at = None
    details = {"kind": operation.kind}
    audit.record(session, actor, "operation.retry", "operation", operation.id, details)
    dispatch.after_commit(session, operation)
    return operation
