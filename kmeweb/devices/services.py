"""Devices: move, unassign, delete, user and password, custom attributes, lists.

Bulk actions validate the whole selection first with id-only queries, then either apply fully
or raise (design 6.5). They never load device objects: ids are read with one query per chunk
and rows change through kmeweb.outbox.services.mark_devices_pending, which bumps each version and
marks the device pending. Every action writes the outbox rows KME needs (one operation per
action) and one audit event (counts and an id summary, not one per device) in the caller's
transaction. Functions flush but never commit.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, and_, bindparam, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from kmeweb import crypto, csvexport
from kmeweb.audit import services as audit
from kmeweb.devices import history
from kmeweb.devices.models import (
    JOINED_SYNC_STATE,
    Approval,
    Device,
    DeviceEventKind,
    DeviceSync,
    KmeState,
    Registration,
    unsynced_device_ids,
)
from kmeweb.devices.selection import (
    SYNC_FILTER_STATES,
    DeviceFilter,
    DeviceSelection,
)
from kmeweb.directory.models import EndUser
from kmeweb.directory.services import user_matches
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.identifiers import normalize_serial
from kmeweb.ids import parse_id
from kmeweb.integration.models import Reseller, Upload
from kmeweb.operations import dispatch
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation, OperationKind
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import Change, ChangeKind, SyncState
from kmeweb.profiles import counts
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import (
    DEFAULT_KIND,
    DEFAULT_PROFILE_NAME,
    KME_KINDS,
    ensure_default_profile,
    get_profile_or_404,
)
from kmeweb.rules.models import RoutingRule
from kmeweb.sqlutil import chunks, id_filters
from kmeweb.text import count

CHUNK = 900  # ids per IN (...) list, below SQLite's variable limit
PASSWORD_MAX_BYTES = 245  # Samsung's RSA encryption takes at most 245 bytes of plaintext
ATTRIBUTES_MAX = 50
_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_. -]{0,63}$")
STALE_MESSAGE = "This device was changed by someone else; reload it and try again."


def ids_summary(ids: Sequence[int], limit: int = 20) -> dict[str, Any]:
    """What an audit event keeps of a long id list: the count and the first `limit` ids."""
    return {"count": len(ids), "first": list(ids[:limit])}


def _selection(device_ids: Sequence[int]) -> list[int]:
    try:
        ids = list(dict.fromkeys(int(i) for i in device_ids))
    except (TypeError, ValueError):
        raise ValidationError("Invalid device selection.", field="device_ids") from None
    if not ids:
        raise ValidationError("Select at least one device.", field="device_ids")
    return ids


def _rows(session: Session, ids: list[int], *columns: Any) -> list[tuple]:
    """(id, approval, profile_id, profile kind, *columns) of each selected device, in selection
    order. Raises NotFound when some no longer exist.
    """
    found: dict[int, tuple] = {}
    for where in id_filters(session, Device.id, ids):
        rows = session.execute(
            select(Device.id, Device.approval, Device.profile_id, Profile.kind, *columns)
            .outerjoin(Profile, Profile.id == Device.profile_id)
            .where(where)
        )
        found.update((row[0], tuple(row)) for row in rows)
    if len(found) < len(ids):
        raise NotFound(f"{len(ids) - len(found):,} of the selected devices no longer exist.")
    return [found[i] for i in ids]


def _require_approved(rows: list[tuple]) -> None:
    pending = sum(1 for r in rows if r[1] != Approval.APPROVED or r[2] is None)
    if pending:
        raise ValidationError(
            f"{pending:,} of the selected devices are waiting for approval.", field="device_ids"
        )


IMEI_PREFIX_MIN = 6  # a search of this many digits or more is an IMEI (or its start)


def _search_clause(search: str) -> Any:
    if search.isdigit() and len(search) >= IMEI_PREFIX_MIN:
        # The IMEI typed, in full or its start: a range on the (profile_id, imei) index
        # instead of a substring scan of every device of the profile.
        return and_(Device.imei >= search, Device.imei < search + "~")
    users = select(EndUser.id).where(user_matches(search))
    return or_(
        Device.imei.icontains(search, autoescape=True),
        Device.serial.icontains(search, autoescape=True),
        Device.model.icontains(search, autoescape=True),
        Device.end_user_id.in_(users),
    )


DEVICE_SORTS = {
    "imei": Device.imei,
    "serial": Device.serial,
    "model": Device.model,
    "registered": Device.registered_at,
    "sync": Device.sync_state,
}


def _state_filters(stmt: Select, registration: str | None, sync_state: str | None) -> Select:
    """The device table's Registration and Sync state filters (anything else: any)."""
    if registration == Registration.REGISTERED:
        stmt = stmt.where(Device.registered_at.is_not(None))
    elif registration == Registration.PENDING:
        stmt = stmt.where(Device.registered_at.is_(None))
    if sync_state == SyncState.SYNCED:
        stmt = stmt.where(Device.id.not_in(unsynced_device_ids()))
    elif sync_state in SYNC_FILTER_STATES:
        stmt = stmt.where(Device.id.in_(unsynced_device_ids(sync_state)))
    return stmt


def _filtered(
    stmt: Select,
    profile_id: int,
    search: str | None,
    registration: str | None,
    sync_state: str | None,
    rule_id: int | None = None,
    kme: str | None = None,
) -> Select:
    stmt = stmt.where(Device.profile_id == profile_id)
    if rule_id is not None:  # ix_device_profile_rule
        stmt = stmt.where(Device.rule_id == rule_id)
    stmt = _kme_filter(stmt, kme)
    search = (search or "").strip()
    if search:
        stmt = stmt.where(_search_clause(search))
    return _state_filters(stmt, registration, sync_state)


def selection_filtered(stmt: Select, selection: DeviceSelection) -> Select:
    """`stmt` limited to the devices an "all N matching" selection names: its profile and the
    device table's filter, as the table showed them."""
    flt = selection.filter
    return _filtered(
        stmt,
        selection.profile_id,
        flt.q or None,
        flt.registration or None,
        flt.sync or None,
        flt.rule_id,
        flt.kme or None,
    )


