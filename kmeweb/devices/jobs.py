"""Jobs of the devices room that are not an import: the move of "all N matching" a filter
that the API accepted (kmeweb.devices.services.start_selection_move)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from kmeweb import gcpause
from kmeweb.auth.models import AdminUser
from kmeweb.devices import services
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.extensions import db
from kmeweb.operations import queue
from kmeweb.operations import services as operations
from kmeweb.operations.models import ACTIVE, Operation


@dataclass(frozen=True)
class JobActor:
    """Who the job records as its actor: the admin who asked, named as then (an API token's
    calls read "owner (API token name)")."""

    id: int
    email: str


def _actor(session: Any, operation: Operation) -> Any:
    admin = session.get(AdminUser, operation.created_by) if operation.created_by else None
    name = (operation.params or {}).get("actor")
    if admin is None:
        return name or "system"
    return JobActor(admin.id, name or admin.email)


def move_selection_job(operation_id: int) -> int | None:
    """Run a move of "all N matching" (RQ job on the default queue): resolve the selection
    now and write the move's changes under the operation (services.run_selection_move), all
    in one transaction, then hand them to the push, which finishes the operation when they
    are done. Returns how many devices moved.

    Safe to run again (a retry, the sweeper): an operation no longer active is left alone;
    one that already has its outbox changes moves nothing again and only gets its push
    enqueued. The operation row is locked while the move is written (PostgreSQL), so two
    runs at once do not both move. A move refused now (devices gone, none left to move) marks
    the operation failed with the reason, nothing written.
    """
    session = db.session
    operation = session.scalar(
        select(Operation).where(Operation.id == operation_id).with_for_update()
    )
    if operation is None or operation.status not in ACTIVE:
        session.rollback()
        return None
    try:
        with gcpause.paused():
            operations.mark_running(session, operation_id)
            moved = services.run_selection_move(session, operation, _actor(session, operation))
            session.commit()
    except Exception as exc:
        session.rollback()
        message = getattr(exc, "message", None) or f"The move failed: {exc}"
        operations.finish(session, operation_id, message)
        session.commit()
        if isinstance(exc, NotFound | Conflict | ValidationError):
            return None
        raise
    push_changes(operation_id)
    return moved


def push_changes(operation_id: int) -> None:
    """Enqueue the push of the operation's changes (the push sends every due change)."""
    queue.enqueue_unique(
        queue.PUSH_JOB, operation_id, job_id=f"push-op-{operation_id}", queue="knox"
    )
