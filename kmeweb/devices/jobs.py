"""Jobs of the devices room that are not an import: the move of "all N matching" a filter
that the API accepted (kmeweb.devices.services.start_selection_move), and Send ours again /
Take Samsung's for "all N matching" (kmeweb.devices.portal.start_selection)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from kmeweb import gcpause
from kmeweb.auth.models import AdminUser
from kmeweb.devices import portal, services
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
    now and write the move's changes under the operation (services.run_selection_move), then
    hand them to the push, which finishes the operation when they are done. Returns how many
    devices moved. See run_preparing_job."""
    return run_preparing_job(operation_id, services.run_selection_move, "The move failed")


def portal_selection_job(operation_id: int) -> int | None:
    """Send ours again / Take Samsung's for "all N matching" (RQ job on the default queue):
    resolve the selection now and settle its devices changed in the Samsung portal under the
    operation (portal.run_selection); Send ours again's changes then go to the push. Returns
    how many devices settled. See run_preparing_job."""
    return run_preparing_job(operation_id, portal.run_selection, "Settling the devices failed")


def run_preparing_job(
    operation_id: int, write: Callable[[Any, Operation, Any], int], failed: str
) -> int | None:
    """The body of a job that writes an operation's outbox changes (dispatch.PREPARES_CHANGES)
    and hands them to the push: `write(session, operation, actor)` in one transaction, then
    the push is enqueued. Returns what `write` returned.

    Safe to run again (a retry, the sweeper): an operation no longer active is left alone;
    `write` must change nothing when the operation already has its outbox changes, and the
    push is enqueued again. The operation row is locked while `write` runs (PostgreSQL), so
    two runs at once do not both write. A refusal (NotFound, Conflict, ValidationError: the
    devices are gone, nothing left to do) marks the operation failed with its message, nothing
    written; `failed` starts the message of any other error.
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
            done = write(session, operation, _actor(session, operation))
            session.commit()
    except queue.JOB_FAILURES as exc:  # RQ's timeout too: say why it stopped
        session.rollback()
        message = getattr(exc, "message", None) or f"{failed}: {exc}"
        operations.finish(session, operation_id, message)
        session.commit()
        if isinstance(exc, NotFound | Conflict | ValidationError):
            return None
        raise
    push_changes(operation_id)
    return done


def push_changes(operation_id: int) -> None:
    """Enqueue the push of the operation's changes (the push sends every due change)."""
    queue.enqueue_unique(
        queue.PUSH_JOB, operation_id, job_id=f"push-op-{operation_id}", queue="knox"
    )
