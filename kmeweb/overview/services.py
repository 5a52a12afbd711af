"""The Overview's numbers, each from a grouped query over indexed columns.

The funnel counts devices per profile (one index-only pass over
`ix_device_profile_registered`) and maps the profiles' kinds in Python: pending devices have no
profile yet, approved ones sit in the Samsung KME Default Profile until an admin moves them to
a KME profile, and a device is registered once our enrollment endpoint has seen it.
Self-maintained profiles hold devices that never came from a reseller: they are left out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kmeweb.alerts.services import failing_destinations
from kmeweb.devices.models import Device, unsynced_device_ids
from kmeweb.extensions import utcnow
from kmeweb.integration.models import Reseller, Upload, UploadStatus
from kmeweb.integration.uploads import pending_counts
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.outbox.models import Change, SyncState
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import token_needed

TOKEN_WARNING_DAYS = 3
LIST_LIMIT = 5
STAGES = (
    ("uploaded", "Uploaded by resellers"),
    ("approved", "Approved"),
    ("in_profile", "In a KME profile"),
    ("registered", "Registered"),
)


@dataclass
class Stage:
    key: str
    label: str
    count: int
    percent: float  # of the first stage

    @property
    def percent_text(self) -> str:
        if self.percent == 0 or self.percent >= 10 or self.percent == int(self.percent):
            return f"{self.percent:.0f}%"
        return f"{self.percent:.1f}%"


FUNNEL_CACHE_KEY = "kmeweb:overview:funnel:{reseller}:{profile}"


def cached_funnel(
    session: Session,
    redis: Any,
    ttl_s: float,
    reseller_id: int | None = None,
    profile_id: int | None = None,
    refresh: bool = False,
) -> tuple[list[Stage], datetime]:
    """The funnel and when it was counted. Counting a million devices takes a few hundred
    milliseconds even from the index alone, so the counts are kept in Redis for `ttl_s`
    seconds (the page says when they were counted); without Redis or with `ttl_s` 0 they are
    counted on every request. `refresh` counts again and stores the result for twice `ttl_s`:
    the scheduler does so every `ttl_s` for the unfiltered funnel, so the page never waits."""
    key = FUNNEL_CACHE_KEY.format(reseller=reseller_id or "all", profile=profile_id or "all")
    if redis is not None and ttl_s > 0 and not refresh:
        try:
            raw = redis.get(key)
        except Exception:  # noqa: BLE001 - Redis gone: count instead
            raw = None
        if raw is not None:
            data = json.loads(raw)
            stages = [Stage(**stage) for stage in data["stages"]]
            return stages, datetime.fromisoformat(data["at"])
    at = utcnow()
    stages = funnel(session, reseller_id, profile_id)
    if redis is not None and ttl_s > 0:
        value = json.dumps({"at": at.isoformat(), "stages": [asdict(st) for st in stages]})
        try:
            redis.set(key, value, px=int(ttl_s * (2000 if refresh else 1000)))
        except Exception:  # noqa: BLE001 - the page works without the cache
            pass
    return stages, at


def funnel(
    session: Session, reseller_id: int | None = None, profile_id: int | None = None
) -> list[Stage]:
    """Devices uploaded → approved → in a KME profile → registered, optionally of one
    reseller's uploads and/or one profile."""
    stmt = select(Device.profile_id, func.count(), func.count(Device.registered_at)).group_by(
        Device.profile_id
    )
    if reseller_id is not None:
        uploads = select(Upload.id).where(Upload.reseller_id == reseller_id)
        stmt = stmt.where(Device.upload_id.in_(uploads))
    if profile_id is not None:
        stmt = stmt.where(Device.profile_id == profile_id)
    rows = session.execute(stmt).all()
    ids = [pid for pid, _n, _r in rows if pid is not None]
    kinds = dict(session.execute(select(Profile.id, Profile.kind).where(Profile.id.in_(ids))).all())
    counts = dict.fromkeys((key for key, _ in STAGES), 0)
    for pid, total, registered in rows:
        kind = kinds.get(pid) if pid is not None else None
        if kind == ProfileKind.SELF_MAINTAINED:
            continue
        counts["uploaded"] += total
        if pid is None:
            continue  # waiting for approval
        counts["approved"] += total
        if kind == ProfileKind.KME:
            counts["in_profile"] += total
            counts["registered"] += registered
    first = counts["uploaded"]
    return [
        Stage(key, label, counts[key], (100.0 * counts[key] / first) if first else 0.0)
        for key, label in STAGES
    ]


