"""Which job runs an operation, and enqueueing it after the commit (job id = `op-<id>`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kmeweb.operations import queue
from kmeweb.operations.commit import on_commit
from kmeweb.operations.models import Operation, OperationKind
from kmeweb.operations.queue import (
    CHECK_DEVICE_JOB,
    IMPORT_JOB,
    MOVE_SELECTION_JOB,
    PORTAL_SELECTION_JOB,
    PULL_JOB,
    PUSH_JOB,
    RULES_APPLY_JOB,
)

# operation kind -> (job function, queue); every other kind is a push of its outbox changes.
JOBS: dict[str, tuple[str, str]] = {
    OperationKind.PULL: (PULL_JOB, "knox"),
    OperationKind.PULL_FULL: (PULL_JOB, "knox"),
    OperationKind.DEVICE_IMPORT: (IMPORT_JOB, "default"),
    OperationKind.DEVICE_MOVE_SELECTION: (MOVE_SELECTION_JOB, "default"),
    OperationKind.RULES_APPLY: (RULES_APPLY_JOB, "default"),
    OperationKind.DEVICE_PORTAL_SELECTION: (PORTAL_SELECTION_JOB, "default"),
    OperationKind.DEVICE_CHECK: (CHECK_DEVICE_JOB, "knox"),
}
PUSH = (PUSH_JOB, "knox")
#: Kinds whose job writes the operation's outbox changes and then hands them to the push:
#: once they exist, the operation is a push like any other (finished when they are done).
PREPARES_CHANGES = frozenset(
    {
        OperationKind.DEVICE_MOVE_SELECTION,
        OperationKind.RULES_APPLY,
        OperationKind.DEVICE_PORTAL_SELECTION,
    }
)


def job_for(kind: str) -> tuple[str, str]:
    return JOBS.get(kind, PUSH)


def enqueue_operation(operation_id: int, kind: str) -> None:
    """Enqueue the job of an operation unless one is already waiting or running."""
    func, queue_name = job_for(kind)
    queue.enqueue_unique(func, operation_id, job_id=f"op-{operation_id}", queue=queue_name)


def after_commit(session: Session, operation: Operation) -> None:
    """Enqueue the operation's job once the current transaction commits."""
    operation_id, kind = operation.id, operation.kind
    on_commit(session, lambda: enqueue_operation(operation_id, kind))