def _kme_filter(stmt: Select, kme: str | None) -> Select:
    """The device table's Samsung filter: changed in the portal and not settled, or not found
    in KME (the partial indexes ix_device_portal_changed, ix_device_kme_missing)."""
    if kme == KmeState.CHANGED:
        return stmt.where(Device.portal_changed_at.is_not(None))
    if kme == KmeState.MISSING:
        return stmt.where(Device.kme_missing_at.is_not(None))
    return stmt


def devices_query(
    profile_id: int,
    search: str | None = None,
    registration: str | None = None,
    sync_state: str | None = None,
    sort: str | None = None,
    descending: bool = False,
    rule_id: int | None = None,
    kme: str | None = None,
) -> Select:
    """Devices of a profile for paging; `search` matches IMEI, serial, model or the user
    (username, email or display name; case-insensitive substring; 6 or more digits match the
    start of the IMEI);
    `registration` is "registered" or "pending", `sync_state` one of SYNC_FILTER_STATES;
    `rule_id` the routing rule that placed them; `kme` a KmeState (changed in the Samsung
    portal, not found in KME); `sort` a DEVICE_SORTS key (by id when None), ties by id.
    """
    stmt = _filtered(select(Device), profile_id, search, registration, sync_state, rule_id, kme)
    # The page's sync states in one more query (device_sync by the page's ids), not one each.
    stmt = stmt.options(selectinload(Device.sync))
    column = DEVICE_SORTS.get(sort or "")
    if column is None:
        return stmt.order_by(Device.id.desc() if descending else Device.id)
    ordered = column.desc() if descending else column.asc()
    return stmt.order_by(ordered, Device.id.desc() if descending else Device.id)


def select_device_ids(
    session: Session,
    profile_id: int,
    search: str | None = None,
    registration: str | None = None,
    sync_state: str | None = None,
    rule_id: int | None = None,
    kme: str | None = None,
) -> list[int]:
    """Ids of every device `devices_query` matches (the "all N matching" selection)."""
    stmt = _filtered(select(Device.id), profile_id, search, registration, sync_state, rule_id, kme)
    return list(session.scalars(stmt.order_by(Device.id)))


def rules_placing(session: Session, profile_id: int) -> list[tuple[int, str]]:
    """(id, name) of the routing rules that placed devices now in the profile, by name: the
    "Placed by rule" filter's choices (distinct rule ids on ix_device_profile_rule, then
    their names)."""
    ids = session.scalars(
        select(Device.rule_id)
        .where(Device.profile_id == profile_id, Device.rule_id.is_not(None))
        .distinct()
    ).all()
    return sorted(rule_names(session, ids).items(), key=lambda pair: pair[1].lower())


def rule_names(session: Session, rule_ids: Iterable[int | None]) -> dict[int, str]:
    """{rule id: name} of the routing rules named (one query; deleted ones left out)."""
    ids = sorted({i for i in rule_ids if i is not None})
    if not ids:
        return {}
    rows = session.execute(select(RoutingRule.id, RoutingRule.name).where(RoutingRule.id.in_(ids)))
    return {rule_id: name for rule_id, name in rows}


def search_devices(
    *,
    q: str | None = None,
    imei: str | None = None,
    serial: str | None = None,
    model: str | None = None,
    username: str | None = None,
    profile_id: int | None = None,
    registration: str | None = None,
    sync_state: str | None = None,
    attribute: tuple[str, str] | None = None,
) -> Select:
    """The ids of devices across profiles (pending approval ones too), unordered: page it by
    Device.id (kmeweb.api.paging.keyset) and read each page with device_rows.

    Ids alone, so that a page is an index range whatever the planner guesses about where a
    profile's devices are: the primary key unfiltered, ix_device_profile_keyset for one
    profile (index only on PostgreSQL); page 500 costs what page 1 does.

    `q` searches as the profile page does (IMEI, serial, model, or the user's username, email
    or display name; 6 or more digits match the start of the IMEI); `imei`, `serial` and
    `model` are exact (any case), `username` the user's exact username (any case),
    `registration` and `sync_state` the device table's filters,
    `attribute` a (key, value) pair matching the custom attribute's value as text.
    """
    stmt = select(Device.id)
    if profile_id is not None:
        stmt = stmt.where(Device.profile_id == profile_id)
    if q and q.strip():
        stmt = stmt.where(_search_clause(q.strip()))
    if imei and imei.strip():
        stmt = stmt.where(Device.imei == imei.strip().upper())
    if serial and serial.strip():
        stmt = stmt.where(Device.serial == normalize_serial(serial))
    if model and model.strip():
        stmt = stmt.where(func.upper(Device.model) == model.strip().upper())
    if username and username.strip():
        users = select(EndUser.id).where(func.lower(EndUser.username) == username.strip().lower())
        stmt = stmt.where(Device.end_user_id.in_(users))
    if attribute is not None:
        key, value = attribute
        stmt = stmt.where(cast(Device.attributes[key].as_string(), String) == value)
    return _state_filters(stmt, registration, sync_state)


#: What a list of devices shows of each (never the enrollment password).
DEVICE_COLUMNS = (
    Device.id,
    Device.imei,
    Device.serial,
    Device.model,
    Device.profile_id,
    Device.approval,
    Device.end_user_id,
    Device.attributes,
    Device.registered_at,
    Device.agent_version,
    Device.kme_device_id,
    Device.kme_status,
    JOINED_SYNC_STATE,
    DeviceSync.sync_error,
    Device.upload_id,
    Device.version,
    Device.created_at,
    Device.updated_at,
)


def device_rows(session: Session, device_ids: Sequence[int]) -> list[dict[str, Any]]:
    """A page of devices in id order, as {column: value} (DEVICE_COLUMNS) with the names a list
    shows beside them: `profile_name`, `end_user` (the username), `reseller_id`,
    `reseller_name`. Reads by primary key: the devices, then their profiles', users' and
    uploads' names, one query each for the whole page; no ORM object is built. Devices gone
    meanwhile are left out."""
    keys = [column.key for column in DEVICE_COLUMNS]
    found = [
        dict(zip(keys, row, strict=True))  # (Row._asdict costs ten times more per row)
        for where in id_filters(session, Device.id, sorted(set(device_ids)))
        for row in session.execute(
            select(*DEVICE_COLUMNS).outerjoin(DeviceSync).where(where).order_by(Device.id)
        )
    ]

    def names(stmt: Select, column: Any, key: str) -> dict[int, Any]:
        keys = sorted({value for d in found if (value := d[key]) is not None})
        return {
            row[0]: row[1:]
            for where in id_filters(session, column, keys)
            for row in session.execute(stmt.where(where))
        }

    profiles = names(select(Profile.id, Profile.name), Profile.id, "profile_id")
    users = names(select(EndUser.id, EndUser.username), EndUser.id, "end_user_id")
    resellers = names(
        select(Upload.id, Upload.reseller_id, Reseller.name).outerjoin(
            Reseller, Reseller.id == Upload.reseller_id
        ),
        Upload.id,
        "upload_id",
    )
    for d in found:
        d["profile_name"] = profiles.get(d["profile_id"], (None,))[0]
        d["end_user"] = users.get(d["end_user_id"], (None,))[0]
        d["reseller_id"], d["reseller_name"] = resellers.get(d["upload_id"], (None, None))
    return found


