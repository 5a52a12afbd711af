"""Knox integration settings, activation, reseller preferences and upload approval.

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses. Nothing here calls the Knox API: the pull runs as a job,
Test connection lives in kmeweb.integration.connection; approvals go to the outbox
(kmeweb.sync.outbox) in the caller's transaction and are pushed after the commit.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from kmeweb import crypto
from kmeweb.audit import services as audit
from kmeweb.devices.models import Approval, Device
from kmeweb.devices.services import ids_summary
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.integration.models import Integration, Reseller, Upload, UploadStatus
from kmeweb.knox.config import DEFAULT_BASE_URL, KnoxConfig, keys_json_identifier
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import KME_KINDS, ensure_default_profile
from kmeweb.sync import outbox
from kmeweb.text import count

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
SYNC_INTERVAL_MIN, SYNC_INTERVAL_MAX, SYNC_INTERVAL_DEFAULT = 300, 86400, 900
DESCRIPTION_MAX = 200
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


def _keys_json(text: str) -> dict[str, Any]:
    """The keys.json content as a mapping with Public and Private. Raises ValidationError
    (field "secret") when it is not JSON or lacks either key."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValidationError(
            "keys.json is not valid JSON: download it again from the Knox API portal.",
            field="secret",
        ) from None
    if not isinstance(data, dict):
        raise ValidationError("keys.json must hold a JSON object.", field="secret")
    missing = [k for k in ("Public", "Private") if not (data.get(k) or data.get(k.lower()))]
    if missing:
        raise ValidationError(
            f"keys.json lacks {' and '.join(missing)}: use the file the Knox API portal gave you.",
            field="secret",
        )
    return data


def _interval(data: Mapping[str, Any], integration: Integration | None) -> int:
    """The sync interval in seconds from `sync_interval_min` (the form) or `sync_interval_s`."""
    if "sync_interval_min" in data:
        raw, unit, field = data.get("sync_interval_min"), 60, "sync_interval_min"
    else:
        raw, unit, field = data.get("sync_interval_s"), 1, "sync_interval_s"
    if raw is None or str(raw).strip() == "":
        if integration is not None:
            return integration.sync_interval_s
        if field == "sync_interval_min":
            raise ValidationError("Enter the sync interval in minutes.", field=field)
        return SYNC_INTERVAL_DEFAULT
    try:
        value = int(str(raw).strip()) * unit
    except ValueError:
        what = "whole minutes" if unit == 60 else "seconds"
        raise ValidationError(f"Enter the sync interval in {what}.", field) from None
    if not SYNC_INTERVAL_MIN <= value <= SYNC_INTERVAL_MAX:
        raise ValidationError(
            f"The sync interval is {SYNC_INTERVAL_MIN // 60} to {SYNC_INTERVAL_MAX // 60} minutes.",
            field=field,
        )
    return value


