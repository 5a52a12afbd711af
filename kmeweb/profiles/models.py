from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb import crypto
from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow
from kmeweb.outbox.models import SyncState


class ProfileKind(Choice):
    """What a profile is (`profile.kind`)."""

    KME_DEFAULT = "kme_default", "Samsung KME Default"
    KME = "kme", "Samsung Knox Mobile Enrollment"
    SELF_MAINTAINED = "self_maintained", "Self-Maintained"


KINDS = tuple(ProfileKind)
SYNC_STATES = tuple(SyncState)


class Profile(db.Model):
    """A bulk enrollment profile; exactly one kme_default row while active."""

    __tablename__ = "profile"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(20), default=ProfileKind.KME)
    kme_profile_id: Mapped[str | None] = mapped_column(String(64), index=True)
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("end_user.id", ondelete="SET NULL"))
    token: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    without_token: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Secret configuration values (the Wi-Fi password), Fernet-encrypted JSON; never in config.
    secrets_enc: Mapped[str | None] = mapped_column(Text)
    sync_state: Mapped[str] = mapped_column(String(16), default=SyncState.SYNCED)
    sync_error: Mapped[str | None] = mapped_column(Text)
    sync_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Kept counts (kmeweb.profiles.counts): written by every service that adds, moves,
    # registers or deletes devices, in its transaction; recounted and repaired by the sweeper.
    device_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    registered_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}

    @property
    def is_default(self) -> bool:
        """The Samsung KME Default Profile: holds every unassigned device."""
        return self.kind == ProfileKind.KME_DEFAULT

    @property
    def is_kme(self) -> bool:
        """A custom KME profile (KME knows it; devices move to it)."""
        return self.kind == ProfileKind.KME

    @property
    def is_self_maintained(self) -> bool:
        """A Self-Maintained profile (local only; devices come from a CSV import)."""
        return self.kind == ProfileKind.SELF_MAINTAINED

    def secrets(self) -> dict[str, str]:
        """The decrypted secret configuration values ({"wifi_password": ...}), or {}."""
        if not self.secrets_enc:
            return {}
        value = json.loads(crypto.decrypt(self.secrets_enc) or "{}")
        return value if isinstance(value, dict) else {}
