"""Approvals: Approve All Devices of an upload, approve selected devices, and the pull's
hook that auto-approves the uploads of resellers who asked for it.

Functions take the session and the acting admin, flush but never commit (the pull's hook
commits each approval, as the pull does), and raise kmeweb.errors DomainError subclasses.
Approvals go to the outbox (kmeweb.outbox.services) in the caller's transaction and are pushed
after the commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.devices.models import Approval, Device
from kmeweb.devices.services import ids_summary
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.integration.models import Reseller, Upload, UploadStatus
from kmeweb.integration.uploads import get_upload_or_404, pending_count
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import ChangeKind
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import DEFAULT_PROFILE_NAME, KME_KINDS, ensure_default_profile
from kmeweb.sqlutil import id_filters
from kmeweb.text import count


def _target_profile(session: Session, reseller_id: int | None) -> Profile:
    """Where approved devices of a reseller land: its default profile, else the Default."""
    if reseller_id is not None:
        reseller = session.get(Reseller, reseller_id)
        if reseller is not None and reseller.default_profile_id is not None:
            profile = session.get(Profile, reseller.default_profile_id)
            if profile is not None and profile.kind in KME_KINDS:
                return profile
    return ensure_default_profile(session)


def _approve(
    session: Session,
    operation: Operation,
    actor: Any,
    upload: Upload | None,
    device_ids: list[int],
) -> Profile:
    target = _target_profile(session, upload.reseller_id if upload else None)
    if upload is not None:
        outbox.record_upload_approval(
            session, [upload.kme_upload_id], operation, actor, profile_id=target.id
        )
    outbox.mark_devices_pending(
        session, device_ids, approval=Approval.APPROVED, profile_id=target.id
    )
    outbox.record_device_change(
        session,
        ChangeKind.DEVICE_APPROVE,
        device_ids,
        operation,
        actor,
        profile_id=target.id,
        batches_per_row=(
            outbox.APPROVAL_BATCHES_PER_ROW
            if upload is not None and target.kind == ProfileKind.KME_DEFAULT
            else 1
        ),
    )
    if upload is not None:
        upload.status = (
            UploadStatus.PARTIAL if pending_count(session, upload.id) else UploadStatus.APPROVED
        )
    return target


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

    One "upload.approve" operation (dedup key `approval_key`) holds the upload approval
    (profile_id = target) and the device.approve rows; the devices become approved and move
    to the reseller's default profile, else the Default Profile (pending sync); the upload
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
    device_ids = list(
        session.scalars(select(Device.id).where(*_pending_where(upload.id)).order_by(Device.id))
    )
    if not device_ids:
        raise Conflict(
            f"Upload {upload.kme_upload_id} has no devices waiting for approval: someone "
            "approved it already. Reload the page."
        )
    n = len(device_ids)
    if expected_pending is not None and expected_pending != n:
        raise Conflict(
            f"Upload {upload.kme_upload_id} changed since the page was loaded: "
            f"{count(n, 'device')} {'is' if n == 1 else 'are'} waiting now, not "
            f"{expected_pending:,}. Reload the page and try again."
        )
    operation = operations.start_operation(
        session,
        ChangeKind.UPLOAD_APPROVE,
        f"Approve {count(n, 'device')} of upload {upload.kme_upload_id}",
        n,
        actor,
    )
    operation.dedup_key = approval_key(upload.id)
    target = _approve(session, operation, actor, upload, device_ids)
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
            "profile_id": target.id,
            "profile": target.name,
            "operation_id": operation.id,
        },
    )
    return operation


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
        target = _approve(session, operation, actor, upload, group)
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
        uploads[-1]["profile_id"] = target.id
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
    """The name of the profile the upload's devices land in when approved (reads only)."""
    if upload.reseller_id is not None:
        reseller = session.get(Reseller, upload.reseller_id)
        if reseller is not None and reseller.default_profile_id is not None:
            profile = session.get(Profile, reseller.default_profile_id)
            if profile is not None and profile.kind in KME_KINDS:
                return profile.name
    return DEFAULT_PROFILE_NAME


def auto_approve_uploads(session: Session, upload_ids: Sequence[int]) -> dict[str, int]:
    """The pull's uploads hook (kmeweb.sync.hooks): Approve All Devices, as actor "sync", for
    each of `upload_ids` whose reseller has Auto-approve uploads on and that still has pending
    devices; they land in the reseller's default profile (else the Default Profile).

    Commits after each upload, as the pull commits as it goes: each approval is pushed at once
    and a failure keeps the ones before. Returns {"uploads_auto_approved": n}. Raises what
    approve_upload raises.
    """
    wanted = set(upload_ids)
    rows = session.scalars(
        select(Upload)
        .join(Reseller, Upload.reseller_id == Reseller.id)
        .where(
            Reseller.auto_approve.is_(True),
            Upload.status.in_((UploadStatus.PENDING, UploadStatus.PARTIAL)),
        )
    ).all()
    approved = 0
    for upload in rows:
        if upload.id not in wanted:
            continue
        has_pending = session.scalar(
            select(Device.id)
            .where(Device.upload_id == upload.id, Device.approval == Approval.PENDING)
            .limit(1)
        )
        if has_pending is None:
            continue
        approve_upload(session, upload.id, "sync")
        session.commit()
        approved += 1
    return {"uploads_auto_approved": approved}