def validate_settings(session: Session, data: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The integration columns the Settings form asks for, checked, and the new secret ("" to
    keep the stored one). Writes nothing. Raises ValidationError (field set); see
    save_settings for the keys of `data`."""
    integration = get_integration(session)
    name = _text(data, "name", 100, "The Integration Name")
    if not name:
        raise ValidationError("Enter the Integration Name.", field="name")
    description = _text(data, "description", DESCRIPTION_MAX, "The description")
    auth_mode = str(data.get("auth_mode") or "oauth").strip().lower()
    if auth_mode not in AUTH_MODES:
        raise ValidationError("Choose OAuth or Legacy authentication.", field="auth_mode")
    custom = data.get("region") == "custom"
    base_url = _url(data, "base_url", "Knox API URL", required=custom) or DEFAULT_BASE_URL
    token_url = _url(data, "token_url", "token URL", required=False)
    client_id = _text(data, "client_id", 500, "The client id") or None
    customer_id = _text(data, "customer_id", 64, "The customer id") or None
    public_key = str(data.get("encryption_public_key") or "").strip() or None
    if public_key is not None and len(public_key) > 10_000:
        raise ValidationError("The public key is too long.", field="encryption_public_key")
    interval = _interval(data, integration)
    secret = str(data.get("secret") or "").strip()
    if len(secret) > 20_000:
        raise ValidationError("The secret is too long.", field="secret")
    mode_changed = integration is not None and integration.auth_mode != auth_mode
    has_stored = integration is not None and integration.secret_enc is not None
    if not secret and (not has_stored or mode_changed):
        what = "client secret" if auth_mode == "oauth" else "keys.json file"
        raise ValidationError(f"Enter the {what}.", field="secret")
    if auth_mode == "oauth" and not client_id:
        raise ValidationError("Enter the client id.", field="client_id")
    if auth_mode == "legacy":
        if not customer_id:
            raise ValidationError("Legacy authentication needs the customer id.", "customer_id")
        if secret:
            _keys_json(secret)
        if not client_id and not mode_changed and integration is not None and not secret:
            client_id = integration.client_id  # "leave blank to keep"
        keys = secret or (crypto.decrypt(integration.secret_enc) if has_stored else "")
        if not client_id and not keys_json_identifier(keys):
            raise ValidationError(
                "This keys.json holds no Identifier: enter the client identifier.", "client_id"
            )
    values = {
        "name": name,
        "description": description,
        "auth_mode": auth_mode,
        "base_url": base_url,
        "token_url": token_url if auth_mode == "oauth" else None,
        "client_id": client_id,
        "customer_id": customer_id,
        "encryption_public_key": public_key,
        "sync_interval_s": interval,
    }
    return values, secret


def save_settings(session: Session, data: Mapping[str, Any], actor: Any) -> Integration:
    """Create or update the integration from the Settings form.

    `data`: name (1..100), description (..200), auth_mode (oauth | legacy), base_url (default
    Samsung's global one), token_url (OAuth only; empty = Samsung's default), client_id (the
    OAuth client id, or the legacy client identifier: empty reads it from keys.json, or keeps
    the stored one), secret (the OAuth client secret or the keys.json content, plaintext;
    stored encrypted; empty keeps the stored one unless the auth mode changes), customer_id,
    encryption_public_key, and the sync interval as sync_interval_min (5..1440) or
    sync_interval_s. Legacy needs a keys.json with Public and Private, and the customer id.
    Records audit "integration.settings" (names of changed fields, never secrets). Flushes.
    Raises ValidationError (field set).
    """
    values, secret = validate_settings(session, data)
    integration = get_integration(session)
    created = integration is None
    if integration is None:
        integration = Integration(active=False, settings={})
        session.add(integration)
    changed = [k for k, v in values.items() if created or getattr(integration, k) != v]
    for key, value in values.items():
        setattr(integration, key, value)
    if secret:
        integration.secret_enc = crypto.encrypt(secret)
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


def connection_config(session: Session, data: Mapping[str, Any] | None = None) -> KnoxConfig:
    """The Knox client configuration for a connection test: the form's values when given
    (checked as save_settings checks them, the stored secret where the form leaves it blank),
    else the saved settings. Writes nothing. Raises ValidationError, or Conflict when nothing
    was saved and no values are given."""
    from kmeweb.sync.knox import config_for

    integration = get_integration(session)
    if data is None:
        if integration is None or integration.secret_enc is None:
            raise Conflict("Save the Knox Integration settings first.")
        values = {c: getattr(integration, c) for c in _SETTING_COLUMNS}
        secret = crypto.decrypt(integration.secret_enc)
        settings = integration.settings or {}
    else:
        values, secret = validate_settings(session, data)
        if not secret:
            assert integration is not None and integration.secret_enc is not None
            secret = crypto.decrypt(integration.secret_enc)
        settings = integration.settings if integration is not None else {}
    return config_for(values, secret, settings or {})


_SETTING_COLUMNS = (
    "auth_mode",
    "base_url",
    "token_url",
    "client_id",
    "customer_id",
    "encryption_public_key",
)


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
    if not integration.active:
        integration.activated_at = utcnow()
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
    integration.activated_at = None
    session.flush()
    audit.record(session, actor, "integration.deactivate", "integration", integration.id, {})
    return integration


def activate_with_test(
    session: Session,
    data: Mapping[str, Any],
    test: Callable[[KnoxConfig], Any],
    actor: Any,
) -> Operation:
    """Activate from the Settings form: check the values, test the connection with them, and
    only if KME answers save them, activate (creating the Samsung KME Default Profile once) and
    start the first pull.

    `test(config)` returns an object with `ok` and `message` (kmeweb.integration.connection);
    it is called before anything is written, so a failed test leaves the database as it was.
    Records the audits of save_settings, activate_integration and the pull. Flushes; the pull
    is enqueued after the commit. Raises ValidationError (a field, or field None with the
    connection's reason).
    """
    config = connection_config(session, data)
    result = test(config)
    if not result.ok:
        raise ValidationError(f"Not activated: {result.message}")
    save_settings(session, data, actor)
    activate_integration(session, actor)
    operation, _started = sync_now(session, actor)
    return operation


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
        session,
        "device.approve",
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
    operation = outbox.start_operation(
        session,
        "upload.approve",
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
    for where in outbox.id_filters(session, Device.id, ids):
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
    operation = outbox.start_operation(
        session, "device.approve", f"Approve {count(n, 'device')}", n, actor
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


def sync_now(session: Session, actor: Any) -> tuple[Operation, bool]:
    """Sync now: start a pull, or find the one already queued or running.

    Returns (operation, started). Flushes; the job is enqueued after the commit.
    Raises Conflict while the integration is not active.
    """
    from kmeweb.sync.jobs import start_pull

    integration = get_integration(session)
    if integration is None or not integration.active:
        raise Conflict("Activate the Knox integration before syncing.")
    running = operations.active_operation(session, "pull")
    if running is not None:
        return running, False
    return start_pull(session, actor), True


def current_pull(session: Session) -> Operation | None:
    """The pull that is queued or running now, if any (the status panel shows its progress)."""
    return operations.active_operation(session, "pull")


UPLOAD_SORTS = ("upload_id", "reseller", "order", "uploaded_at", "devices", "pending", "status")


def _pending_subquery():
    return (
        select(func.count())
        .select_from(Device)
        .where(Device.approval == Approval.PENDING, Device.upload_id == Upload.id)
        .correlate(Upload)
        .scalar_subquery()
    )


def list_uploads_query(
    search: str | None = None, sort: str = "uploaded_at", descending: bool = True
) -> Select:
    """Rows (Upload, reseller name) for the Uploads tab. `search` matches the upload id, the
    reseller's name or Knox id, or the order number; `sort` is one of UPLOAD_SORTS. Pending
    counts come from `pending_counts` for the page shown (except when sorting by them)."""
    stmt = select(Upload, Reseller.name.label("reseller_name")).outerjoin(
        Reseller, Upload.reseller_id == Reseller.id
    )
    search = (search or "").strip()
    if search:
        stmt = stmt.where(
            or_(
                Upload.kme_upload_id.icontains(search, autoescape=True),
                Upload.order_number.icontains(search, autoescape=True),
                Reseller.name.icontains(search, autoescape=True),
                Reseller.kme_reseller_id.icontains(search, autoescape=True),
            )
        )
    column = {
        "upload_id": Upload.kme_upload_id,
        "reseller": func.lower(func.coalesce(Reseller.name, "")),
        "order": func.coalesce(Upload.order_number, ""),
        "uploaded_at": Upload.uploaded_at,
        "devices": Upload.device_count,
        "pending": _pending_subquery(),
        "status": Upload.status,
    }.get(sort, Upload.uploaded_at)
    key = column.desc() if descending else column.asc()
    tie = Upload.id.desc() if descending else Upload.id.asc()
    return stmt.order_by(key, tie)


def pending_counts(session: Session, upload_ids: Sequence[int]) -> dict[int, int]:
    """{upload id: devices still waiting for approval}, one grouped query (the index on
    device(approval, upload_id) answers it alone)."""
    counts = dict.fromkeys(upload_ids, 0)
    for chunk in outbox.chunks(list(upload_ids), 900):
        rows = session.execute(
            select(Device.upload_id, func.count())
            .where(Device.approval == Approval.PENDING, Device.upload_id.in_(chunk))
            .group_by(Device.upload_id)
        )
        counts.update({upload_id: n for upload_id, n in rows})
    return counts


def pending_count(session: Session, upload_id: int) -> int:
    """Devices of one upload still waiting for approval."""
    return _pending_count(session, upload_id)


def upload_devices_query(upload_id: int, search: str | None = None) -> Select:
    """The View page: devices of the upload waiting for approval, by id; `search` matches
    IMEI, serial or model."""
    stmt = pending_devices_query(upload_id)
    search = (search or "").strip()
    if search:
        stmt = stmt.where(
            or_(
                Device.imei.icontains(search, autoescape=True),
                Device.serial.icontains(search.upper(), autoescape=True),
                Device.model.icontains(search, autoescape=True),
            )
        )
    return stmt


PENDING_CSV_HEADER = (
    "imei",
    "serial",
    "model",
    "upload_id",
    "reseller",
    "order_number",
    "uploaded_at",
)


def pending_devices_rows(upload_id: int | None = None) -> Select:
    """Rows (id, then PENDING_CSV_HEADER's columns) of the devices waiting for approval, of
    one upload or of all; read it with csvexport.keyset_chunks on Device.id."""
    stmt = (
        select(
            Device.id,
            Device.imei,
            Device.serial,
            Device.model,
            Upload.kme_upload_id,
            Reseller.name,
            Upload.order_number,
            Upload.uploaded_at,
        )
        .join(Upload, Device.upload_id == Upload.id)
        .outerjoin(Reseller, Upload.reseller_id == Reseller.id)
        .where(Device.approval == Approval.PENDING)
    )
    if upload_id is not None:
        stmt = stmt.where(Device.upload_id == upload_id)
    return stmt


def list_resellers_query(search: str | None = None) -> Select:
    """Rows (Reseller, default profile name) for the Resellers tab, by name; `search` matches
    the name or the Knox reseller id."""
    stmt = (
        select(Reseller, Profile.name.label("profile_name"))
        .outerjoin(Profile, Reseller.default_profile_id == Profile.id)
        .order_by(func.lower(Reseller.name), Reseller.id)
    )
    search = (search or "").strip()
    if search:
        stmt = stmt.where(
            or_(
                Reseller.name.icontains(search, autoescape=True),
                Reseller.kme_reseller_id.icontains(search, autoescape=True),
            )
        )
    return stmt


def get_reseller_or_404(session: Session, reseller_id: int) -> Reseller:
    """Raises NotFound."""
    reseller = session.get(Reseller, reseller_id)
    if reseller is None:
        raise NotFound("No such reseller.")
    return reseller


def kme_profile_choices(session: Session) -> list[tuple[int, str]]:
    """(id, name) of every KME profile but the Default Profile, by name (the Default profile
    select offers the Default Profile as "no default")."""
    from kmeweb.profiles.services import list_profiles_query

    stmt = list_profiles_query().where(Profile.kind == ProfileKind.KME)
    return [(p.id, p.name) for p in session.scalars(stmt)]


def profile_names(session: Session, profile_ids: Iterable[int]) -> dict[int, str]:
    """{profile id: name} for the profiles a page shows."""
    ids = list(dict.fromkeys(profile_ids))
    if not ids:
        return {}
    return dict(session.execute(select(Profile.id, Profile.name).where(Profile.id.in_(ids))).all())


def default_profile_choice(session: Session, reseller: Reseller) -> str:
    """The Default profile select's value for a reseller: "" for the Default Profile."""
    if reseller.default_profile_id is None:
        return ""
    profile = session.get(Profile, reseller.default_profile_id)
    if profile is None or profile.kind != ProfileKind.KME:
        return ""
    return str(profile.id)


def approval_target_name(session: Session, upload: Upload) -> str:
    """The name of the profile the upload's devices land in when approved (reads only)."""
    if upload.reseller_id is not None:
        reseller = session.get(Reseller, upload.reseller_id)
        if reseller is not None and reseller.default_profile_id is not None:
            profile = session.get(Profile, reseller.default_profile_id)
            if profile is not None and profile.kind in KME_KINDS:
                return profile.name
    from kmeweb.profiles.services import DEFAULT_PROFILE_NAME

    return DEFAULT_PROFILE_NAME
