from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.extensions import UTCDateTime, db, utcnow


class AuditEvent(db.Model):
    """Append-only record of who changed what: never updated, and deleted only by the
    history purge once older than the retention (kmeweb.ops.retention)."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_at", "at"),
        Index("ix_audit_event_action", "action"),
        # A device's (or any target's) own events: its history page.
        Index("ix_audit_event_target", "target_type", "target_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))
    actor_id: Mapped[int | None] = mapped_column()
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip: Mapped[str | None] = mapped_column(String(45))


class HistoryRetention(db.Model):
    """How long the history (audit events, finished outbox changes and operations) is kept:
    one row, written by the first save (no row: keep everything, no legal hold)."""

    __tablename__ = "history_retention"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Days the history is kept; None keeps everything.
    days: Mapped[int | None] = mapped_column(Integer)
    #: On: nothing is purged, whatever `days` says.
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(String(254))