def get_device_row(session: Session, device_id: int) -> dict[str, Any]:
    """One device as device_rows reads it. Raises NotFound."""
    rows = device_rows(session, [device_id])
    if not rows:
        raise NotFound("No such device.")
    return rows[0]


def check_still_in(session: Session, device_ids: Sequence[int], profile_id: int) -> None:
    """Refuse a selection made on a profile's page when some of its devices have left the
    profile since (another admin moved or deleted them), naming them.

    Raises ValidationError (empty selection) or Conflict.
    """
    ids = _selection(device_ids)
    moved: list[str] = []
    found = 0
    for where in id_filters(session, Device.id, ids):
        rows = session.execute(
            select(Device.id, Device.profile_id, Device.imei, Device.serial).where(where)
        ).all()
        found += len(rows)
        moved.extend(r.imei or r.serial or str(r.id) for r in rows if r.profile_id != profile_id)
    gone = len(ids) - found
    if not moved and not gone:
        return
    parts = []
    if moved:
        shown = ", ".join(moved[:10]) + (
            f" and {len(moved) - 10:,} more" if len(moved) > 10 else ""
        )
        parts.append(f"{len(moved):,} of the selected devices were moved meanwhile: {shown}")
    if gone:
        parts.append(f"{gone:,} were deleted meanwhile")
    raise Conflict("; ".join(parts) + ". Reload the page and select again.")


INVENTORY_HEADER = ("IMEI", "Serial", "Model", "User", "Attributes", "Registration", "Sync state")
ATTRIBUTE_SUMMARY_MAX = 2000


def inventory_rows(session: Session, profile_id: int) -> Iterator[tuple]:
    """Download Existing Inventory: one tuple per device of the profile (INVENTORY_HEADER),
    read by keyset in chunks so memory stays flat however many there are. Never the password.
    Ends its read transaction when done."""
    stmt = (
        select(
            Device.id,
            Device.imei,
            Device.serial,
            Device.model,
            EndUser.username,
            Device.attributes,
            Device.registered_at,
            JOINED_SYNC_STATE,
        )
        .outerjoin(EndUser, EndUser.id == Device.end_user_id)
        .outerjoin(DeviceSync)
        .where(Device.profile_id == profile_id)
    )
    for r in csvexport.keyset_chunks(session, stmt, Device.id):
        attributes = json.dumps(r.attributes, sort_keys=True) if r.attributes else ""
        registered = (
            f"registered {csvexport.safe_cell(r.registered_at)}"
            if r.registered_at
            else "not registered"
        )
        yield (r.imei, r.serial, r.model, r.username, attributes, registered, r.sync_state)
    session.rollback()


def inventory_download(session: Session, profile_id: int) -> tuple[str, Iterator[tuple]]:
    """Download Existing Inventory, as the profile page and the API give it: the file name
    (inventory-<profile name>-<date>.csv) and the rows (`inventory_rows`, INVENTORY_HEADER).
    Raises NotFound at once (before any row is read)."""
    profile = get_profile_or_404(session, profile_id)
    name = csvexport.dated_filename(f"inventory-{profile.name}")
    return name, inventory_rows(session, profile.id)


def attribute_summary(session: Session, device_ids: Sequence[int]) -> list[dict[str, str]]:
    """[{"key", "value"}] for Edit: every attribute of the selection (of its first
    ATTRIBUTE_SUMMARY_MAX devices), with the value when they all share it, else ""."""
    values: dict[str, set[str]] = {}
    ids = list(device_ids)[:ATTRIBUTE_SUMMARY_MAX]
    for chunk in chunks(ids, CHUNK):
        for (attributes,) in session.execute(select(Device.attributes).where(Device.id.in_(chunk))):
            for key, value in (attributes or {}).items():
                values.setdefault(key, set()).add(json.dumps(value))
    rows = []
    for key in sorted(values):
        shared = values[key]
        value = json.loads(next(iter(shared))) if len(shared) == 1 else ""
        rows.append({"key": key, "value": "" if value == "" else str(value)})
    return rows


def get_device_or_404(session: Session, device_id: int) -> Device:
    """Raises NotFound."""
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("No such device.")
    return device


