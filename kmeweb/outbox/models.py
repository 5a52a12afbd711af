from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow


class ChangeStatus(Choice):
    """Where an outbox change is (values stored in `change.status`)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


#: Changes still to be sent (waiting, or held by a worker).
UNFINISHED = (ChangeStatus.PENDING, ChangeStatus.RUNNING)


class ChangeKind(Choice):
    """What an outbox change tells KME (values stored in `change.kind` and `operation.kind`)."""

    DEVICE_APPROVE = "device.approve"
    DEVICE_MOVE = "device.move"
    DEVICE_UNASSIGN = "device.unassign"
    DEVICE_USER = "device.user"
    DEVICE_RESYNC = "device.resync"
    DEVICE_DELETE = "device.delete"
    PROFILE_CREATE = "profile.create"
    PROFILE_UPDATE = "profile.update"
    PROFILE_DELETE = "profile.delete"
    UPLOAD_APPROVE = "upload.approve"


class SyncState(Choice):
    """Sync state of a device or profile (`device.sync_state`, `profile.sync_state`)."""

    SYNCED = "synced"
    PENDING = "pending"
    SYNCING = "syncing"
    ERROR = "error"


class DeviceResult(Choice):
    """What an operation did to one of its devices (its per-device results; not stored, read
    from the change and the device)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"


CHANGE_STATUSES = tuple(ChangeStatus)


class Change(db.Model):
    """The outbox: one change KME must learn about. The database, not Redis, is the record."""

    __tablename__ = "change"
    __table_args__ = (
        Index("ix_change_status_next_attempt_at", "status", "next_attempt_at"),
        # The Overview's changes-per-hour sparkline reads the last 24 hours only.
        Index("ix_change_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profile.id", ondelete="SET NULL"))
    device_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=ChangeStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    operation_id: Mapped[int | None] = mapped_column(
        ForeignKey("operation.id", ondelete="SET NULL"), index=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("admin_user.id", ondelete="SET NULL"))
    # Which worker holds a running change; next_attempt_at is then its lease expiry.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChangeAttempt(db.Model):
    """One attempt to send a change to KME and Samsung's answer: a device's history lists each
    push and each retry of the changes that carried it."""

    __tablename__ = "change_attempt"
    __table_args__ = (Index("ix_change_attempt_change", "change_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("change.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: "accepted", "retry" (a transient error; tried again later) or "failed" (for good).
    outcome: Mapped[str] = mapped_column(String(16))
    #: Samsung's error code (or the HTTP status) and message, when it refused.
    code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
