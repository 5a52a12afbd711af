"""Knox integration settings, activation, reseller preferences and upload approval.

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses. Nothing here calls the Knox API: the connection test and
the pull run as jobs; approvals go to the outbox (kmeweb.sync.outbox) in the caller's
transaction and are pushed after the commit.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from kmeweb import crypto
from kmeweb.audit import services as audit
from kmeweb.devices.models import Approval, Device
from kmeweb.devices.services import ids_summary
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.integration.models import Integration, Reseller, Upload, UploadStatus
from kmeweb.knox.config import DEFAULT_BASE_URL
from kmeweb.operations.models import Operation
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import KME_KINDS, ensure_default_profile
from kmeweb.sync import outbox

__all__ = [
    "activate_integration",
    "approve_devices",
    "approve_upload",
    "deactivate_integration",
    "ensure_default_profile",
    "get_integration",
    "get_upload_or_404",
    "pending_devices_query",
    "save_settings",
    "set_reseller_preferences",
]

AUTH_MODES = ("oauth", "legacy")
SYNC_INTERVAL_MIN, SYNC_INTERVAL_MAX, SYNC_INTERVAL_DEFAULT = 60, 86400, 900
_URL = re.compile(r"^https?://[^\s/]+\S*$")


def get_integration(session: Session) -> Integration | None:
    """The one integration row, or None before the settings were first saved."""
    return session.scalar(select(Integration).order_by(Integration.id).limit(1))


def _text(data: Mapping[str, Any], key: str, max_len: int, label: str) -> str:
    value = str(data.get(key) or "").strip()
    if len(value) > max_len:
        raise ValidationError(f"{label} can have at most {max_len} characters.", field=key)
    return value


def _url(data: Mapping[str, Any], key: str, label: str, required: bool) -> str | None:
    value = _text(data, key, 500, label)
    if not value:
        if required:
            raise ValidationError(f"Enter the {label}.", field=key)
        return None
    if not _URL.match(value):
        raise ValidationError(f"The {label} must start with https:// or http://.", field=key)
    return value.rstrip("/") if key == "base_url" else value


def save_settings(session: Session, data: Mapping[str, Any], actor: Any) -> Integration:
    """Create or update the integration from the Settings form.

    `data`: name, description, auth_mode (oauth | legacy), base_url (default Samsung's),
    token_url, client_id, secret (plaintext; stored encrypted; empty keeps the stored one
    unless the auth mode changes), customer_id, encryption_public_key, sync_interval_s
    (60..86400, default 900). OAuth needs client_id and a secret; legacy needs the keys.json
    content as secret and the customer id. Records audit "integration.settings" (names of
    changed fields, never secrets). Flushes. Raises ValidationError (field set).
    """
    integration = get_integration(session)
    name = _text(data, "name", 100, "The integration name")
    if not name:
        raise ValidationError("Enter the Integration Name.", field="name")
    description = _text(data, "description", 500, "The description")
    auth_mode = str(data.get("auth_mode") or "oauth").strip().lower()
    if auth_mode not in AUTH_MODES:
        raise ValidationError("Choose OAuth or legacy authentication.", field="auth_mode")
    base_url = _url(data, "base_url", "Knox API URL", required=False) or DEFAULT_BASE_URL
    token_url = _url(data, "token_url", "token URL", required=False)
    client_id = _text(data, "client_id", 500, "The client id") or None
    customer_id = _text(data, "customer_id", 64, "The customer id") or None
    public_key = str(data.get("encryption_public_key") or "").strip() or None
    if public_key is not None and len(public_key) > 10_000:
        raise ValidationError("The public key is too long.", field="encryption_public_key")
    interval_raw = data.get("sync_interval_s")
    if interval_raw is None or str(interval_raw).strip() == "":
        interval = integration.sync_interval_s if integration else SYNC_INTERVAL_DEFAULT
    else:
        try:
            interval = int(str(interval_raw).strip())
        except ValueError:
            raise ValidationError("Enter the interval in seconds.", "sync_interval_s") from None
        if not SYNC_INTERVAL_MIN <= interval <= SYNC_INTERVAL_MAX:
            raise ValidationError(
                f"The sync interval is {SYNC_INTERVAL_MIN} to {SYNC_INTERVAL_MAX} seconds.",
                field="sync_interval_s",
            )
    secret = str(data.get("secret") or "")
    if len(secret) > 20_000:
        raise ValidationError("The secret is too long.", field="secret")
    mode_changed = integration is not None and integration.auth_mode != auth_mode
    has_stored = integration is not None and integration.secret_enc is not None
    if not secret.strip() and (not has_stored or mode_changed):
        what = "client secret" if auth_mode == "oauth" else "keys.json content"
        raise ValidationError(f"Enter the {what}.", field="secret")
    if auth_mode == "oauth" and not client_id:
        raise ValidationError("Enter the client id.", field="client_id")
    if auth_mode == "legacy" and not customer_id:
        raise ValidationError("Legacy authentication needs the customer id.", "customer_id")

    created = integration is None
    if integration is None:
        integration = Integration(active=False, settings={})
        session.add(integration)
    values = {
        "name": name,
        "description": description,
        "auth_mode": auth_mode,
        "base_url": base_url,
        "token_url": token_url,
        "client_id": client_id,
        "customer_id": customer_id,
        "encryption_public_key": public_key,
        "sync_interval_s": interval,
    }
    changed = [k for k, v in values.items() if created or getattr(integration, k) != v]
    for key, value in values.items():
        setattr(integration, key, value)
    if secret.strip():
        integration.secret_enc = crypto.encrypt(secret.strip())
        changed.append("secret")
    session.flush()
    audit.record(
        session,
        actor,
        "integration.settings",
        "integration",
        integration.id,
        {"created": created, "changed": changed},
    )
    return integration


def _require_integration(session: Session) -> Integration:
    integration = get_integration(session)
    if integration is None:
        raise Conflict("Save the Knox Integration settings first.")
    return integration


def activate_integration(session: Session, actor: Any) -> Integration:
    """Mark the integration active and make sure the Samsung KME Default Profile exists.

    Does not call Knox: the caller (or its job) tests the connection and starts the pull.
    Records audit "integration.activate". Flushes.
    Raises Conflict when no settings were saved or the credentials are incomplete.
    """
    integration = _require_integration(session)
    if integration.secret_enc is None:
        raise Conflict("Enter the Knox API credentials before activating.")
    existed = session.scalar(
        select(Profile.id).where(Profile.kind == ProfileKind.KME_DEFAULT).limit(1)
    )
    default = ensure_default_profile(session)
    integration.active = True
    session.flush()
    audit.record(
        session,
        actor,
        "integration.activate",
        "integration",
        integration.id,
        {"default_profile_id": default.id, "default_profile_created": existed is None},
    )
    return integration


def deactivate_integration(session: Session, actor: Any) -> Integration:
    """Stop syncing; settings, profiles and devices stay. Records audit
    "integration.deactivate". Flushes. Raises Conflict when there is no integration."""
    integration = _require_integration(session)
    integration.active = False
    session.flush()
    audit.record(session, actor, "integration.deactivate", "integration", integration.id, {})
    return integration


def set_reseller_preferences(
    session: Session,
    reseller_id: int,
    auto_approve: bool,
    default_profile_id: int | None,
    actor: Any,
) -> Reseller:
    """Set whether the reseller's uploads are approved automatically and which profile its
    approved devices land in (None = the Default Profile).

    Local only (the pull applies them). Records audit "reseller.preferences". Flushes.
    Raises NotFound, or ValidationError (field "default_profile_id") for a profile that is not
    a KME profile.
    """
    reseller = session.get(Reseller, reseller_id)
    if reseller is None:
        raise NotFound("No such reseller.")
    if default_profile_id is not None:
        profile = session.get(Profile, default_profile_id)
        if profile is None or profile.kind not in KME_KINDS:
            raise ValidationError(
                "Choose a Samsung Knox Mobile Enrollment profile.", field="default_profile_id"
            )
    old = {"auto_approve": reseller.auto_approve, "default_profile_id": reseller.default_profile_id}
    reseller.auto_approve = bool(auto_approve)
    reseller.default_profile_id = default_profile_id
    session.flush()
    audit.record(
        session,
        actor,
        "reseller.preferences",
        "reseller",
        reseller.id,
        {
            "reseller": reseller.kme_reseller_id,
            "old": old,
            "auto_approve": reseller.auto_approve,
            "default_profile_id": default_profile_id,
        },
    )
    return reseller


def get_upload_or_404(session: Session, upload_id: int) -> Upload:
    """Raises NotFound."""
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise NotFound("No such upload.")
    return upload


def pending_devices_query(upload_id: int) -> Select:
    """Devices of the upload still waiting for approval, by id (View page, CSV download)."""
    return (
        select(Device)
        .where(Device.upload_id == upload_id, Device.approval == Approval.PENDING)
        .order_by(Device.id)
    )


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
        session, "device.approve", device_ids, operation, actor, profile_id=target.id
    )
    if upload is not None:
        upload.status = (
            UploadStatus.PARTIAL if _pending_count(session, upload.id) else UploadStatus.APPROVED
        )
    return target


def _pending_count(session: Session, upload_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Device)
            .where(Device.upload_id == upload_id, Device.approval == Approval.PENDING)
        )
        or 0
    )


def approve_upload(session: Session, upload_id: int, actor: Any) -> Operation:
    """Approve All Devices: approve every pending device of the upload, in KME and locally.

    One "upload.approve" operation holds the upload approval (profile_id = target) and the
    device.approve rows; the devices become approved and move to the reseller's default profile,
    else the Default Profile (pending sync); the upload becomes "approved". Records audit
    "upload.approve". Flushes. Raises NotFound, or Conflict when nothing is pending.
    """
    upload = get_upload_or_404(session, upload_id)
    device_ids = list(
        session.scalars(select(Device.id).where(*_pending_where(upload.id)).order_by(Device.id))
    )
    if not device_ids:
        raise Conflict(f"Upload {upload.kme_upload_id} has no devices waiting for approval.")
    n = len(device_ids)
    operation = outbox.start_operation(
        session,
        "upload.approve",
        f"Approve {n:,} devices of upload {upload.kme_upload_id}",
        n,
        actor,
    )
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
    for chunk in outbox.chunks(ids, 900):
        rows = session.execute(
            select(Device.id, Device.upload_id, Device.approval).where(Device.id.in_(chunk))
        )
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
    operation = outbox.start_operation(
        session, "device.approve", f"Approve {n:,} devices", n, actor
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