def move_devices(
    session: Session,
    device_ids: Sequence[int],
    target_profile_id: int,
    actor: Any,
    operation: Operation | None = None,
    placed: Mapping[str, Any] | None = None,
) -> Operation:
    """Move Devices: assign approved devices to a KME profile (or, for the Default Profile,
    unassign them in KME: kind "device.unassign", else "device.move").

    `placed`: more values the moved devices take (a routing rule's `rule_id`, `rule_version`,
    `rule_note`, `end_user_id`); without it a moved device no longer says a rule placed it.

    Devices already in the target are left alone. The rest are marked pending with the new
    profile and get outbox rows of at most KNOX_BATCH_SIZE devices under one operation
    ("Move 20,000 devices to Sales"): a new one whose push is enqueued after the commit, or
    `operation` (a move started earlier, whose job runs this: its label and total become
    what moves now; its job hands the changes to the push). Records one audit event of the
    kind. Flushes.
    Raises ValidationError (field "device_ids" or "profile_id"), NotFound (a device is gone),
    ValidationError (field "device_ids") also when a device is pending approval or
    self-maintained; Conflict when all are already there.
    """
    ids = _selection(device_ids)
    target = session.get(Profile, target_profile_id) if target_profile_id is not None else None
    if target is None or target.kind not in KME_KINDS:
        raise ValidationError(
            "Choose a Samsung Knox Mobile Enrollment profile.", field="profile_id"
        )
    rows = _rows(session, ids, Device.registered_at.is_not(None))
    _require_approved(rows)
    local_only = sum(1 for r in rows if r[3] == ProfileKind.SELF_MAINTAINED)
    if local_only:
        raise ValidationError(
            f"{local_only:,} of the selected devices belong to a self-maintained profile "
            "and are not in Knox.",
            field="device_ids",
        )
    moving = [r[0] for r in rows if r[2] != target.id]
    if not moving:
        raise Conflict(f"The selected devices are already in {target.name}.")
    from_profiles = Counter(r[2] for r in rows if r[2] != target.id)

    unassign = target.kind == DEFAULT_KIND
    kind = ChangeKind.DEVICE_UNASSIGN if unassign else ChangeKind.DEVICE_MOVE
    n = len(moving)
    label = (
        f"Unassign {count(n, 'device')}"
        if unassign
        else f"Move {count(n, 'device')} to {target.name}"
    )
    if operation is None:
        operation = operations.start_operation(session, kind, label, n, actor)
    else:
        operation.label, operation.total = label[:200], n
    values = dict(placed) if placed else {"rule_id": None, "rule_version": None, "rule_note": None}
    outbox.mark_devices_pending(session, moving, profile_id=target.id, **values)
    shift = counts.Shift()
    for (from_id, registered), alike in Counter((r[2], bool(r[4])) for r in rows).items():
        shift.move(from_id, target.id, registered, alike)
    counts.apply(session, shift)
    changes = outbox.record_device_change(
        session, kind, moving, operation, actor, profile_id=target.id
    )
    rule_id = values.get("rule_id")
    history.record_by_change(
        session,
        DeviceEventKind.UNASSIGNED if unassign else DeviceEventKind.MOVED,
        changes,
        actor,
        lambda source: {"from": source, "to": target.id, "rule_id": rule_id},
        group={r[0]: r[2] for r in rows},
        operation_id=operation.id,
    )
    audit.record(
        session,
        actor,
        kind,
        "profile",
        target.id,
        {
            "devices": n,
            "to_profile": target.name,
            "from_profiles": {str(pid): count for pid, count in from_profiles.items()},
            "already_there": len(ids) - n,
            "device_ids": ids_summary(moving),
            "operation_id": operation.id,
        },
    )
    session.flush()
    return operation


def unassign_devices(session: Session, device_ids: Sequence[int], actor: Any) -> Operation:
    """Unassign: move devices back to the Samsung KME Default Profile (see move_devices)."""
    default = ensure_default_profile(session)
    return move_devices(session, device_ids, default.id, actor)


def delete_devices(session: Session, device_ids: Sequence[int], actor: Any) -> Operation | None:
    """Delete devices from kmeweb and from KME.

    The local rows are deleted; what KME knows each device by (KME id, else IMEI, else serial)
    goes into device.delete outbox rows under one operation, which is returned. Devices of
    self-maintained profiles are not in Knox: they are only deleted locally (None is returned
    when the selection holds nothing else). Records one audit "device.delete". Flushes.
    Raises ValidationError (field "device_ids") or NotFound (a device is gone).
    """
    ids = _selection(device_ids)
    rows = _rows(session, ids, Device.kme_device_id, Device.imei, Device.serial)
    identifiers = [
        r[4] or r[5] or r[6]
        for r in rows
        if r[3] != ProfileKind.SELF_MAINTAINED and (r[4] or r[5] or r[6])
    ]
    operation = None
    if identifiers:
        n = len(identifiers)
        operation = operations.start_operation(
            session, ChangeKind.DEVICE_DELETE, f"Delete {count(n, 'device')}", n, actor
        )
        changes = outbox.record_device_delete(session, identifiers, operation, actor)
    else:
        changes = []
    carried = {
        identifier: change.id for change in changes for identifier in change.payload["identifiers"]
    }
    history.record_each(
        session,
        DeviceEventKind.DELETED,
        (
            (
                r[0],
                {"identifier": r[5] or r[6] or r[4], "in_knox": (r[4] or r[5] or r[6]) in carried},
                carried.get(r[4] or r[5] or r[6]) if r[3] != ProfileKind.SELF_MAINTAINED else None,
            )
            for r in rows
        ),
        actor,
        operation.id if operation else None,
    )
    shift = counts.removing(session, ids)
    for where in id_filters(session, Device.id, ids):
        session.execute(delete(Device).where(where).execution_options(synchronize_session=False))
    counts.apply(session, shift)
    audit.record(
        session,
        actor,
        "device.delete",
        "device",
        None,
        {
            "devices": len(ids),
            "in_knox": len(identifiers),
            "device_ids": ids_summary(ids),
            "identifiers": identifiers[:20],
            "operation_id": operation.id if operation else None,
        },
    )
    session.flush()
    return operation


@dataclass
class _Local:
    """Devices changed locally only (self-maintained), as history.record_by_change reads a
    change: no change carries them to KME."""

    device_ids: list[int]
    id: int | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return {"device_ids": self.device_ids}


