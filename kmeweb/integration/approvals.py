"""Approvals: Approve All Devices of an upload and approve selected devices, each device into
the destination of the first routing rule that matches it (kmeweb.rules.engine).

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses.
Approvals go to the outbox (kmeweb.outbox.services) in the caller's transaction and are pushed
after the commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from kmeweb import gcpause
from kmeweb.audit import services as audit
from kmeweb.devices import history
from kmeweb.devices import services as device_services
from kmeweb.devices.models import Approval, Device, DeviceEventKind
from kmeweb.devices.services import ids_summary
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.integration.models import Reseller, Upload, UploadStatus
from kmeweb.integration.uploads import get_upload_or_404, pending_count
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import ChangeKind
from kmeweb.profiles import counts
from kmeweb.profiles.services import DEFAULT_PROFILE_NAME, ensure_default_profile
from kmeweb.rules import engine
from kmeweb.sqlutil import id_filters
from kmeweb.text import count


def place_approved(
    session: Session,
    operation: Operation,
    actor: Any,
    upload: Upload | None,
    groups: Sequence[engine.Placement],
) -> dict[int, tuple[str, int]]:
    """Approve the `approve` devices of each placement into its destination: the upload's
    approval in KME once per destination (its devices' assignments wait for it), the devices
    approved and pending with the rule that placed them (and its user and attributes), and
    their device.approve rows. Returns {profile id: (name, devices)}."""
    placed: dict[int, tuple[str, int]] = {}
    with gcpause.paused():  # the id lists and pair rows of every device: see kmeweb.gcpause
        for group in groups:
            ids, dest = group.approve, group.destination
            if not ids:
                continue
            if upload is not None and dest.profile_id not in placed:
                outbox.record_upload_approval(
                    session, [upload.kme_upload_id], operation, actor, profile_id=dest.profile_id
                )
            shift = _approval_shift(session, group)
            outbox.mark_devices_pending(
                session,
                ids,
                approval=Approval.APPROVED,
                profile_id=dest.profile_id,
                **group.values(),
            )
            counts.apply(session, shift)
            device_services.merge_attributes(session, ids, group.attributes)
            changes = outbox.record_device_change(
                session,
                ChangeKind.DEVICE_APPROVE,
                ids,
                operation,
                actor,
                profile_id=dest.profile_id,
                batches_per_row=(
                    outbox.APPROVAL_BATCHES_PER_ROW if upload is not None and dest.is_default else 1
                ),
            )
            if upload is not None:
                _record_uploaded(session, upload, ids)
            history.record_by_change(
                session,
                DeviceEventKind.APPROVED,
                changes,
                actor,
                {
                    "to": dest.profile_id,
                    "rule_id": group.rule.key if group.rule.key > 0 else None,
                    "upload": upload.kme_upload_id if upload is not None else None,
                },
                operation_id=operation.id,
            )
            name, n = placed.get(dest.profile_id, (dest.name, 0))
            placed[dest.profile_id] = (name, n + len(ids))
    if upload is not None:
        upload.status = (
            UploadStatus.PARTIAL if pending_count(session, upload.id) else UploadStatus.APPROVED
        )
    return placed


def _approval_shift(session: Session, group: engine.Placement) -> counts.Shift:
    """The kept counts' shift of approving `group`'s devices into its destination: from where
    the read that placed them found them, else read now (`counts.moving`). For an Approve All
    Devices of 100,000 devices on PostgreSQL the read now cost 0.28 s of the POST."""
    to_id = group.destination.profile_id
    sources = group.approve_sources()
    if sources is None:
        return counts.moving(session, group.approve, to_id)
    shift = counts.Shift()
    for (from_id, registered), n in sources.items():
        shift.move(from_id, to_id, registered, devices=n)
    return shift


def _record_uploaded(session: Session, upload: Upload, device_ids: Sequence[int]) -> None:
    """ "Uploaded by the reseller" in the history of each device approved from `upload`, dated
    when the reseller uploaded it: written with the approval (the first event kmeweb writes
    for a device of an upload), so it stays once the device and its upload are gone."""
    reseller = session.get(Reseller, upload.reseller_id) if upload.reseller_id else None
    name = reseller.name if reseller is not None else None
    history.record_events(
        session,
        DeviceEventKind.UPLOADED,
        device_ids,
        name or "the reseller",
        {"reseller": name, "order": upload.order_number, "upload": upload.kme_upload_id},
        at=upload.uploaded_at,
    )


def approve_placements(
    session: Session,
    upload: Upload,
    groups: Sequence[engine.Placement],
    n: int,
    actor: Any,
) -> Operation:
    """Approve what routing rules approve at once in a new upload (the pull's hook): one
    "Approve N devices of upload U" operation (the upload's approval dedup key), the devices
    into their rules' destinations. Records audit "upload.approve" with the rules. Flushes."""
    operation = operations.start_operation(
        session,
        ChangeKind.UPLOAD_APPROVE,
        f"Approve {count(n, 'device')} of upload {upload.kme_upload_id}",
        n,
        actor,
    )
    operation.dedup_key = approval_key(upload.id)
    placed = place_approved(session, operation, actor, upload, groups)
    session.flush()
    audit.record(
        session,
        actor,
        "upload.approve",
        "upload",
        upload.id,
        {
            "kme_upload_id": upload.kme_upload_id,
            "devices": n,
            **_placed_details(placed),
            "rules": {g.rule.name: len(g.approve) for g in groups if g.approve},
            "operation_id": operation.id,
        },
    )
    return operation


def _approval_groups(
    session: Session, where: Sequence[ColumnElement[bool]]
) -> list[engine.Placement]:
    """The pending devices matching `where`, each under the first rule that matches it, all
    to approve (an admin approving a held device approves it into its rule's destination)."""
    return engine.approving_placements(session, _approving_rules(session), where)


def _approving_rules(session: Session) -> list[engine.RuleSpec]:
    """The rules as an admin's approval reads them (each approves), the Default Profile made
    first if need be."""
    ensure_default_profile(session)
    return engine.as_approving(engine.load_rules(session))


def _placed_details(placed: dict[int, tuple[str, int]]) -> dict[str, Any]:
    """Audit details of where approved devices went: the first (or only) profile as before,
    and every profile with its count."""
    first = next(iter(placed.items()), None)
    return {
        "profile_id": first[0] if first else None,
        "profile": first[1][0] if first else None,
        "profiles": {name: n for name, n in placed.values()},
    }


def approval_key(upload_id: int) -> str:
    """The dedup key of an upload's Approve All Devices operation."""
    return f"upload.approve:{upload_id}"


def approval_operation(session: Session, upload_id: int) -> Operation | None:
    """The upload's latest Approve All Devices operation (running or finished), if any."""
    return session.scalar(
        select(Operation)
        .where(Operation.dedup_key == approval_key(upload_id))
        .order_by(Operation.id.desc())
        .limit(1)
    )


def approve_upload(
    session: Session, upload_id: int, actor: Any, expected_pending: int | None = None
) -> Operation:
    """Approve All Devices: approve every pending device of the upload, in KME and locally.

    One "upload.approve" operation (dedup key `approval_key`) holds the upload approval (one
    per destination) and the device.approve rows; each device becomes approved in the
    destination of the first routing rule that matches it (the Default Profile when that rule
    points at a deleted profile, with the reason on the device), pending sync; the upload
    becomes "approved". `expected_pending` is the pending count the admin's page showed: a
    different count means the page is stale. Records audit "upload.approve". Flushes.
    Raises NotFound; Conflict when an approval of it is still running, nothing is pending
    (approved meanwhile), or the page is stale.
    """
    upload = get_upload_or_404(session, upload_id)
    running = operations.active_operation(session, approval_key(upload.id))
    if running is not None:
        raise Conflict(
            f"Upload {upload.kme_upload_id} is already being approved "
            f"(operation {running.id}); its progress is shown on the upload's page."
        )
    n = pending_count(session, upload.id)
    if not n:
        raise Conflict(
            f"Upload {upload.kme_upload_id} has no devices waiting for approval: someone "
            "approved it already. Reload the page."
        )
    if expected_pending is not None and expected_pending != n:
        raise Conflict(
            f"Upload {upload.kme_upload_id} changed since the page was loaded: "
            f"{count(n, 'device')} {'is' if n == 1 else 'are'} waiting now, not "
            f"{expected_pending:,}. Reload the page and try again."
        )
    groups = _approval_groups(session, _pending_where(upload.id))
    return approve_placements(session, upload, groups, n, actor)


def _pending_where(upload_id: int) -> tuple:
    return (Device.upload_id == upload_id, Device.approval == Approval.PENDING)


def approve_devices(session: Session, device_ids: Sequence[int], actor: Any) -> Operation:
    """Approve a selection of pending devices (all or nothing).

    KME approves whole uploads, so each upload the selection touches gets an upload approval
    row; the selected devices become approved in their reseller's default profile (else the
    Default Profile) and get device.approve rows, all in one "device.approve" operation. An
    upload with devices still pending becomes "partial", otherwise "approved". Records one
    audit "device.approve". Flushes.
    Raises ValidationError (field "device_ids") for an empty selection, NotFound when a device
    no longer exists, Conflict when one is not pending.
    """
    ids = list(dict.fromkeys(int(i) for i in device_ids))
    if not ids:
        raise ValidationError("Select at least one device.", field="device_ids")
    found: dict[int, tuple[int | None, str]] = {}
    for where in id_filters(session, Device.id, ids):
        rows = session.execute(select(Device.id, Device.upload_id, Device.approval).where(where))
        found.update((device_id, (upload_id, approval)) for device_id, upload_id, approval in rows)
    if len(found) < len(ids):
        raise NotFound(f"{len(ids) - len(found):,} of the selected devices no longer exist.")
    not_pending = sum(1 for _upload, approval in found.values() if approval != Approval.PENDING)
    by_upload: dict[int | None, list[int]] = defaultdict(list)
    for device_id in ids:  # selection order
        by_upload[found[device_id][0]].append(device_id)
    if not_pending:
        raise Conflict(f"{not_pending:,} of the selected devices are already approved.")

    n = len(ids)
    operation = operations.start_operation(
        session, ChangeKind.DEVICE_APPROVE, f"Approve {count(n, 'device')}", n, actor
    )
    uploads = []
    for upload_id, group in by_upload.items():
        upload = session.get(Upload, upload_id) if upload_id is not None else None
        groups: dict[int, engine.Placement] = {}
        for where in id_filters(session, Device.id, group):
            for placement in _approval_groups(session, [where]):
                merged = groups.setdefault(placement.rule.key, placement)
                if merged is not placement:
                    merged.merge(placement)
        placed = place_approved(session, operation, actor, upload, list(groups.values()))
        if upload is not None:
            uploads.append(
                {
                    "kme_upload_id": upload.kme_upload_id,
                    "devices": len(group),
                    "status": upload.status,
                }
            )
        else:
            uploads.append({"kme_upload_id": None, "devices": len(group), "status": None})
        uploads[-1].update(_placed_details(placed))
    session.flush()
    audit.record(
        session,
        actor,
        "device.approve",
        "device",
        None,
        {
            "devices": n,
            "device_ids": ids_summary(ids),
            "uploads": uploads,
            "operation_id": operation.id,
        },
    )
    return operation


def upload_facts(session: Session, upload_id: int) -> dict[str, Any]:
    """What an upload's View page and its Approve All Devices dialog say about it: `upload`,
    its `reseller` (or None), `pending_count` (devices waiting for approval) and
    `target_profile` (the name of the profile they land in when approved). Raises NotFound."""
    upload = get_upload_or_404(session, upload_id)
    return {
        "upload": upload,
        "reseller": session.get(Reseller, upload.reseller_id) if upload.reseller_id else None,
        "pending_count": pending_count(session, upload.id),
        "target_profile": approval_target_name(session, upload),
    }


def approval_target_name(session: Session, upload: Upload) -> str:
    """Where the upload's pending devices land when approved, by the routing rules (reads
    only): the profile's name, or "Sales (120 devices), Kiosk (30 devices)" when the rules
    split them."""
    rules = _approving_rules(session)
    placed: dict[str, int] = {}
    for destination, n in engine.approving_counts(session, rules, _pending_where(upload.id)):
        placed[destination.name] = placed.get(destination.name, 0) + n
    if len(placed) <= 1:
        return next(iter(placed), DEFAULT_PROFILE_NAME)
    return ", ".join(f"{name} ({count(n, 'device')})" for name, n in placed.items())
