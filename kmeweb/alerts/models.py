from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow
from kmeweb.redact import MASK, mask_url

# Days before a token expires that a destination warns, unless set: shorter than a new
# profile's token life (profiles.services.TOKEN_DAYS_DEFAULT), see Admin › Alerts.
TOKEN_DAYS_ALERT_DEFAULT = 3


class AlertEvent(Choice):
    """What an alert is about (`alert_delivery.event`, and the events a destination takes)."""

    TOKEN_EXPIRING = "token_expiring", "Token expiring"
    TOKEN_EXPIRED = "token_expired", "Token expired"
    OPERATION_FAILED = "operation_failed", "Operation failed"
    INTEGRATION_ERROR = "integration_error", "Integration error"
    UPLOAD_WAITING = "upload_waiting", "Upload waiting for approval"
    BREAK_GLASS = "break_glass_sign_in", "Break-glass sign-in"
    TEST = "test", "Test alert"


#: Events every enabled destination receives, whatever it subscribed to: a break-glass account
#: signing in is something every watcher of the console must hear about.
ALWAYS_SENT = frozenset({AlertEvent.BREAK_GLASS.value})

#: The events a destination can subscribe to (every one but the test and those always sent),
#: with their labels on Admin › Alerts.
EVENT_LABELS: dict[str, str] = {
    event.value: event.label
    for event in AlertEvent
    if event is not AlertEvent.TEST and event.value not in ALWAYS_SENT
}


class DeliveryStatus(Choice):
    """Where one alert to one destination is (`alert_delivery.status`)."""

    PENDING = "pending"  # waiting for its (next) attempt
    SENDING = "sending"  # a worker holds it; next_attempt_at is then its lease expiry
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt failed


class AlertDestination(db.Model):
    """A webhook that receives alerts; the shared secret is Fernet-encrypted, write-only."""

    __tablename__ = "alert_destination"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret_enc: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_days: Mapped[int] = mapped_column(Integer, default=TOKEN_DAYS_ALERT_DEFAULT)
    upload_hours: Mapped[int] = mapped_column(Integer, default=24)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set when a delivery used up every attempt; cleared by the next successful one.
    failing: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_enc)

    @property
    def display_url(self) -> str:
        """The URL with its path masked: a Slack or Teams webhook's path is its credential.
        Userinfo never shows; the last 4 characters do, to tell two webhooks apart."""
        masked = mask_url(self.url)
        rest = self.url.split(urlsplit(self.url).netloc, 1)[-1]
        return masked + rest[-4:] if masked.endswith(MASK) and len(rest) > 8 else masked


class AlertDelivery(db.Model):
    """One alert for one destination. The unique (destination, event key) row is inserted
    before anything is sent: however many scheduler ticks and workers see the same event,
    only one row (and so one alert) exists for it."""

    __tablename__ = "alert_delivery"
    __table_args__ = (
        UniqueConstraint("destination_id", "event_key"),
        Index("ix_alert_delivery_status", "status"),
        Index("ix_alert_delivery_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("alert_destination.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(String(32))
    event_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