def set_device_user(
    session: Session,
    device_ids: Sequence[int],
    end_user_id: int | None,
    password: str | None,
    actor: Any,
) -> Operation | None:
    """Set the user (and enrollment password) KME hands to the agent for these devices.

    `end_user_id` None clears user and password; otherwise a non-empty `password` replaces the
    stored one (encrypted with kmeweb.crypto) and None or "" keeps it. Devices in KME profiles
    are marked pending with "device.user" outbox rows (the push sends them through
    assignProfile) under the returned operation; devices of self-maintained profiles change
    locally only (None is returned when there are no others). Records one audit "device.user"
    (never the password). Flushes.
    Raises ValidationError (fields "device_ids", "end_user_id", "password"; "device_ids" also
    for a device pending approval or in the Default Profile, which has no KME profile to carry
    a user) or NotFound.
    """
    ids = _selection(device_ids)
    username = None
    if end_user_id is not None:
        username = session.scalar(select(EndUser.username).where(EndUser.id == end_user_id))
        if username is None:
            raise ValidationError("No such user.", field="end_user_id")
    if password and len(password.encode()) > PASSWORD_MAX_BYTES:
        raise ValidationError(
            f"The password can have at most {PASSWORD_MAX_BYTES} bytes.", field="password"
        )
    rows = _rows(session, ids, Device.end_user_id)
    _require_approved(rows)
    in_default = sum(1 for r in rows if r[3] == DEFAULT_KIND)
    if in_default:
        raise ValidationError(
            f"{in_default:,} of the selected devices are in the Samsung KME Default Profile; "
            "move them to a profile first.",
            field="device_ids",
        )

    values: dict[str, Any] = {"end_user_id": end_user_id}
    if end_user_id is None:
        values["enrollment_password_enc"] = None
    elif password:
        values["enrollment_password_enc"] = crypto.encrypt(password)
    in_knox = [r[0] for r in rows if r[3] != ProfileKind.SELF_MAINTAINED]
    local = [r[0] for r in rows if r[3] == ProfileKind.SELF_MAINTAINED]
    old_users = {r[0]: r[4] for r in rows}
    password_changed = "enrollment_password_enc" in values and end_user_id is not None
    operation = None
    if in_knox:
        n = len(in_knox)
        label = (
            f"Set user of {count(n, 'device')}"
            if username
            else f"Clear user of {count(n, 'device')}"
        )
        operation = operations.start_operation(session, ChangeKind.DEVICE_USER, label, n, actor)
        outbox.mark_devices_pending(session, in_knox, **values)
        changes = outbox.record_device_change(
            session, ChangeKind.DEVICE_USER, in_knox, operation, actor
        )
        history.record_by_change(
            session,
            DeviceEventKind.USER,
            changes,
            actor,
            lambda old: {"from": old, "to": end_user_id, "password": password_changed},
            group=old_users,
            operation_id=operation.id,
        )
    if local:
        history.record_by_change(
            session,
            DeviceEventKind.USER,
            [_Local(local)],
            actor,
            lambda old: {"from": old, "to": end_user_id, "password": password_changed},
            group=old_users,
        )
    for where in id_filters(session, Device.id, local):
        session.execute(
            update(Device)
            .where(where)
            .values(**values, version=Device.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    audit.record(
        session,
        actor,
        "device.user",
        "device",
        None,
        {
            "devices": len(ids),
            "user": username,
            "end_user_id": end_user_id,
            "password_changed": "enrollment_password_enc" in values,
            "device_ids": ids_summary(ids),
            "operation_id": operation.id if operation else None,
        },
    )
    session.flush()
    return operation


def validate_attributes(raw: Any) -> dict[str, Any]:
    """Custom attributes as a device keeps them: valid names, trimmed values, empty ones
    dropped. Raises ValidationError (field "attributes" or "attributes.<name>")."""
    return _attributes(raw)


def _attributes(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValidationError("Invalid attributes.", field="attributes")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).strip()
        field = f"attributes.{name}"
        if not _ATTRIBUTE_KEY.match(name):
            raise ValidationError(
                "A name has 1 to 64 letters, digits, spaces, _ . or -.", field=field
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # an empty value removes the attribute
        if isinstance(value, str):
            value = value.strip()
            if len(value) > 500:
                raise ValidationError("At most 500 characters.", field=field)
        elif not isinstance(value, bool | int | float):
            raise ValidationError("Enter text, a number or yes/no.", field=field)
        out[name] = value
    if len(out) > ATTRIBUTES_MAX:
        raise ValidationError(f"At most {ATTRIBUTES_MAX} attributes.", field="attributes")
    return out


def update_attributes(
    session: Session,
    device_id: int,
    attributes: Mapping[str, Any],
    expected_version: int,
    actor: Any,
) -> Device:
    """Replace a device's custom attributes (local only, KME has no such field).

    Empty values drop the attribute. Records audit "device.attributes". Flushes.
    Raises NotFound, ValidationError (field "attributes.<name>") or Conflict (stale version).
    """
    device = get_device_or_404(session, device_id)
    try:
        expected = int(expected_version)
    except (TypeError, ValueError):
        raise Conflict(STALE_MESSAGE) from None
    if device.version != expected:
        raise Conflict(STALE_MESSAGE)
    new = _attributes(attributes)
    old = dict(device.attributes or {})
    if new == old:
        return device
    device.attributes = new
    try:
        session.flush()
    except StaleDataError as exc:
        raise Conflict(STALE_MESSAGE) from exc
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    history.record_events(
        session,
        DeviceEventKind.ATTRIBUTES,
        [device.id],
        actor,
        {"changed": {k: [old.get(k), new.get(k)] for k in changed}},
    )
    audit.record(
        session,
        actor,
        "device.attributes",
        "device",
        device.id,
        {"device": device.identifier, "changed": changed},
    )
    session.flush()
    return device


def _write_attributes(session: Session, updates: list[dict[str, Any]]) -> None:
    """One executemany of {"b_id", "b_attributes"} rows, versions bumped."""
    if not updates:
        return
    table = Device.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            attributes=bindparam("b_attributes"),
            version=table.c.version + 1,
            updated_at=utcnow(),
        ),
        updates,
    )


def merge_attributes(session: Session, device_ids: Sequence[int], values: Mapping[str, Any]) -> int:
    """Set the attributes of `values` (already valid: validate_attributes) on each device,
    keeping its others, where that changes something; a device keeps at most ATTRIBUTES_MAX
    (the extra ones of `values` are left out for it). Local only, no audit: the caller (a
    routing rule placing devices) records what it did. Flushes. Returns how many changed."""
    if not values:
        return 0
    updates: list[dict[str, Any]] = []
    for where in id_filters(session, Device.id, list(device_ids)):
        for device_id, attributes in session.execute(
            select(Device.id, Device.attributes).where(where)
        ):
            old = dict(attributes or {})
            new = {**old, **values}
            if len(new) > ATTRIBUTES_MAX:
                new = {**old, **{k: v for k, v in values.items() if k in old}}
            if new != old:
                updates.append({"b_id": device_id, "b_attributes": new})
    _write_attributes(session, updates)
    return len(updates)


def edit_attributes(
    session: Session, device_ids: Sequence[int], changes: Mapping[str, Any], actor: Any
) -> int:
    """Edit on a selection: set each attribute of `changes` on every selected device; a None
    value removes the attribute. Local only (KME has no such field).

    Validates every name and value and every device's resulting set first, then writes
    (one executemany, versions bumped). Records one audit "device.attributes". Flushes.
    Returns how many devices changed.
    Raises ValidationError (fields "device_ids", "attributes", "attributes.<name>") or NotFound.
    """
    ids = _selection(device_ids)
    if not changes:
        raise ValidationError("Add, change or remove at least one attribute.", field="attributes")
    sets = _attributes({k: v for k, v in changes.items() if v is not None})
    removes = set()
    for key, value in changes.items():
        if value is None:
            name = str(key).strip()
            if not _ATTRIBUTE_KEY.match(name):
                raise ValidationError(
                    "A name has 1 to 64 letters, digits, spaces, _ . or -.",
                    field=f"attributes.{name}",
                )
            removes.add(name)
    _rows(session, ids)  # NotFound when some are gone
    updates: list[dict[str, Any]] = []
    edits: list[tuple[int, dict[str, Any]]] = []
    for where in id_filters(session, Device.id, ids):
        for device_id, attributes in session.execute(
            select(Device.id, Device.attributes).where(where)
        ):
            old = dict(attributes or {})
            new = {k: v for k, v in {**old, **sets}.items() if k not in removes}
            if len(new) > ATTRIBUTES_MAX:
                raise ValidationError(
                    f"A device can have at most {ATTRIBUTES_MAX} attributes.", field="attributes"
                )
            if new != old:
                updates.append({"b_id": device_id, "b_attributes": new})
                keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                edits.append((device_id, {"changed": {k: [old.get(k), new.get(k)] for k in keys}}))
    _write_attributes(session, updates)
    history.record_each(
        session, DeviceEventKind.ATTRIBUTES, ((i, d, None) for i, d in edits), actor
    )
    audit.record(
        session,
        actor,
        "device.attributes",
        "device",
        ids[0] if len(ids) == 1 else None,
        {
            "devices": len(updates),
            "set": sorted(sets),
            "removed": sorted(removes),
            "device_ids": ids_summary([u["b_id"] for u in updates]),
        },
    )
    session.flush()
    return len(updates)


def resolve_selection(
    session: Session, selection: DeviceSelection, check: bool = True
) -> list[int]:
    """The ids of the devices `selection` names: "all N matching" is read from the profile now;
    explicit ids (ticked on an earlier view of the page) must all still be in the profile.

    `check=False` only shows a selection (a dialog as it opens): explicit ids are returned
    unchecked, since the action checks them again. Explicit ids without a profile (the API's)
    are returned as they are: each action refuses ids that name no device.
    Raises ValidationError (field "device_ids": none selected) or Conflict (some left the
    profile meanwhile, named); an empty "all matching" is refused by the action's service.
    """
    if selection.all_matching:
        if selection.profile_id is None:
            raise ValidationError("Choose the profile whose devices match.", field="profile_id")
        flt = selection.filter
        return select_device_ids(
            session,
            selection.profile_id,
            flt.q or None,
            flt.registration or None,
            flt.sync or None,
            flt.rule_id,
            flt.kme or None,
        )
    if check and selection.profile_id is not None:
        check_still_in(session, selection.ids, selection.profile_id)
    return list(selection.ids)


def resolve_expected(
    session: Session, selection: DeviceSelection, expected_count: int | None = None
) -> list[int]:
    """resolve_selection, guarded by the count the caller expects (a script sends how many
    devices it means to act on): when the selection names another number of devices now,
    nothing is done. None expects any number (the pages, where the admin saw the count).

    Raises NotFound ("all matching" in a profile that does not exist), Conflict with code
    "count_mismatch" (field "expected_count"), and what resolve_selection raises.
    """
    if selection.all_matching and session.get(Profile, selection.profile_id) is None:
        raise NotFound("No such profile.")
    ids = resolve_selection(session, selection)
    _check_count(len(ids), expected_count)
    return ids


def _check_count(n: int, expected_count: int | None) -> None:
    """The expected-count guard: Conflict "count_mismatch" unless `n` is what was expected."""
    if expected_count is not None and n != expected_count:
        raise Conflict(
            f"{count(n, 'device')} {'matches' if n == 1 else 'match'} now, not the "
            f"{expected_count:,} the request expected; nothing was changed.",
            field="expected_count",
            code="count_mismatch",
        )


def count_matching(session: Session, selection: DeviceSelection) -> int:
    """How many devices an "all matching" selection names now: a count, no id list (on
    PostgreSQL an index-only scan of (profile_id, id) for an unsearched profile).
    Raises NotFound (no such profile) or ValidationError (no profile named)."""
    if selection.profile_id is None:
        raise ValidationError("Choose the profile whose devices match.", field="profile_id")
    if session.get(Profile, selection.profile_id) is None:
        raise NotFound("No such profile.")
    return session.scalar(selection_filtered(select(func.count(Device.id)), selection)) or 0


def first_identifiers(session: Session, device_ids: Sequence[int], limit: int = 3) -> list[str]:
    """What a dialog names a selection by: the IMEI (else serial) of its first `limit`
    devices, in selection order; devices gone meanwhile are left out."""
    first = list(device_ids[:limit])
    if not first:
        return []
    rows = session.execute(
        select(Device.id, func.coalesce(Device.imei, Device.serial)).where(Device.id.in_(first))
    ).all()
    names = {device_id: name or str(device_id) for device_id, name in rows}
    return [names[i] for i in first if i in names]


def move_selection(
    session: Session,
    selection: DeviceSelection,
    target_profile_id: Any,
    actor: Any,
    expected_count: int | None = None,
    later: bool = False,
) -> Operation:
    """Move Devices from a profile's page (or the API): the selection goes to another profile,
    a KME one (`target_profile_id` as a request carries it; anything not an id is no profile).

    See move_devices for what it writes. `later=True` (the API's move of a filter): an "all
    matching" selection is checked and counted now and moved by its job
    (start_selection_move); explicit ids move now either way. Flushes.
    Raises what resolve_expected and move_devices raise, and ValidationError (field
    "profile_id") for the profile the devices are selected in and for the Samsung KME Default
    Profile: sending devices back there is Unassign, never a Move chosen from a list.
    """
    if later and selection.all_matching:
        return start_selection_move(session, selection, target_profile_id, actor, expected_count)
    ids = resolve_expected(session, selection, expected_count)
    target_id = _move_target_id(session, selection, target_profile_id)
    return move_devices(session, ids, target_id, actor)


def _move_target_id(session: Session, selection: DeviceSelection, target_profile_id: Any) -> Any:
    """The target's id, refusing the selection's own profile and the Default Profile."""
    target_id = parse_id(target_profile_id)
    if selection.profile_id is not None and target_id == selection.profile_id:
        raise ValidationError("Choose another profile.", field="profile_id")
    target = session.get(Profile, target_id) if target_id is not None else None
    if target is not None and target.kind == DEFAULT_KIND:
        raise ValidationError(
            f"Devices go back to the {DEFAULT_PROFILE_NAME} with Unassign, not Move.",
            field="profile_id",
        )
    return target_id


def start_selection_move(
    session: Session,
    selection: DeviceSelection,
    target_profile_id: Any,
    actor: Any,
    expected_count: int | None = None,
) -> Operation:
    """Move "all N matching" later: check now what is cheap to check, with move_selection's
    rules (the expected count, on a count; the target a KME profile, not the selection's own,
    not the Default Profile; a self-maintained profile's devices are not in Knox; an empty
    selection), then add the queued operation ("Move N devices to X", total N, kind
    device.move.selection) with the selection, target and actor in its `params`, and record
    audit "device.move.start". Its job (kmeweb.devices.jobs.move_selection_job, enqueued after
    the commit) runs run_selection_move. Flushes.
    Raises NotFound (no such profile), Conflict ("count_mismatch") and ValidationError (fields
    "profile_id", "device_ids").
    """
    n = count_matching(session, selection)
    _check_count(n, expected_count)
    target_id = _move_target_id(session, selection, target_profile_id)
    target = session.get(Profile, target_id) if target_id is not None else None
    if target is None or target.kind not in KME_KINDS:
        raise ValidationError(
            "Choose a Samsung Knox Mobile Enrollment profile.", field="profile_id"
        )
    source = session.get(Profile, selection.profile_id)
    if source.kind == ProfileKind.SELF_MAINTAINED:
        raise ValidationError(
            f"{n:,} of the selected devices belong to a self-maintained profile "
            "and are not in Knox.",
            field="device_ids",
        )
    if not n:
        raise ValidationError("Select at least one device.", field="device_ids")
    params = {
        "profile_id": selection.profile_id,
        "filter": selection.filter.params(),
        "target_profile_id": target.id,
        "expected_count": expected_count,
        "actor": actor if isinstance(actor, str) else actor.email,  # as the job's audit names it
    }
    operation = operations.create_operation(
        session,
        OperationKind.DEVICE_MOVE_SELECTION,
        f"Move {count(n, 'device')} to {target.name}",
        n,
        actor,
    )
    operation.params = params
    audit.record(
        session,
        actor,
        "device.move.start",
        "profile",
        target.id,
        {
            "devices": n,
            "to_profile": target.name,
            "from_profile": source.name,
            "filter": params["filter"],
            "operation_id": operation.id,
        },
    )
    session.flush()
    dispatch.after_commit(session, operation)
    return operation


def operation_selection(
    session: Session, operation: Operation
) -> tuple[DeviceSelection, list[int]]:
    """The "all N matching" selection an operation's params name, and its devices now (a job
    resolves it when it runs). Raises NotFound when the profile is gone."""
    params = operation.params or {}
    selection = DeviceSelection(
        params.get("profile_id"),
        all_matching=True,
        filter=DeviceFilter.from_params(params.get("filter")),
    )
    if session.get(Profile, selection.profile_id) is None:
        raise NotFound("The profile the devices were selected in no longer exists.")
    return selection, resolve_selection(session, selection)


def run_selection_move(session: Session, operation: Operation, actor: Any) -> int:
    """The move start_selection_move accepted, as its job runs it: the selection of the
    operation's `params` is resolved NOW and moved by move_devices under `operation` (same
    rules, same writes: devices pending with the target, outbox rows, audit "device.move").

    Devices that changed since the request are taken as they are now: the expected-count
    guard held when the request was accepted, and the move takes what matches when it runs
    (a device that left the profile meanwhile stays where it went; the operation's total
    becomes what moves). Returns how many devices moved; 0 when the operation already has its
    outbox changes (a second run: nothing moves twice). Flushes.
    Raises what move_devices raises (e.g. Conflict when none is left to move), and
    ValidationError when nothing matches any more.
    """
    if session.scalar(select(Change.id).where(Change.operation_id == operation.id).limit(1)):
        return 0
    params = operation.params or {}
    selection, ids = operation_selection(session, operation)
    target_id = _move_target_id(session, selection, params.get("target_profile_id"))
    move_devices(session, ids, target_id, actor, operation=operation)
    return operation.total


def unassign_selection(
    session: Session,
    selection: DeviceSelection,
    actor: Any,
    expected_count: int | None = None,
) -> Operation:
    """Unassign from a profile's page (or the API): the selection goes back to the Samsung KME
    Default Profile (unassign_devices). Flushes.
    Raises what resolve_expected and move_devices raise."""
    ids = resolve_expected(session, selection, expected_count)
    return unassign_devices(session, ids, actor)


DELETE_RULE = "Devices are deleted from the Samsung KME Default Profile; unassign first."


def check_delete_from(profile: Profile) -> None:
    """Devices are deleted from the Samsung KME Default Profile only; elsewhere they are
    unassigned first. Raises Conflict."""
    if profile.kind != DEFAULT_KIND:
        raise Conflict(DELETE_RULE)


def check_delete_devices(session: Session, device_ids: Sequence[int]) -> None:
    """check_delete_from for ids selected anywhere (the API's): every one must be in the
    Samsung KME Default Profile. Raises ValidationError (none), NotFound (some are gone) or
    Conflict (how many are elsewhere)."""
    rows = _rows(session, _selection(device_ids))
    elsewhere = sum(1 for r in rows if r[3] != DEFAULT_KIND)
    if elsewhere:
        raise Conflict(
            f"{elsewhere:,} of the selected devices are not in the Samsung KME Default Profile. "
            + DELETE_RULE
        )


def delete_selection(
    session: Session,
    selection: DeviceSelection,
    actor: Any,
    expected_count: int | None = None,
) -> tuple[Operation | None, int]:
    """Delete (Default Profile): the selected devices, from kmeweb and KME (delete_devices).
    Flushes. Returns the operation (None when no device was in Knox) and how many went.
    Raises NotFound (no such profile), Conflict (check_delete_from, or check_delete_devices
    for ids selected without a profile), and what resolve_expected and delete_devices raise.
    """
    if selection.profile_id is not None:
        profile = session.get(Profile, selection.profile_id)
        if profile is None:
            raise NotFound("No such profile.")
        check_delete_from(profile)
    ids = resolve_expected(session, selection, expected_count)
    if selection.profile_id is None:
        check_delete_devices(session, ids)
    return delete_devices(session, ids, actor), len(ids)


REMOVE_RULE = (
    "Remove is for Self-Maintained profiles: devices of a Knox profile are unassigned, "
    "then deleted from the Samsung KME Default Profile."
)


def remove_selection(
    session: Session,
    selection: DeviceSelection,
    actor: Any,
    expected_count: int | None = None,
) -> int:
    """Remove (Self-Maintained profile): the selected devices leave kmeweb. They are not in
    Knox, so nothing goes to KME; importing them again brings them back. Records one audit
    "device.remove" per profile (how many, their first identifiers). Flushes. Returns how
    many were removed. Ids selected without a profile must all be in Self-Maintained
    profiles.
    Raises NotFound (no such profile), Conflict (not a self-maintained profile), and what
    resolve_expected raises; ValidationError (field "device_ids") when nothing is selected.
    """
    if selection.profile_id is not None:
        profile = session.get(Profile, selection.profile_id)
        if profile is None:
            raise NotFound("No such profile.")
        if profile.kind != ProfileKind.SELF_MAINTAINED:
            raise Conflict(REMOVE_RULE)
    ids = _selection(resolve_expected(session, selection, expected_count))
    rows = _rows(session, ids, Device.imei, Device.serial)
    elsewhere = sum(1 for r in rows if r[3] != ProfileKind.SELF_MAINTAINED)
    if elsewhere:
        raise Conflict(
            f"{elsewhere:,} of the selected devices are not in a Self-Maintained profile. "
            + REMOVE_RULE
        )
    by_profile: dict[int, list[tuple]] = {}
    for r in rows:
        by_profile.setdefault(r[2], []).append(r)
    for profile_id, group in by_profile.items():
        _remove(session, session.get(Profile, profile_id), group, actor)
    session.flush()
    return len(ids)


def _remove(session: Session, profile: Any, rows: list[tuple], actor: Any) -> None:
    """Delete a self-maintained profile's devices (rows of _rows with imei, serial) and
    record "device.remove" on the profile."""
    ids = [r[0] for r in rows]
    history.record_each(
        session,
        DeviceEventKind.DELETED,
        ((r[0], {"identifier": r[4] or r[5], "in_knox": False}, None) for r in rows),
        actor,
    )
    shift = counts.removing(session, ids)
    for where in id_filters(session, Device.id, ids):
        session.execute(
            delete(Device)
            .where(where, Device.profile_id == profile.id)
            .execution_options(synchronize_session=False)
        )
    counts.apply(session, shift)
    audit.record(
        session,
        actor,
        "device.remove",
        "profile",
        profile.id,
        {
            "profile": profile.name,
            "devices": len(ids),
            "device_ids": ids_summary(ids),
            "identifiers": [r[4] or r[5] for r in rows[:20]],
        },
    )


def set_selection_user(
    session: Session,
    selection: DeviceSelection,
    end_user_id: int | None,
    password: str | None,
    actor: Any,
    expected_count: int | None = None,
) -> tuple[Operation | None, int]:
    """set_device_user on a selection. Flushes. Returns the operation (None when no device is
    in Knox) and how many devices the selection holds.
    Raises what resolve_expected and set_device_user raise."""
    ids = resolve_expected(session, selection, expected_count)
    return set_device_user(session, ids, end_user_id, password, actor), len(ids)


def set_selection_attributes(
    session: Session,
    selection: DeviceSelection,
    changes: Mapping[str, Any],
    actor: Any,
    expected_count: int | None = None,
) -> int:
    """edit_attributes on a selection: each key of `changes` set to its value, a None value
    removes it. Flushes. Returns how many devices changed.
    Raises what resolve_expected and edit_attributes raise, with the fields named after
    `changes` ("changes", "changes.<name>")."""
    ids = resolve_expected(session, selection, expected_count)
    try:
        return edit_attributes(session, ids, changes, actor)
    except ValidationError as err:
        field = err.field
        if field and field.split(".", 1)[0] == "attributes":
            field = "changes" + field[len("attributes") :]
        raise ValidationError(err.message, field=field) from None


def attribute_changes(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The changes of Edit attributes from its rows ({"key", "value", "remove"}): a removed key
    maps to None, a value sets it; a row without a key or with a blank value changes nothing.

    Raises ValidationError (field "rows.<index>.key") for a key given twice.
    """
    changes: dict[str, Any] = {}
    for index, row in enumerate(rows):
        key = (row.get("key") or "").strip()
        if not key:
            continue
        if key in changes:
            raise ValidationError(f"{key!r} appears twice.", field=f"rows.{index}.key")
        if row.get("remove"):
            changes[key] = None
        elif (row.get("value") or "").strip():
            changes[key] = row.get("value")
    return changes


def edit_selected_attributes(
    session: Session, selection: DeviceSelection, rows: Sequence[Mapping[str, Any]], actor: Any
) -> int:
    """Edit attributes of a selection from the dialog's rows (attribute_changes, then
    edit_attributes). Flushes. Returns how many devices changed.

    Raises what resolve_selection raises, and ValidationError naming the row and column at
    fault ("rows.<index>.key" or ".value"), else the form (no field).
    """
    ids = resolve_selection(session, selection)
    changes = attribute_changes(rows)
    try:
        return edit_attributes(session, ids, changes, actor)
    except ValidationError as err:
        raise _row_error(err, rows) from None


def _row_error(err: ValidationError, rows: Sequence[Mapping[str, Any]]) -> ValidationError:
    """edit_attributes names "attributes.<key>": point at that key's row instead."""
    if err.field and err.field.startswith("attributes."):
        key = err.field.split(".", 1)[1]
        for index, row in enumerate(rows):
            if (row.get("key") or "").strip() == key:
                column = "key" if "name" in err.message else "value"
                return ValidationError(err.message, field=f"rows.{index}.{column}")
    return ValidationError(err.message)
