"""Pull: bring what resellers and the Samsung portal changed in KME into kmeweb.

Order: profiles, then resellers and uploads, then devices changed since the
cursor (page by page, in bulk), then the uploads hook (kmeweb.sync.hooks: auto-approval,
supplied by the integration room). Conflict rule (design.md 5):
a device or profile with a pending local change keeps the local value, which the
push will send; otherwise the KME value wins and an audit event "changed in
Samsung portal" records the old and new values.

Devices changed in the Samsung portal (issue 24). Each device records what KME held when a
pull last read it (`kme_seen_*`). A linked device without a pending local change whose
approval, profile or user (when KME reports one and kmeweb knows the device's user) differs
from kmeweb's, while KME's values also differ from what the pull saw last time, was changed
in the portal: it is flagged (`portal_changed_at`, kmeweb's values before in
`portal_previous`, the first change's kept) with a device_event and an audit event. The
integration's portal policy says what happens to kmeweb's values: ADOPT takes Samsung's (the
default); OURS keeps kmeweb's and pushes them again (device.resync changes), so one push later
KME holds kmeweb's values and the next pull sees nothing new. KME cannot undo an approval: a
device approved in the portal is adopted under either policy. When KME still holds what the
pull saw last time, a difference is kmeweb's own change that did not reach KME (its push
failed): kmeweb keeps its value and the device its sync error. The full pull flags linked
devices it did not find (`kme_missing_at`, a device_event once), never deletes them; a device
seen again is cleared. kmeweb.devices.portal settles the flags.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from kmeweb import gcpause
from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import (
    JOINED_SYNC_STATE,
    Approval,
    Device,
    DeviceEvent,
    DeviceEventKind,
    DeviceSync,
)
from kmeweb.directory.models import EndUser
from kmeweb.extensions import utcnow
from kmeweb.identifiers import is_meid, normalize_serial
from kmeweb.integration.models import Integration, PortalPolicy, Reseller, Upload, UploadStatus
from kmeweb.knox import KnoxClient
from kmeweb.knox import types as kt
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import UNFINISHED, Change, ChangeKind, SyncState
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import ensure_default_profile
from kmeweb.sqlutil import chunks, id_filters, upsert
from kmeweb.sync import hooks
from kmeweb.sync.mapping import apply_profile_changes, profile_changes_from_knox

PORTAL = "changed in Samsung portal"
COMMIT_EVERY_DEVICES = 10_000


def _is_pending_approval(status: str | None) -> bool:
    return "approval" in (status or "").lower() and "pending" in (status or "").lower()


# KME's words for an upload's state (kme-api.md 4), lower-cased, and ours.
KME_UPLOAD_STATUSES = {
    "pending": UploadStatus.PENDING,
    "approved": UploadStatus.APPROVED,
    "complete": UploadStatus.APPROVED,
    "completed": UploadStatus.APPROVED,
}


def _upload_status(upload: kt.Upload) -> str:
    kme_status = (upload.status or "").lower()
    status = KME_UPLOAD_STATUSES.get(kme_status)
    if status is UploadStatus.PENDING:
        if upload.pending_count is not None and upload.device_count:
            if 0 < upload.pending_count < upload.device_count:
                return UploadStatus.PARTIAL
    return status or kme_status or UploadStatus.PENDING


class PullContext:
    """Lookups shared by every page of one pull, loaded once."""

    def __init__(
        self,
        session: Session,
        default_profile_id: int,
        policy: str = PortalPolicy.ADOPT,
        full: bool = False,
    ) -> None:
        self.default_profile_id = default_profile_id
        self.policy = policy
        # The full pull keeps the ids of the devices it found: the others are not in KME.
        self.seen: set[int] | None = set() if full else None
        self.profile_names: dict[int, str] = {}
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
        self.profile_names = dict(session.execute(select(Profile.id, Profile.name)).all())
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


_DEVICE = Device.__table__
_SYNC = DeviceSync.__table__
# What the pull compares (and links by) for a device kmeweb already has (read with _known_rows).
_SEEN_COLUMNS = (
    "device_id",
    "kme_seen_approval",
    "kme_seen_profile_id",
    "kme_seen_user",
    "kme_seen_at",
)
_ROW_COLUMNS = (
    _DEVICE.c.id,
    _DEVICE.c.kme_device_id,
    _DEVICE.c.imei,
    _DEVICE.c.serial,
    _DEVICE.c.profile_id,
    _DEVICE.c.approval,
    JOINED_SYNC_STATE,
    _DEVICE.c.upload_id,
    _DEVICE.c.kme_status,
    _DEVICE.c.end_user_id,
    _SYNC.c.kme_seen_approval,
    _SYNC.c.kme_seen_profile_id,
    _SYNC.c.kme_seen_user,
    _SYNC.c.kme_seen_at,
    _DEVICE.c.portal_changed_at,
    _DEVICE.c.portal_previous,
    _DEVICE.c.kme_missing_at,
)


def _known_rows(where: Any) -> Any:
    return select(*_ROW_COLUMNS).select_from(_DEVICE.outerjoin(_SYNC)).where(where)


@dataclass
class _KnownRows:
    """The rows kmeweb already has for one page of KME devices: by KME id, and by IMEI/MEID
    or serial for devices kmeweb knows without a KME id."""

    by_kme_id: dict[str, Any] = field(default_factory=dict)
    by_mei: dict[str, Any] = field(default_factory=dict)
    by_serial: dict[str, Any] = field(default_factory=dict)
    # {end user id: username} of the rows whose KME record names a user, and
    # {lower-cased username: end user id} of the names KME reports.
    usernames: dict[int, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    def match(self, kme_device_id: str, mei: str | None, serial: str | None) -> Any:
        return (
            self.by_kme_id.get(kme_device_id)
            or (self.by_mei.get(mei) if mei else None)
            or (self.by_serial.get(serial) if serial else None)
        )


@dataclass(frozen=True)
class _Incoming:
    """One KME device as the pull would store it."""

    device: kt.Device
    mei: str | None
    serial: str | None
    approval: str
    profile_id: int | None
    upload_id: int | None


@dataclass
class _PageWrites:
    """What one page changes: device rows to insert and to update (kmeweb's values, version
    bumped), what KME holds of devices whose values stay (`seen`, no version bump), portal
    change flags, audit events and device events to add, devices to push again."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    insert_users: list[str | None] = field(default_factory=list)  # KME's user of each insert
    updates: list[dict[str, Any]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    device_events: list[dict[str, Any]] = field(default_factory=list)
    resync: list[int] = field(default_factory=list)
    # {device id: new profile id} of the updates that change a device's profile (kept counts)
    moves: dict[int, int | None] = field(default_factory=dict)

    def update(self, row: Any, params: dict[str, Any]) -> None:
        self.updates.append(params)
        if params["profile_id"] != row.profile_id:
            self.moves[row.id] = params["profile_id"]


def apply_device_page(
    session: Session, devices: Iterable[kt.Device], ctx: PullContext, stats: Counter
) -> None:
    """Insert new devices and apply portal changes to existing ones, in bulk (flushes; the
    caller commits)."""
    devices = [d for d in devices if d.id]
    if not devices:
        return
    identities = {d.id: _identity(d) for d in devices}
    known = _read_known_rows(session, devices, identities, ctx)
    now = utcnow()
    writes = _PageWrites()
    for d in devices:
        mei, serial = identities[d.id]
        if (
            d.id in ctx.deleting
            or (mei and mei in ctx.deleting)
            or (serial and serial in ctx.deleting)
        ):
            continue
        incoming = _incoming(d, mei, serial, ctx)
        row = known.match(d.id, mei, serial)
        if row is None:
            writes.inserts.append(_new_device_row(incoming, now))
            writes.insert_users.append(d.user_name)
        else:
            if ctx.seen is not None:
                ctx.seen.add(row.id)
            _plan_update(writes, row, incoming, known, ctx, now, stats)
    _write_page(session, writes, now, stats)


def _read_known_rows(
    session: Session,
    devices: list[kt.Device],
    identities: dict[str, tuple[str | None, str | None]],
    ctx: PullContext,
) -> _KnownRows:
    """One query by KME id; by IMEI/MEID and serial only for the devices it did not find, and
    only while kmeweb has devices without a KME id."""
    known = _KnownRows()
    for row in session.execute(_known_rows(_DEVICE.c.kme_device_id.in_([d.id for d in devices]))):
        known.by_kme_id[row.kme_device_id] = row
    unmatched = [d for d in devices if d.id not in known.by_kme_id]
    if not unmatched or not ctx.has_unlinked:
        _read_users(session, devices, known)
        return known
    meis = [m for d in unmatched if (m := identities[d.id][0])]
    serials = [s for d in unmatched if (s := identities[d.id][1])]
    if meis:
        rows = session.execute(_known_rows(_DEVICE.c.imei.in_(meis)))
        known.by_mei = {r.imei: r for r in rows}
    if serials:
        rows = session.execute(_known_rows(_DEVICE.c.serial.in_(serials)))
        known.by_serial = {r.serial: r for r in rows}
    _read_users(session, devices, known)
    return known


def _read_users(session: Session, devices: list[kt.Device], known: _KnownRows) -> None:
    """The usernames the page compares: only for devices whose KME record names a user (most
    name none, and then nothing is read)."""
    names = {d.user_name.lower() for d in devices if d.user_name}
    if not names:
        return
    user_ids = {
        row.end_user_id
        for row in (*known.by_kme_id.values(), *known.by_mei.values(), *known.by_serial.values())
        if row.end_user_id is not None
    }
    for chunk in chunks(sorted(user_ids), 900):
        rows = session.execute(select(EndUser.id, EndUser.username).where(EndUser.id.in_(chunk)))
        known.usernames.update(rows.all())
    for chunk in chunks(sorted(names), 900):
        rows = session.execute(
            select(func.lower(EndUser.username), EndUser.id).where(
                func.lower(EndUser.username).in_(chunk)
            )
        )
        known.user_ids.update(rows.all())


def _incoming(d: kt.Device, mei: str | None, serial: str | None, ctx: PullContext) -> _Incoming:
    """Approval, profile and upload of a KME device in kmeweb's terms: an approved device in a
    profile kmeweb does not know lands in the Default Profile."""
    pending = _is_pending_approval(d.status)
    return _Incoming(
        device=d,
        mei=mei,
        serial=serial,
        approval=Approval.PENDING if pending else Approval.APPROVED,
        profile_id=(
            None if pending else ctx.profile_by_kme.get(d.profile_id or "", ctx.default_profile_id)
        ),
        upload_id=ctx.upload_by_kme.get(d.upload_id or ""),
    )


def _new_device_row(incoming: _Incoming, now: datetime) -> dict[str, Any]:
    d = incoming.device
    return {
        "imei": incoming.mei,
        "serial": incoming.serial,
        "model": d.model,
        "upload_id": incoming.upload_id,
        "approval": incoming.approval,
        "profile_id": incoming.profile_id,
        "kme_device_id": d.id,
        "kme_status": d.status,
        "attributes": {},
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


def _plan_update(
    writes: _PageWrites,
    row: Any,
    incoming: _Incoming,
    known: _KnownRows,
    ctx: PullContext,
    now: datetime,
    stats: Counter,
) -> None:
    """Link or update a device kmeweb has, unless a local change is pending (it keeps the local
    value); a change made in the Samsung portal is flagged and follows the portal policy (see
    the module docstring)."""
    d = incoming.device
    if row.sync_state == SyncState.PENDING:
        stats["devices_kept_local"] += 1
        return
    diff: dict[str, list[Any]] = {}
    if row.approval != incoming.approval:
        diff["approval"] = [row.approval, incoming.approval]
    if row.profile_id != incoming.profile_id:
        diff["profile_id"] = [row.profile_id, incoming.profile_id]
    ours_user = known.usernames.get(row.end_user_id) if d.user_name else None
    if ours_user is not None and ours_user.lower() != d.user_name.lower():
        diff["user"] = [ours_user, d.user_name]
    seen = {
        "did": row.id,
        "seen_approval": incoming.approval,
        "seen_profile_id": incoming.profile_id,
        "seen_user": d.user_name,
        "kme_status": d.status,
    }
    seen_changed = row.kme_seen_at is None or (
        row.kme_seen_approval,
        row.kme_seen_profile_id,
        row.kme_seen_user,
    ) != (incoming.approval, incoming.profile_id, d.user_name)
    linked = row.kme_device_id is not None
    if diff and linked and not seen_changed:
        # KME holds what it held last time: kmeweb's own change did not reach it (its push
        # failed); kmeweb keeps its value and the device its sync error.
        stats["devices_kept_unsent"] += 1
        diff = {}
    if not diff:
        if not linked or row.kme_device_id != d.id:
            writes.update(row, _update_row(row, incoming, row.approval, row.profile_id, seen))
            stats["devices_linked"] += 1
        elif seen_changed or row.kme_status != d.status or row.kme_missing_at is not None:
            writes.seen.append(seen)
        return
    if not linked:  # linked now by IMEI or serial: KME's values, no portal change
        writes.update(row, _update_row(row, incoming, incoming.approval, incoming.profile_id, seen))
        stats["devices_linked"] += 1
        return
    # KME cannot take an approval back: a device approved in the portal keeps it either way.
    approved_there = diff.get("approval") == [Approval.PENDING, Approval.APPROVED]
    ours = ctx.policy == PortalPolicy.OURS and not approved_there
    if ours:
        writes.seen.append(seen)
        writes.resync.append(row.id)
        stats["devices_sent_again"] += 1
    else:
        update_row = _update_row(row, incoming, incoming.approval, incoming.profile_id, seen)
        if "user" in diff:
            update_row["end_user_id"] = known.user_ids.get(d.user_name.lower(), row.end_user_id)
        writes.update(row, update_row)
        stats["devices_updated"] += 1
    _flag(writes, row, diff, ours, incoming, ctx, now)
    stats["devices_changed_in_portal"] += 1


def _update_row(
    row: Any, incoming: _Incoming, approval: str, profile_id: int | None, seen: dict[str, Any]
) -> dict[str, Any]:
    d = incoming.device
    return {
        **seen,
        "approval": approval,
        "profile_id": profile_id,
        "end_user_id": row.end_user_id,
        "kme_device_id": d.id,
        "upload_id": row.upload_id or incoming.upload_id,
    }


def _flag(
    writes: _PageWrites,
    row: Any,
    diff: dict[str, list[Any]],
    ours: bool,
    incoming: _Incoming,
    ctx: PullContext,
    now: datetime,
) -> None:
    """Flag a portal change: the time, kmeweb's values before the first change (kept when the
    device was flagged already), a device event (profile names, not ids) and an audit event."""
    previous = row.portal_previous if row.portal_changed_at is not None else None
    if not previous:
        previous = {"approval": row.approval, "profile_id": row.profile_id}
        if "user" in diff:
            previous["user"] = diff["user"][0]
    writes.flags.append({"did": row.id, "previous": previous})
    names = ctx.profile_names
    details: dict[str, Any] = {
        key: [names.get(old), names.get(new)] if key == "profile_id" else [old, new]
        for key, (old, new) in diff.items()
    }
    if "profile_id" in details:
        details["profile"] = details.pop("profile_id")
    details["kept"] = "kmeweb" if ours else "samsung"
    writes.device_events.append(
        {
            "device_id": row.id,
            "at": now,
            "kind": DeviceEventKind.PORTAL_CHANGE,
            "actor": "sync",
            "details": details,
        }
    )
    d = incoming.device
    note = f"{PORTAL}; kmeweb's value sent again" if ours else PORTAL
    writes.events.append(
        {
            "at": now,
            "actor": "sync",
            "action": "device.changed_in_portal",
            "target_type": "device",
            "target_id": str(row.id),
            "details": {"note": note, "device": incoming.mei or incoming.serial or d.id, **diff},
        }
    )


def _write_page(session: Session, writes: _PageWrites, now: datetime, stats: Counter) -> None:
    """Core executemany for each kind of write: no ORM bookkeeping for thousands of rows."""
    shift = kept_counts.added(r["profile_id"] for r in writes.inserts)
    shift.merge(kept_counts.reassigning(session, writes.moves))
    if writes.inserts:
        ids = session.scalars(
            _DEVICE.insert().returning(_DEVICE.c.id, sort_by_parameter_order=True),
            writes.inserts,
        ).all()
        # What KME holds of each new device is what it was stored with.
        session.execute(
            insert(_SYNC),
            [
                {
                    "device_id": device_id,
                    "kme_seen_approval": row["approval"],
                    "kme_seen_profile_id": row["profile_id"],
                    "kme_seen_user": user,
                    "kme_seen_at": now,
                }
                for device_id, row, user in zip(
                    ids, writes.inserts, writes.insert_users, strict=True
                )
            ],
        )
        stats["devices_created"] += len(writes.inserts)
    seen_values = {"kme_status": bindparam("kme_status"), "kme_missing_at": None}
    if writes.updates or writes.seen:
        session.execute(
            upsert(session, _SYNC, "device_id", _SEEN_COLUMNS).values(
                device_id=bindparam("did"),
                kme_seen_approval=bindparam("seen_approval"),
                kme_seen_profile_id=bindparam("seen_profile_id"),
                kme_seen_user=bindparam("seen_user"),
                kme_seen_at=now,
            ),
            [*writes.updates, *writes.seen],
        )
    if writes.updates:
        session.execute(
            _DEVICE.update()
            .where(_DEVICE.c.id == bindparam("did"))
            .values(
                approval=bindparam("approval"),
                profile_id=bindparam("profile_id"),
                end_user_id=bindparam("end_user_id"),
                kme_device_id=bindparam("kme_device_id"),
                upload_id=bindparam("upload_id"),
                version=_DEVICE.c.version + 1,
                updated_at=now,
                **seen_values,
            ),
            writes.updates,
        )
    if writes.seen:
        session.execute(
            _DEVICE.update().where(_DEVICE.c.id == bindparam("did")).values(**seen_values),
            writes.seen,
        )
    if writes.flags:
        session.execute(
            _DEVICE.update()
            .where(_DEVICE.c.id == bindparam("did"))
            .values(portal_changed_at=now, portal_previous=bindparam("previous")),
            writes.flags,
        )
    if writes.events:
        session.execute(insert(AuditEvent), writes.events)
    if writes.device_events:
        session.execute(insert(DeviceEvent), writes.device_events)
    if writes.resync:
        outbox.record_device_resync(session, writes.resync)
    kept_counts.apply(session, shift)


def flag_missing(session: Session, seen: set[int], started: datetime, stats: Counter) -> None:
    """After a full pull: flag the linked devices it did not find in KME (`kme_missing_at`,
    one device_event each, once); they are kept, never deleted. Devices created during the
    pull are left alone. Flushes."""
    linked = select(Device.id).where(
        Device.kme_device_id.is_not(None),
        Device.kme_missing_at.is_(None),
        Device.created_at < started,
    )
    missing = [i for i in session.scalars(linked) if i not in seen]
    if not missing:
        return
    now = utcnow()
    for where in id_filters(session, Device.id, missing):
        session.execute(
            update(Device)
            .where(where)
            .values(kme_missing_at=now)
            .execution_options(synchronize_session=False)
        )
    details = {"note": "not found by the full pull"}
    for chunk in chunks(missing, COMMIT_EVERY_DEVICES):
        session.execute(
            insert(DeviceEvent),
            [
                {
                    "device_id": i,
                    "at": now,
                    "kind": DeviceEventKind.NOT_IN_KME,
                    "actor": "sync",
                    "details": details,
                }
                for i in chunk
            ],
        )
    stats["devices_not_in_kme"] += len(missing)


def _waiting_upload_ids(session: Session) -> list[int]:
    """Uploads still waiting for approval in KME's terms (pending or partial): what the uploads
    hook gets after a pull."""
    return list(
        session.scalars(
            select(Upload.id).where(Upload.status.in_((UploadStatus.PENDING, UploadStatus.PARTIAL)))
        )
    )


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
    started = utcnow()
    cursor = None if full else integration.pull_cursor
    default = ensure_default_profile(session)
    session.commit()
    stats: Counter = Counter()
    pull_profiles(session, client, stats)
    pull_uploads(session, client, stats)
    ctx = PullContext(session, default.id, integration.portal_policy, full)
    first = True
    # Commit every few thousand devices or every second: progress stays visible and a
    # failure keeps what was written, without paying a commit (and a WAL checkpoint on
    # SQLite) for every page.
    uncommitted, last_commit = 0, time.monotonic()
    for page in client.iter_device_pages(changed_after=cursor):
        if first and operation_id is not None:
            operation = session.get(Operation, operation_id)
            operation.total = page.total_count
            first = False
        with gcpause.paused():  # a page's rows and writes: see kmeweb.gcpause
            apply_device_page(session, page.devices, ctx, stats)
        if operation_id is not None:
            operations.add_progress(session, operation_id, len(page.devices))
        uncommitted += len(page.devices)
        if uncommitted >= COMMIT_EVERY_DEVICES or time.monotonic() - last_commit >= 1.0:
            session.commit()
            uncommitted, last_commit = 0, time.monotonic()
    if ctx.seen is not None:
        flag_missing(session, ctx.seen, started, stats)
    session.commit()
    stats.update(hooks.run_uploads_hook(session, _waiting_upload_ids(session)))
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
