"""The outbox: services record what KME must learn in the same transaction as the change.

Device changes are state-based: a change names devices, and the push sends each
device's *current* local assignment (profile, user, password) when it runs. So a
change that runs twice, late or out of order still leaves KME as the database
says. Device changes are split into rows of at most KNOX_BATCH_SIZE devices so a
crash loses at most one batch of progress and several workers can share a move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import ClauseElement, ColumnElement, Executable, literal, null, select, update
from sqlalchemy.orm import Session

from kmeweb.devices.models import Device, DeviceSync
from kmeweb.extensions import utcnow
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import (
    UNFINISHED,
    Change,
    ChangeKind,
    ChangeStatus,
    DeviceResult,
    SyncState,
)
from kmeweb.profiles.models import Profile
from kmeweb.sqlutil import ID_CHUNK, chunks, id_filters, id_in, upsert

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
# 100,000 approved devices is 5 rows of local work instead of 200: with KME's batches of 500
# devices, a row holds 20,000, which its push marks synced in one UPDATE (sqlutil.ID_CHUNK).
# Each row also costs its claim, commit and progress: with 20 rows of 5,000 devices, those
# were about a third of the push's local time (bench/approve.py, SQLite).
APPROVAL_BATCHES_PER_ROW = 40


def device_sync_upsert(
    session: Session,
    where: ColumnElement[bool],
    on_clash: Mapping[str, Any] | None = None,
    **values: Any,
) -> Executable:
    """The statement setting the sync bookkeeping `values` (DeviceSync's columns: constants,
    or SQL over the `device` table) of the devices `where` selects (a clause over `device`),
    creating their `device_sync` rows where missing; `on_clash` as in `sqlutil.upsert`."""
    device, table = Device.__table__, DeviceSync.__table__
    names = list(values)
    columns = [
        values[n]
        if isinstance(values[n], ClauseElement)
        else null()
        if values[n] is None
        else literal(values[n], table.c[n].type)
        for n in names
    ]
    rows = select(device.c.id, *columns).where(where)
    return upsert(session, table, "device_id", ["device_id", *names], rows, on_clash)


def write_device_sync(
    session: Session,
    where: ColumnElement[bool],
    on_clash: Mapping[str, Any] | None = None,
    **values: Any,
) -> int:
    """Run `device_sync_upsert`; returns how many devices it wrote."""
    stmt = device_sync_upsert(session, where, on_clash, **values)
    # SQLAlchemy keeps an INSERT's row count on PostgreSQL only when asked (else -1).
    return session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount


def _set_device_sync(session: Session, device_ids: Sequence[int], **values: Any) -> None:
    """`write_device_sync` for devices named by id (at most ID_CHUNK): an UPDATE of their rows
    by key, and the upsert only when some have none yet (a device never pushed nor pulled).
    The UPDATE alone reads no device row (bench/approve.py on PostgreSQL: 100,000 devices
    marked pending in about 0.7 s against 1.0 s through the upsert)."""
    updated = session.execute(
        update(DeviceSync)
        .where(id_in(session, DeviceSync.device_id, device_ids))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if updated < len(set(device_ids)):
        write_device_sync(session, id_in(session, Device.id, device_ids), **values)


def mark_devices_pending(session: Session, device_ids: Sequence[int], **values: Any) -> None:
    """Set `values` on the devices, bump their version and mark them pending, in bulk."""
    for chunk in chunks(list(device_ids), ID_CHUNK):
        session.execute(
            update(Device)
            .where(id_in(session, Device.id, chunk))
            .values(**values, version=Device.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        _set_device_sync(session, chunk, sync_state=SyncState.PENDING, sync_error=None)


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
    for chunk in chunks(list(device_ids), ID_CHUNK):
        _set_device_sync(session, chunk, sync_state=SyncState.PENDING)
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


@dataclass
class OperationDeviceResult:
    """One device of an operation and what became of it: `device_id` (None for a deletion:
    the row is gone), `identifier` (what KME knows a deleted device by), `imei` and `serial`
    (None once the device is gone), `result`, and `error`: Samsung's code and message as the
    push recorded them (kmeweb.sync.push)."""

    device_id: int | None
    identifier: str | None
    imei: str | None
    serial: str | None
    result: DeviceResult
    error: str | None


#: Where a device result page starts: after (change id, index in its payload), or None.
ResultPosition = tuple[int, int] | None


def device_results(
    session: Session, operation_id: int, after: ResultPosition, limit: int
) -> tuple[list[OperationDeviceResult], ResultPosition]:
    """One page of the operation's per-device results: each device its device changes name
    (payload "device_ids", or "identifiers" for a deletion), in change order, after `after`.
    Returns the results and where the next page starts (None on the last page).

    A device is pending while its change is; failed when its change failed (the change's
    error) or when the change went through but KME did not apply it to this device (the
    device's error); succeeded otherwise. Raises NotFound for an unknown operation.
    """
    operations.get_operation(session, operation_id)
    stmt = (
        select(Change)
        .where(Change.operation_id == operation_id, Change.kind.in_(DEVICE_KINDS))
        .order_by(Change.id)
        .execution_options(yield_per=20)
    )
    if after is not None:
        stmt = stmt.where(Change.id >= after[0])
    picked: list[tuple[Change, int, Any]] = []
    result = session.scalars(stmt)
    try:
        for change in result:
            items = change.payload.get(_payload_key(change), [])
            start = after[1] + 1 if after is not None and change.id == after[0] else 0
            picked.extend((change, i, items[i]) for i in range(start, len(items)))
            if len(picked) > limit:
                break
    finally:
        result.close()
    more = len(picked) > limit
    picked = picked[:limit]
    devices = _devices(session, [item for change, _i, item in picked if _by_id(change)])
    out = [_outcome(change, item, devices) for change, _i, item in picked]
    return out, ((picked[-1][0].id, picked[-1][1]) if more else None)


def _by_id(change: Change) -> bool:
    return change.kind != ChangeKind.DEVICE_DELETE


def _payload_key(change: Change) -> str:
    return "device_ids" if _by_id(change) else "identifiers"


def _devices(session: Session, device_ids: list[int]) -> dict[int, Any]:
    rows = {}
    columns = (Device.id, Device.imei, Device.serial, DeviceSync.sync_state, DeviceSync.sync_error)
    for where in id_filters(session, Device.id, device_ids):
        stmt = select(*columns).outerjoin(DeviceSync).where(where)
        rows.update((row.id, row) for row in session.execute(stmt))
    return rows


def _outcome(change: Change, item: Any, devices: dict[int, Any]) -> OperationDeviceResult:
    device = devices.get(item) if _by_id(change) else None
    if change.status in UNFINISHED:
        result, error = DeviceResult.PENDING, None
    elif change.status == ChangeStatus.FAILED:
        result, error = DeviceResult.FAILED, change.last_error
    elif change.last_error and device is not None and device.sync_state == SyncState.ERROR:
        # The change went through with a note ("1 of 5 devices not applied"): this device.
        result, error = DeviceResult.FAILED, device.sync_error
    else:
        result, error = DeviceResult.SUCCEEDED, None
    return OperationDeviceResult(
        device_id=item if _by_id(change) else None,
        identifier=None if _by_id(change) else str(item),
        imei=device.imei if device is not None else None,
        serial=device.serial if device is not None else None,
        result=result,
        error=error,
    )