def filter_choices(session: Session) -> dict[str, list[tuple[int, str]]]:
    """Resellers and KME profiles (the Default Profile first) for the funnel's filters."""
    resellers = session.execute(
        select(Reseller.id, Reseller.name).order_by(func.lower(Reseller.name), Reseller.id)
    ).all()
    profiles = session.execute(
        select(Profile.id, Profile.name)
        .where(Profile.kind.in_((ProfileKind.KME_DEFAULT, ProfileKind.KME)))
        .order_by(Profile.kind != ProfileKind.KME_DEFAULT, func.lower(Profile.name))
    ).all()
    return {
        "resellers": [(rid, name or f"Reseller {rid}") for rid, name in resellers],
        "profiles": [(pid, name) for pid, name in profiles],
    }


@dataclass
class Attention:
    """What needs an admin now; each list holds at most LIST_LIMIT rows plus its total."""

    uploads: list[dict[str, Any]] = field(default_factory=list)
    uploads_total: int = 0
    tokens: list[dict[str, Any]] = field(default_factory=list)
    tokens_total: int = 0
    operations: list[Operation] = field(default_factory=list)
    operations_total: int = 0
    push_errors: list[dict[str, Any]] = field(default_factory=list)
    push_errors_total: int = 0
    integration_error: str | None = None
    integration_error_at: datetime | None = None
    failing_destinations: list[Any] = field(default_factory=list)
    # Devices changed in the Samsung portal and not settled, and devices the full pull no
    # longer found in KME: per profile, like push_errors.
    portal_changes: list[dict[str, Any]] = field(default_factory=list)
    portal_changes_total: int = 0
    not_in_kme: list[dict[str, Any]] = field(default_factory=list)
    not_in_kme_total: int = 0

    @property
    def empty(self) -> bool:
        return not (
            self.uploads_total
            or self.tokens_total
            or self.operations_total
            or self.push_errors_total
            or self.integration_error
            or self.failing_destinations
            or self.portal_changes_total
            or self.not_in_kme_total
        )


