from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow


class AuthMode(Choice):
    """Knox authentication scheme (`integration.auth_mode`)."""

    OAUTH = "oauth", "OAuth"
    LEGACY = "legacy", "Legacy"


class UploadStatus(Choice):
    """Approval state of a reseller upload (`upload.status`)."""

    PENDING = "pending"
    APPROVED = "approved"
    PARTIAL = "partial"


class PortalPolicy(Choice):
    """What a pull does with a device changed in the Samsung portal (`portal_policy`)."""

    ADOPT = "adopt", "Take Samsung's value (changes made in the portal come back to kmeweb)"
    OURS = "ours", "kmeweb is the source of truth: send kmeweb's value again"


class Integration(db.Model):
    """The one Knox integration: credentials, sync settings and sync health."""

    __tablename__ = "integration"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    auth_mode: Mapped[str] = mapped_column(String(16), default=AuthMode.OAUTH)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    base_url: Mapped[str] = mapped_column(String(500), default="")
    token_url: Mapped[str | None] = mapped_column(String(500))
    client_id: Mapped[str | None] = mapped_column(String(500))
    # OAuth client secret, or the legacy keys.json content; Fernet-encrypted.
    secret_enc: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    # Samsung's public key for encrypting per-device user names and passwords (PEM/base64 DER).
    encryption_public_key: Mapped[str | None] = mapped_column(Text)
    # Knox client knobs that Samsung's reference could not confirm (e.g. {"paths": {...}}).
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    sync_interval_s: Mapped[int] = mapped_column(Integer, default=900)
    # What a pull does with a device changed in the Samsung portal: "adopt" Samsung's value
    # (the default) or "ours" (kmeweb is the source of truth: send kmeweb's value again).
    portal_policy: Mapped[str] = mapped_column(
        String(16), default=PortalPolicy.ADOPT, server_default="adopt"
    )
    pull_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_pull_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_full_pull_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_push_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def get_integration(session: Session) -> Integration | None:
    """The one integration row, or None before the settings were first saved.

    Beside the table rather than in a service: the settings pages and the sync jobs both read
    it, and sync must not import the integration room's services.
    """
    return session.scalar(select(Integration).order_by(Integration.id).limit(1))


class Reseller(db.Model):
    """A reseller that uploads devices; what happens to its uploads is said by the routing
    rules (kmeweb.rules), which replaced its own auto-approve and default profile."""

    __tablename__ = "reseller"

    id: Mapped[int] = mapped_column(primary_key=True)
    kme_reseller_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")


class Upload(db.Model):
    """A reseller upload pulled from KME."""

    __tablename__ = "upload"

    id: Mapped[int] = mapped_column(primary_key=True)
    kme_upload_id: Mapped[str] = mapped_column(String(64), unique=True)
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("reseller.id"), index=True)
    order_number: Mapped[str | None] = mapped_column(String(100))
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    device_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=UploadStatus.PENDING)
