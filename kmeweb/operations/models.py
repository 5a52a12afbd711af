from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow


class OperationStatus(Choice):
    """Where an operation is (values stored in `operation.status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


#: An operation that is still waiting or working.
ACTIVE = (OperationStatus.QUEUED, OperationStatus.RUNNING)


class OperationKind(Choice):
    """Operation kinds that are not a push of outbox changes (those use the change's kind)."""

    PULL = "pull"
    PULL_FULL = "pull.full"
    DEVICE_IMPORT = "device.import"
    #: Move "all N matching" a filter (the API's): its job resolves the selection and writes
    #: the outbox changes of a device.move, which are then pushed under the same operation.
    DEVICE_MOVE_SELECTION = "device.move.selection", "Move devices (all matching)"
    #: Send ours again / Take Samsung's for "all N matching" devices changed in the Samsung
    #: portal: its job settles them (Send ours again then pushes under the same operation).
    DEVICE_PORTAL_SELECTION = "device.portal.selection", "Settle Samsung portal changes"
    #: Apply routing rules to existing devices: its job writes the approvals and moves.
    RULES_APPLY = "rules.apply", "Apply routing rules"
    #: Check with Samsung (the device page): its job reads one device's live KME record and
    #: keeps it in the operation's params ("kme"); nothing else changes.
    DEVICE_CHECK = "device.check", "Check with Samsung"


OPERATION_STATUSES = tuple(OperationStatus)


class Operation(db.Model):
    """A database row mirroring one background job; the job id is `op-<id>`."""

    __tablename__ = "operation"
    __table_args__ = (
        Index("ix_operation_status", "status"),
        Index("ix_operation_dedup_key", "dedup_key"),
        Index("ix_operation_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=OperationStatus.QUEUED)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("admin_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dedup_key: Mapped[str | None] = mapped_column(String(100))
    #: What the operation's job needs to run it (ids and values only, never a secret).
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    @property
    def job_id(self) -> str:
        return f"op-{self.id}"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE
