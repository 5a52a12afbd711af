"""How long the history is kept: the retention in days and the legal hold.

The history is the audit log and the finished sync records (outbox changes and operations);
kmeweb.ops.retention purges what is older than the retention. No retention (the default)
keeps everything; the legal hold keeps everything whatever the retention says. Functions take
the session (and the acting admin), flush, never commit, and raise kmeweb.errors
ValidationError with the field it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent, HistoryRetention
from kmeweb.errors import ValidationError
from kmeweb.extensions import utcnow

ROW_ID = 1  # the only row
DAYS_MIN, DAYS_MAX = 30, 3650
#: The audit action of each purge run that deleted something.
PURGE_ACTION = "history.purge"


@dataclass(frozen=True)
class Retention:
    """The saved settings (defaults when none were saved)."""

    days: int | None = None
    legal_hold: bool = False
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def purges(self) -> bool:
        """True when something older than the retention is to be deleted."""
        return self.days is not None and not self.legal_hold

    def cutoff(self, now: datetime) -> datetime | None:
        """Rows older than this are purged; None when nothing is (no retention, legal hold)."""
        if self.days is None or self.legal_hold:
            return None
        return now - timedelta(days=self.days)


def get_retention(session: Session) -> Retention:
    """The retention settings; the defaults (keep everything, no hold) before the first save."""
    row = session.get(HistoryRetention, ROW_ID)
    if row is None:
        return Retention()
    return Retention(row.days, bool(row.legal_hold), row.updated_at, row.updated_by)


def parse_days(raw: Any) -> int | None:
    """The retention in days from what the admin typed: empty keeps everything. Raises
    ValidationError (field "days")."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    try:
        days = int(text)
    except ValueError:
        raise ValidationError(
            "Enter a whole number of days, or leave it empty to keep everything.", field="days"
        ) from None
    if not DAYS_MIN <= days <= DAYS_MAX:
        raise ValidationError(
            f"Keep the history for {DAYS_MIN} to {DAYS_MAX:,} days, "
            "or leave it empty to keep everything.",
            field="days",
        )
    return days


def save_retention(session: Session, data: Mapping[str, Any], actor: Any) -> Retention:
    """Save the retention (`days`: text or a number, empty for none) and the legal hold
    (`legal_hold`); audits "history.retention" with what changed (nothing when nothing did).
    Flushes. Raises ValidationError (field "days")."""
    days = parse_days(data.get("days"))
    legal_hold = bool(data.get("legal_hold"))
    row = session.get(HistoryRetention, ROW_ID)
    if row is None:
        row = HistoryRetention(id=ROW_ID, days=None, legal_hold=False)
        session.add(row)
    changed = {}
    if row.days != days:
        changed["retention_days"] = [row.days, days]
    if bool(row.legal_hold) != legal_hold:
        changed["legal_hold"] = [bool(row.legal_hold), legal_hold]
    if changed:
        row.days, row.legal_hold = days, legal_hold
        row.updated_at = utcnow()
        row.updated_by = actor if isinstance(actor, str) else actor.email
        audit.record(session, actor, "history.retention", details={"changed": changed})
    session.flush()
    return get_retention(session)


def last_purge(session: Session) -> AuditEvent | None:
    """The audit event of the latest purge run that deleted something, if any."""
    return session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == PURGE_ACTION)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
