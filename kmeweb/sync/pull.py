"""Pull: bring what resellers and the Samsung portal changed in KME into kmeweb.

Order: profiles, then resellers and uploads, then devices changed since the
cursor (page by page, in bulk), then auto-approval. Conflict rule (design.md 5):
a device or profile with a pending local change keeps the local value, which the
push will send; otherwise the KME value wins and an audit event "changed in
Samsung portal" records the old and new values.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Approval, Device
from kmeweb.extensions import utcnow
from kmeweb.identifiers import is_meid, normalize_serial
from kmeweb.integration.models import Integration, Reseller, Upload, UploadStatus
from kmeweb.knox import KnoxClient
from kmeweb.knox import types as kt
from kmeweb.operations import services as operations
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sync.models import UNFINISHED, Change, ChangeKind, SyncState

PORTAL = "changed in Samsung portal"
COMMIT_EVERY_DEVICES = 10_000


def _is_pending_approval(status: str | None) -> bool:
    return "approval" in (status or "").lower() and "pending" in (status or "").lower()


def _upload_status(upload: kt.Upload) -> str:
    status = (upload.status or "").lower()
    if status == "pending":  # KME's word (kme-api.md 4), lower-cased
        if upload.pending_count is not None and upload.device_count:
            if 0 < upload.pending_count < upload.device_count:
                return UploadStatus.PARTIAL
        return UploadStatus.PENDING
    if status in ("approved", "complete", "completed"):
        return UploadStatus.APPROVED
    return status or UploadStatus.PENDING


class PullContext:
    """Lookups shared by every page of one pull, loaded once."""

    def __init__(self, session: Session, default_profile_id: int) -> None:
        self.default_profile_id = default_profile_id
        self.profile_by_kme: dict[str, int] = {}
        self.upload_by_kme: dict[str, int] = {}
        self.deleting: set[str] = set()
        # Only devices kmeweb knows without a KME id (e.g. imported from CSV) can match a KME
        # device by IMEI or serial; when there are none, those lookups are skipped.
        self.has_unlinked = False
        self.refresh(session)

    def refresh(self, session: Session) -> None:
        self.profile_by_kme = dict(
            session.execute(
                select(Profile.kme_profile_id, Profile.id).where(
                    Profile.kme_profile_id.is_not(None)
                )
            ).all()
        )
        self.upload_by_kme = dict(session.execute(select(Upload.kme_upload_id, Upload.id)).all())
        self.has_unlinked = (
            session.scalar(select(Device.id).where(Device.kme_device_id.is_(None)).limit(1))
            is not None
        )
        self.deleting = set()
        for payload in session.scalars(
            select(Change.payload).where(
                Change.kind == ChangeKind.DEVICE_DELETE, Change.status.in_(UNFINISHED)
            )
        ):
            self.deleting.update(payload.get("identifiers", []))


def pull_profiles(session: Session, client: KnoxClient, stats: Counter) -> None:
    """Apply KME profiles: portal edits to synced profiles, and profiles made in the portal."""
    from kmeweb.sync.mapping import apply_profile_changes, profile_changes_from_knox

    remote = client.list_profiles()
    local = {
        p.kme_profile_id: p
        for p in session.scalars(select(Profile).where(Profile.kme_profile_id.is_not(None)))
    }
    by_name = {p.name.lower(): p for p in session.scalars(select(Profile))}
    for rp in remote:
        if not rp.id:
            continue
        profile = local.get(rp.id)
        if profile is None:
            named = by_name.get((rp.name or "").lower())
            if named is not None and named.kme_profile_id is None and named.kind == ProfileKind.KME:
                named.kme_profile_id = rp.id  # our create landed but its id was not stored
                continue
            name = rp.name or f"KME profile {rp.id}"
            if name.lower() in by_name:
                name = f"{name} (KME {rp.id})"[:100]
            profile = Profile(
                name=name,
                description=(rp.description or "")[:200],
                kind=ProfileKind.KME,
                kme_profile_id=rp.id,
                token=secrets.token_urlsafe(32),
                config={},
                sync_state=SyncState.SYNCED,
                last_synced_at=utcnow(),
            )
            session.add(profile)
            session.flush()
            apply_profile_changes(profile, profile_changes_from_knox(profile, rp))
            by_name[name.lower()] = profile
            audit.record(
                session,
                "sync",
                "profile.created_in_portal",
                "profile",
                profile.id,
                {"name": name, "kme_profile_id": rp.id, "note": "created in Samsung portal"},
            )
            stats["profiles_created"] += 1
            continue
        if profile.sync_state in (SyncState.PENDING, SyncState.SYNCING):
            stats["profiles_kept_local"] += 1
            continue
        changes = profile_changes_from_knox(profile, rp)
        if changes:
            apply_profile_changes(profile, changes)
            profile.last_synced_at = utcnow()
            audit.record(
                session,
                "sync",
                "profile.changed_in_portal",
                "profile",
                profile.id,
                {"note": PORTAL, **{k: [str(o), str(n)] for k, (o, n) in changes.items()}},
            )
            stats["profiles_updated"] += 1
    seen = {rp.id for rp in remote if rp.id}
    for kme_id, profile in local.items():
        if (
            kme_id not in seen
            and profile.sync_state == SyncState.SYNCED
            and profile.kind == ProfileKind.KME
        ):
            profile.sync_state = SyncState.ERROR
            profile.sync_error = "Not found in KME: deleted in the Samsung portal?"
            profile.sync_error_at = utcnow()
            stats["profiles_missing"] += 1
    session.commit()


def pull_uploads(session: Session, client: KnoxClient, stats: Counter) -> None:
    """Create or update resellers and their uploads."""
    resellers = {r.kme_reseller_id: r for r in session.scalars(select(Reseller))}
    uploads = {u.kme_upload_id: u for u in session.scalars(select(Upload))}
    for ru in client.list_uploads():
        reseller = None
        key = ru.reseller_id or ru.reseller_name
        if key:
            reseller = resellers.get(key)
            if reseller is None:
                reseller = Reseller(kme_reseller_id=key, name=ru.reseller_name or key)
                session.add(reseller)
                session.flush()
                resellers[key] = reseller
                stats["resellers_created"] += 1
            elif ru.reseller_name and reseller.name != ru.reseller_name:
                reseller.name = ru.reseller_name
        upload = uploads.get(ru.upload_id)
        status = _upload_status(ru)
        if upload is None:
            upload = Upload(
                kme_upload_id=ru.upload_id,
                reseller_id=reseller.id if reseller else None,
                order_number=ru.order_no,
                uploaded_at=ru.upload_time,
                device_count=ru.device_count or len(ru.device_ids),
                status=status,
            )
            session.add(upload)
            uploads[ru.upload_id] = upload
            stats["uploads_created"] += 1
        else:
            upload.device_count = ru.device_count or upload.device_count
            if upload.status != status and upload.status == UploadStatus.PENDING:
                upload.status = status
    session.commit()


def _identity(d: kt.Device) -> tuple[str | None, str | None]:
    mei = d.imei or d.meid
    if mei is None and d.mei and is_meid(d.mei):
        mei = d.mei.upper()
    serial = normalize_serial(d.serial) if d.serial else None
    return mei, serial or None


def apply_device_page(
    session: Session, devices: Iterable[kt.Device], ctx: PullContext, stats: Counter
) -> None:
    """Insert new devices and apply portal changes to existing ones, in bulk (flushes; the
    caller commits)."""
    devices = [d for d in devices if d.id]
    if not devices:
        return
    table = Device.__table__
    cols = (
        table.c.id,
        table.c.kme_device_id,
        table.c.imei,
        table.c.serial,
        table.c.profile_id,
        table.c.approval,
        table.c.sync_state,
        table.c.upload_id,
        table.c.kme_status,
    )
    identities = {d.id: _identity(d) for d in devices}
    existing: dict[str, Any] = {}
    for row in session.execute(
        select(*cols).where(table.c.kme_device_id.in_([d.id for d in devices]))
    ):
        existing[row.kme_device_id] = row
    unmatched = [d for d in devices if d.id not in existing]
    by_mei: dict[str, Any] = {}
    by_serial: dict[str, Any] = {}
    if unmatched and ctx.has_unlinked:
        meis = [m for d in unmatched if (m := identities[d.id][0])]
        serials = [s for d in unmatched if (s := identities[d.id][1])]
        if meis:
            by_mei = {
                r.imei: r for r in session.execute(select(*cols).where(table.c.imei.in_(meis)))
            }
        if serials:
            by_serial = {
                r.serial: r
                for r in session.execute(select(*cols).where(table.c.serial.in_(serials)))
            }
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for d in devices:
        mei, serial = identities[d.id]
        if (
            d.id in ctx.deleting
            or (mei and mei in ctx.deleting)
            or (serial and serial in ctx.deleting)
        ):
            continue
        pending = _is_pending_approval(d.status)
        approval = Approval.PENDING if pending else Approval.APPROVED
        profile_id = (
            None if pending else ctx.profile_by_kme.get(d.profile_id or "", ctx.default_profile_id)
        )
        upload_id = ctx.upload_by_kme.get(d.upload_id or "")
        row = (
            existing.get(d.id)
            or (by_mei.get(mei) if mei else None)
            or (by_serial.get(serial) if serial else None)
        )
        if row is None:
            inserts.append(
                {
                    "imei": mei,
                    "serial": serial,
                    "model": d.model,
                    "upload_id": upload_id,
                    "approval": approval,
                    "profile_id": profile_id,
                    "kme_device_id": d.id,
                    "kme_status": d.status,
                    "attributes": {},
                    "sync_state": SyncState.SYNCED,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            continue
        if row.sync_state == SyncState.PENDING:
            stats["devices_kept_local"] += 1
            continue
        diff: dict[str, list[Any]] = {}
        if row.approval != approval:
            diff["approval"] = [row.approval, approval]
        if row.profile_id != profile_id:
            diff["profile_id"] = [row.profile_id, profile_id]
        if not diff and row.kme_device_id == d.id and row.kme_status == d.status:
            continue
        updates.append(
            {
                "did": row.id,
                "approval": approval,
                "profile_id": profile_id,
                "kme_device_id": d.id,
                "kme_status": d.status,
                "upload_id": row.upload_id or upload_id,
            }
        )
        if diff and row.kme_device_id is not None:
            events.append(
                {
                    "at": now,
                    "actor": "sync",
                    "action": "device.changed_in_portal",
                    "target_type": "device",
                    "target_id": str(row.id),
                    "details": {"note": PORTAL, "device": mei or serial or d.id, **diff},
                }
            )
            stats["devices_updated"] += 1
        else:
            stats["devices_linked"] += 1
    if inserts:
        session.execute(table.insert(), inserts)  # Core executemany: no ORM bookkeeping
        stats["devices_created"] += len(inserts)
    if updates:
        from sqlalchemy import bindparam

        session.execute(
            table.update()
            .where(table.c.id == bindparam("did"))
            .values(
                approval=bindparam("approval"),
                profile_id=bindparam("profile_id"),
                kme_device_id=bindparam("kme_device_id"),
                kme_status=bindparam("kme_status"),
                upload_id=bindparam("upload_id"),
                version=table.c.version + 1,
                updated_at=now,
            ),
            updates,
        )
    if events:
        session.execute(insert(AuditEvent), events)


def auto_approve(session: Session, stats: Counter) -> None:
    """Approve pending uploads of resellers whose uploads are auto-approved."""
    from kmeweb.integration.services import approve_upload

    rows = session.scalars(
        select(Upload)
        .join(Reseller, Upload.reseller_id == Reseller.id)
        .where(
            Reseller.auto_approve.is_(True),
            Upload.status.in_((UploadStatus.PENDING, UploadStatus.PARTIAL)),
        )
    ).all()
    for upload in rows:
        has_pending = session.scalar(
            select(Device.id)
            .where(Device.upload_id == upload.id, Device.approval == Approval.PENDING)
            .limit(1)
        )
        if has_pending is None:
            continue
        approve_upload(session, upload.id, "sync")
        session.commit()
        stats["uploads_auto_approved"] += 1


def run_pull(
    session: Session,
    client: KnoxClient,
    integration: Integration,
    operation_id: int | None = None,
    full: bool = False,
) -> dict[str, int]:
    """One pull; commits as it goes (page by page) and returns what it did.

    Raises Knox errors; what was committed before stays (the next pull continues).
    """
    from kmeweb.integration.services import ensure_default_profile

    started = utcnow()
    cursor = None if full else integration.pull_cursor
    default = ensure_default_profile(session)
    session.commit()
    stats: Counter = Counter()
    pull_profiles(session, client, stats)
    pull_uploads(session, client, stats)
    ctx = PullContext(session, default.id)
    first = True
    # Commit every few thousand devices or every second: progress stays visible and a
    # failure keeps what was written, without paying a commit (and a WAL checkpoint on
    # SQLite) for every page.
    uncommitted, last_commit = 0, time.monotonic()
    for page in client.iter_device_pages(changed_after=cursor):
        if first and operation_id is not None:
            from kmeweb.operations.models import Operation

            operation = session.get(Operation, operation_id)
            operation.total = page.total_count
            first = False
        apply_device_page(session, page.devices, ctx, stats)
        if operation_id is not None:
            operations.add_progress(session, operation_id, len(page.devices))
        uncommitted += len(page.devices)
        if uncommitted >= COMMIT_EVERY_DEVICES or time.monotonic() - last_commit >= 1.0:
            session.commit()
            uncommitted, last_commit = 0, time.monotonic()
    session.commit()
    auto_approve(session, stats)
    integration = session.get(Integration, integration.id)
    skew = float(current_app.config["PULL_CURSOR_SKEW_S"])
    integration.pull_cursor = started - timedelta(seconds=skew)
    integration.last_pull_at = utcnow()
    if full:
        integration.last_full_pull_at = integration.last_pull_at
    integration.last_error = None
    summary = {k: v for k, v in stats.items() if v}
    audit.record(
        session,
        "sync",
        "sync.full_pull" if full else "sync.pull",
        "integration",
        integration.id,
        summary,
    )
    session.commit()
    return summary
