from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow
from kmeweb.outbox.models import SyncState


class Approval(Choice):
    """Whether the customer approved a device's upload (`device.approval`)."""

    PENDING = "pending"
    APPROVED = "approved"


class Registration(Choice):
    """Whether a device has enrolled (`device.registered_at` set or not): the device table's
    Registration filter."""

    REGISTERED = "registered", "Registered"
    PENDING = "pending", "Not registered"


class Device(db.Model):
    """A Samsung device known to KME; profile_id is null only while pending approval."""

    __tablename__ = "device"
    __table_args__ = (
        Index("ix_device_upload_id", "upload_id"),
        # Pending devices per upload (the Uploads tab) from the index alone.
        Index("ix_device_approval_upload_id", "approval", "upload_id"),
        Index("ix_device_sync_state", "sync_state"),
        # A profile's devices: by IMEI (the profile page), counted (the lists).
        Index("ix_device_profile_imei", "profile_id", "imei"),
        Index("ix_device_profile_registered", "profile_id", "registered_at"),
        # A profile's devices by id: the API's device list pages a profile by keyset on id.
        Index("ix_device_profile_keyset", "profile_id", "id"),
        # A user's devices (the API's search by user; SET NULL when a user is deleted).
        Index("ix_device_end_user_id", "end_user_id"),
        # A profile's devices placed by one rule (the device table's "Placed by rule" filter).
        Index("ix_device_profile_rule", "profile_id", "rule_id"),
        # Only the devices KME still has to learn about: sync status reads these, not all.
        Index(
            "ix_device_unsynced",
            "profile_id",
            "sync_state",
            sqlite_where=text("sync_state != 'synced'"),
            postgresql_where=text("sync_state <> 'synced'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    imei: Mapped[str | None] = mapped_column(String(16), unique=True)
    serial: Mapped[str | None] = mapped_column(String(16), unique=True)
    model: Mapped[str | None] = mapped_column(String(64))
    upload_id: Mapped[int | None] = mapped_column(ForeignKey("upload.id", ondelete="SET NULL"))
    approval: Mapped[str] = mapped_column(String(16), default=Approval.PENDING)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profile.id"))
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("end_user.id", ondelete="SET NULL"))
    # The routing rule (and its version) that placed the device, and why it is not where that
    # rule says when it could not be followed (kmeweb.rules).
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("routing_rule.id", ondelete="SET NULL"))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    rule_note: Mapped[str | None] = mapped_column(String(200))
    # When the routing rules first saw the device (the pull routes each new device once; later
    # rule changes reach it only through Apply rules to existing devices or an approval).
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enrollment_password_enc: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # First successful enrollment (POST /enroll) and the agent version it last enrolled with.
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    kme_device_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    kme_status: Mapped[str | None] = mapped_column(String(32))
    sync_state: Mapped[str] = mapped_column(String(16), default=SyncState.SYNCED)
    sync_error: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}

    @property
    def identifier(self) -> str:
        return self.imei or self.serial or ""