def needs_attention(
    session: Session,
    now: datetime,
    integration_error: str | None = None,
    integration_error_at: datetime | None = None,
) -> Attention:
    """Uploads waiting for approval, tokens that devices still need expiring within 14 days
    or expired (profiles.services.token_needed), failed
    operations, devices whose push failed, the integration's last error (given: the page
    has it from the sync status), failing alert destinations."""
    out = Attention()
    waiting = (UploadStatus.PENDING, UploadStatus.PARTIAL)
    soon = now + timedelta(days=TOKEN_WARNING_DAYS)
    token_where = (
        token_needed(),
        Profile.token_expires_at.is_not(None),
        Profile.token_expires_at <= soon,
    )
    # The three totals in one round trip; the lists are read only where there is something.
    totals = session.execute(
        select(
            select(func.count()).select_from(Upload).where(Upload.status.in_(waiting))
            .scalar_subquery(),
            select(func.count()).select_from(Profile).where(*token_where).scalar_subquery(),
            select(func.count()).select_from(Operation)
            .where(Operation.status == OperationStatus.FAILED).scalar_subquery(),
        )
    ).one()  # fmt: skip
    out.uploads_total, out.tokens_total, out.operations_total = totals
    if out.uploads_total:
        rows = session.execute(
            select(Upload.id, Upload.kme_upload_id, Upload.uploaded_at, Reseller.name)
            .join(Reseller, Reseller.id == Upload.reseller_id, isouter=True)
            .where(Upload.status.in_(waiting))
            .order_by(Upload.uploaded_at.is_(None), Upload.uploaded_at, Upload.id)
            .limit(LIST_LIMIT)
        ).all()
        pending = pending_counts(session, [r.id for r in rows])
        out.uploads = [
            {
                "id": r.id,
                "kme_upload_id": r.kme_upload_id,
                "uploaded_at": r.uploaded_at,
                "reseller": r.name,
                "pending": pending.get(r.id, 0),
            }
            for r in rows
        ]
    if out.tokens_total:
        for pid, name, expires in session.execute(
            select(Profile.id, Profile.name, Profile.token_expires_at)
            .where(*token_where)
            .order_by(Profile.token_expires_at)
            .limit(LIST_LIMIT)
        ):
            days = (expires - now).total_seconds() / 86400
            out.tokens.append(
                {
                    "id": pid,
                    "name": name,
                    "expires_at": expires,
                    "expired": expires <= now,
                    "days": max(0, int(days + 0.999)),
                }
            )
    if out.operations_total:
        out.operations = list(
            session.scalars(
                select(Operation)
                .where(Operation.status == OperationStatus.FAILED)
                .order_by(Operation.id.desc())
                .limit(LIST_LIMIT)
            )
        )
    out.push_errors_total, out.push_errors = _devices_by_profile(
        session, Device.id.in_(unsynced_device_ids(SyncState.ERROR))
    )
    # The partial indexes ix_device_portal_changed / ix_device_kme_missing hold only these.
    out.portal_changes_total, out.portal_changes = _devices_by_profile(
        session, Device.portal_changed_at.is_not(None)
    )
    out.not_in_kme_total, out.not_in_kme = _devices_by_profile(
        session, Device.kme_missing_at.is_not(None)
    )
    out.integration_error, out.integration_error_at = integration_error, integration_error_at
    out.failing_destinations = failing_destinations(session)
    return out


def _devices_by_profile(session: Session, *where: Any) -> tuple[int, list[dict[str, Any]]]:
    """How many devices match `where`, and the LIST_LIMIT profiles holding most of them
    ({"profile_id", "name", "count"})."""
    counts = session.execute(
        select(Device.profile_id, func.count())
        .where(*where)
        .group_by(Device.profile_id)
        .order_by(func.count().desc())
    ).all()
    if not counts:
        return 0, []
    shown = counts[:LIST_LIMIT]
    names = dict(
        session.execute(
            select(Profile.id, Profile.name).where(
                Profile.id.in_([pid for pid, _n in shown if pid is not None])
            )
        ).all()
    )
    rows = [
        {"profile_id": pid, "name": names.get(pid, "No profile"), "count": n} for pid, n in shown
    ]
    return sum(n for _pid, n in counts), rows


def changes_per_hour(session: Session, now: datetime, hours: int = 24) -> list[int]:
    """Outbox changes created in each of the last `hours` hours, oldest first."""
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        bucket = func.date_trunc("hour", Change.created_at)
    else:
        bucket = func.strftime("%Y-%m-%d %H:00:00", Change.created_at)
    rows = session.execute(
        select(bucket, func.count()).where(Change.created_at >= start).group_by(bucket)
    ).all()
    counts = [0] * hours
    for when, n in rows:
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        when = when.replace(tzinfo=start.tzinfo)
        index = int((when - start).total_seconds() // 3600)
        if 0 <= index < hours:
            counts[index] += n
    return counts


def sparkline(counts: list[int], width: int = 240, height: int = 40) -> dict[str, Any]:
    """SVG geometry of a sparkline: the polyline's points and one bar per hour."""
    peak = max(counts) if counts else 0
    step = width / max(1, len(counts))
    bars = []
    for i, n in enumerate(counts):
        h = 0 if not peak else max(1.0, (height - 2) * n / peak) if n else 0
        bars.append({"x": round(i * step + 1, 1), "w": round(step - 2, 1), "h": round(h, 1),
                     "y": round(height - h, 1), "n": n})  # fmt: skip
    return {"bars": bars, "peak": peak, "total": sum(counts), "width": width, "height": height}
