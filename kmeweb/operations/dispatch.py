"""Which job runs an operation, and enqueueing it after the commit (job id = `op-<id>`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kmeweb.operations.models import Operation
from kmeweb.operations.services import on_commit

# operation kind -> (job function, queue); every other kind is a push of its outbox changes.
JOBS: dict[str, tuple[str, str]] = {
    "pull": ("kmeweb.sync.jobs.pull_job", "knox"),
    "pull.full": ("kmeweb.sync.jobs.pull_job", "knox"),
}
PUSH_JOB = ("kmeweb.sync.jobs.push_job", "knox")


def job_for(kind: str) -> tuple[str, str]:
    return JOBS.get(kind, PUSH_JOB)


def enqueue_operation(operation_id: int, kind: str) -> None:
    """Enqueue the job of an operation unless one is already waiting or running."""
    from kmeweb.operations import queue

    func, queue_name = job_for(kind)
    queue.enqueue_unique(func, operation_id, job_id=f"op-{operation_id}", queue=queue_name)


def after_commit(session: Session, operation: Operation) -> None:
    """Enqueue the operation's job once the current transaction commits."""
    operation_id, kind = operation.id, operation.kind
    on_commit(session, lambda: enqueue_operation(operation_id, kind))
