"""The outbox: services record what KME must learn in the same transaction as the change.

Device changes are state-based: a change names devices, and the push sends each
device's *current* local assignment (profile, user, password) when it runs. So a
change that runs twice, late or out of order still leaves KME as the database
says. Device changes are split into rows of at most KNOX_BATCH_SIZE devices so a
crash loses at most one batch of progress and several workers can share a move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm import Session

from kmeweb.devices.models import Device
from kmeweb.extensions import utcnow
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change, ChangeKind, SyncState
from kmeweb.profiles.models import Profile
from kmeweb.sqlutil import chunks, id_filters

# Kinds whose push sends the devices' current assignment (assign or unassign in KME).
DEVICE_SYNC_KINDS = (
    ChangeKind.DEVICE_APPROVE,
    ChangeKind.DEVICE_MOVE,
    ChangeKind.DEVICE_UNASSIGN,
    ChangeKind.DEVICE_USER,
    ChangeKind.DEVICE_RESYNC,  # written by the push itself, see push._resync_moved_on
)
DEVICE_KINDS = (*DEVICE_SYNC_KINDS, ChangeKind.DEVICE_DELETE)
PROFILE_KINDS = (ChangeKind.PROFILE_CREATE, ChangeKind.PROFILE_UPDATE, ChangeKind.PROFILE_DELETE)
UPLOAD_KINDS = (ChangeKind.UPLOAD_APPROVE,)
ALL_KINDS = (*DEVICE_KINDS, *PROFILE_KINDS, *UPLOAD_KINDS)


def batch_size() -> int:
    return int(current_app.config["KNOX_BATCH_SIZE"])


# An approval into the Default Profile needs no KME call per device (KME's upload approval
# leaves its devices unassigned), so its rows carry this many KME batches each: the push of
# 100,000 approved devices is 20 rows of local work instead of 200.
APPROVAL_BATCHES_PER_ROW = 10


def mark_devices_pending(session: Session, device_ids: Sequence[int], **values: Any) -> None:
    """Set `values` on the devices, bump their version and mark them pending, in bulk."""
    for where in id_filters(session, Device.id, device_ids):
        session.execute(
            update(Device)
            .where(where)
            .values(
                **values,
                sync_state=SyncState.PENDING,
                sync_error=None,
                version=Device.version + 1,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )


def record_device_change(
    session: Session,
    kind: str,
    device_ids: Sequence[int],
    operation: Operation,
    actor: Any,
    profile_id: int | None = None,
    batches_per_row: int = 1,
) -> list[Change]:
    """Add outbox rows for `device_ids` (one per `batches_per_row` KME batches). For
    device.delete pass the KME identifiers via `record_device_delete` instead. Flushes."""
    assert kind in DEVICE_SYNC_KINDS, kind
    return _batched_changes(
        session, kind, "device_ids", device_ids, operation, actor, profile_id, batches_per_row
    )


def record_device_resync(session: Session, device_ids: Sequence[int]) -> list[Change]:
    """Outbox rows (no operation, actor "sync") pushing these devices' current state again,
    and mark them pending. Used by the push; see push._resync_moved_on. Flushes."""
    for where in id_filters(session, Device.id, device_ids):
        session.execute(update(Device).where(where).values(sync_state=SyncState.PENDING))
    return _batched_changes(
        session, ChangeKind.DEVICE_RESYNC, "device_ids", device_ids, None, "sync"
    )


def record_device_delete(
    session: Session, identifiers: Sequence[str], operation: Operation, actor: Any
) -> list[Change]:
    """Outbox rows deleting devices from KME by KME id, IMEI or serial (the local rows are
    already gone, so the payload carries what KME knows them by). Flushes."""
    return _batched_changes(
        session, ChangeKind.DEVICE_DELETE, "identifiers", identifiers, operation, actor
    )


def _batched_changes(
    session: Session,
    kind: str,
    key: str,
    items: Sequence[Any],
    operation: Operation | None,
    actor: Any,
    profile_id: int | None = None,
    batches_per_row: int = 1,
) -> list[Change]:
    """One outbox row per `batches_per_row` × KNOX_BATCH_SIZE items, the items under
    payload[key] (the client splits a row's KME calls into batches). Flushes."""
    changes = [
        _add_change(session, kind, {key: list(chunk)}, operation, actor, profile_id, len(chunk))
        for chunk in chunks(list(items), batch_size() * batches_per_row)
    ]
    session.flush()
    return changes


def _add_change(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    operation: Operation | None,
    actor: Any,
    profile_id: int | None = None,
    device_count: int = 0,
) -> Change:
    """Add one outbox row (not flushed)."""
    change = Change(
        kind=kind,
        payload=payload,
        profile_id=profile_id,
        device_count=device_count,
        operation_id=operation.id if operation is not None else None,
        created_by=operations.actor_id(actor),
    )
    session.add(change)
    return change


def record_profile_change(
    session: Session, kind: str, profile: Profile, operation: Operation, actor: Any
) -> Change:
    """Outbox row for a profile create/update (state-based: the push sends the profile as it
    is then) or delete (the payload keeps the KME id and name). Marks the profile pending."""
    assert kind in PROFILE_KINDS, kind
    payload: dict[str, Any] = {"profile_id": profile.id, "name": profile.name}
    if kind == ChangeKind.PROFILE_DELETE:
        payload["kme_profile_id"] = profile.kme_profile_id
    else:
        profile.sync_state = SyncState.PENDING
        profile.sync_error = None
    profile_id = None if kind == ChangeKind.PROFILE_DELETE else profile.id
    change = _add_change(session, kind, payload, operation, actor, profile_id)
    session.flush()
    return change


def record_upload_approval(
    session: Session,
    kme_upload_ids: Sequence[str],
    operation: Operation,
    actor: Any,
    profile_id: int | None = None,
) -> Change:
    """Outbox row approving reseller uploads in KME. `profile_id` is the profile the approved
    devices go to, so their assignment waits for the approval. Flushes."""
    payload = {"kme_upload_ids": list(kme_upload_ids)}
    change = _add_change(session, ChangeKind.UPLOAD_APPROVE, payload, operation, actor, profile_id)
    session.flush()
    return change
