"""Devices changed in the Samsung portal behind kmeweb's back, settled by an admin.

The pull (kmeweb.sync.pull) flags a device when KME holds another approval, profile or user
than kmeweb and kmeweb did not make that change: `portal_changed_at` is when it saw it,
`portal_previous` kmeweb's values before it (the first change's, kept when the portal changes
the device again), `kme_seen_*` what KME holds. Under the integration's portal policy ADOPT
kmeweb took Samsung's values; under OURS it kept its own and pushed them again. Either way the
flag stays until an admin settles it here:

- **Send ours again** (`send_ours_again`): kmeweb's values go to KME through the outbox. A
  device that took Samsung's values (ADOPT) gets kmeweb's old ones back from
  `portal_previous` first; a device that kept its own (OURS, or changed by an admin since) is
  pushed as it is. KME cannot take back an approval: a device the portal approved while it
  waited here keeps Samsung's approval and stays flagged (Take Samsung's settles it).
- **Take Samsung's** (`take_samsungs`): KME's values (`kme_seen_*`) become kmeweb's own;
  nothing is pushed.

Both clear the flag of the devices they settle and record one audit event. The selection
variants act on explicit ids or "all N matching" the device table's filter (typically
"Changed in Samsung portal"), guarded by the count the admin saw; a large "all matching" runs
as an operation job (kmeweb.devices.jobs.portal_selection_job).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, func, select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.devices.models import Approval, Device, DeviceSync
from kmeweb.devices.selection import DeviceSelection
from kmeweb.devices.services import (
    _check_count,
    _selection,
    count_matching,
    ids_summary,
    operation_selection,
    resolve_expected,
    selection_filtered,
)
from kmeweb.directory.models import EndUser
from kmeweb.errors import ValidationError
from kmeweb.extensions import utcnow
from kmeweb.operations import dispatch
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation, OperationKind
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import ChangeKind, SyncState
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sqlutil import id_filters
from kmeweb.text import count

#: An "all matching" selection of more devices than this is settled by a job, not the request.
SELECTION_JOB_MIN = 5_000
SEND_OURS = "ours"
TAKE_SAMSUNGS = "samsungs"
ACTIONS = {SEND_OURS: "Send ours again", TAKE_SAMSUNGS: "Take Samsung's"}
NONE_FLAGGED = "None of the selected devices was changed in the Samsung portal."

_DEVICE = Device.__table__
_FLAG_COLUMNS = (
    Device.id,
    Device.approval,
    Device.profile_id,
    Device.end_user_id,
    Device.portal_previous,
    DeviceSync.kme_seen_approval,
    DeviceSync.kme_seen_profile_id,
    DeviceSync.kme_seen_user,
)


def _flagged(session: Session, device_ids: Sequence[int]) -> list[Any]:
    """The rows of the devices among `device_ids` that carry a portal change flag, by id."""
    rows: list[Any] = []
    for where in id_filters(session, Device.id, list(device_ids)):
        rows.extend(
            session.execute(
                select(*_FLAG_COLUMNS)
                .outerjoin(DeviceSync)
                .where(where, Device.portal_changed_at.is_not(None))
            ).all()
        )
    return sorted(rows, key=lambda r: r.id)


def _user_ids(session: Session, names: Iterable[str | None]) -> dict[str, int]:
    """{lower-cased username: end user id} of the names that are users of the directory."""
    wanted = sorted({n.lower() for n in names if n})
    if not wanted:
        return {}
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 900):
        chunk = wanted[start : start + 900]
        rows = session.execute(
            select(func.lower(EndUser.username), EndUser.id).where(
                func.lower(EndUser.username).in_(chunk)
            )
        )
        found.update(rows.all())
    return found


def _profile_kinds(session: Session, profile_ids: Iterable[int | None]) -> dict[int, str]:
    ids = sorted({p for p in profile_ids if p is not None})
    if not ids:
        return {}
    return dict(session.execute(select(Profile.id, Profile.kind).where(Profile.id.in_(ids))).all())


def _holds_samsungs(row: Any) -> bool:
    """The device took KME's values (the pull adopted them) rather than keeping its own."""
    return (row.approval, row.profile_id) == (row.kme_seen_approval, row.kme_seen_profile_id)


def _cannot_undo(row: Any) -> bool:
    """Approved in the portal while it waited here: KME cannot take an approval back."""
    previous = row.portal_previous or {}
    return (
        _holds_samsungs(row)
        and previous.get("approval") == Approval.PENDING
        and row.approval == Approval.APPROVED
    )


def _restored(row: Any, kinds: dict[int, str], users: dict[str, int]) -> dict[str, Any]:
    """kmeweb's values for a device Send ours again pushes: its old ones (portal_previous)
    when it took Samsung's, else the ones it holds. A profile deleted since is not restored."""
    values = {"approval": row.approval, "profile_id": row.profile_id, "user": row.end_user_id}
    if not _holds_samsungs(row):
        return values
    previous = row.portal_previous or {}
    if "approval" in previous and previous["approval"] in (Approval.APPROVED, Approval.PENDING):
        values["approval"] = previous["approval"]
    if "profile_id" in previous and previous["profile_id"] in kinds:
        values["profile_id"] = previous["profile_id"]
    if previous.get("user"):
        values["user"] = users.get(previous["user"].lower(), row.end_user_id)
    return values


def send_ours_again(
    session: Session,
    device_ids: Sequence[int],
    actor: Any,
    operation: Operation | None = None,
) -> Operation | None:
    """Send kmeweb's values again for the selected devices changed in the Samsung portal.

    Devices that took Samsung's values get kmeweb's old ones back (approval, profile, user
    from `portal_previous`); then every settled device is marked pending (version bumped),
    its flag cleared, and pushed under one operation of device.resync changes (a new one,
    enqueued after the commit, or `operation`: a job's). Devices the portal approved while
    they waited here stay flagged (KME cannot undo an approval). Records audit
    "device.portal.send_ours". Flushes. Returns the operation, None when nothing is sent.
    Raises ValidationError (field "device_ids": nothing selected, or none of it flagged).
    """
    ids = _selection(device_ids)
    rows = _flagged(session, ids)
    if not rows:
        raise ValidationError(NONE_FLAGGED, field="device_ids")
    settled = [r for r in rows if not _cannot_undo(r)]
    kinds = _profile_kinds(
        session, [r.profile_id for r in settled] + [_previous_profile(r) for r in settled]
    )
    users = _user_ids(session, [(r.portal_previous or {}).get("user") for r in settled])
    updates = []
    for r in settled:
        values = _restored(r, kinds, users)
        in_knox = kinds.get(values["profile_id"]) != ProfileKind.SELF_MAINTAINED
        push = values["approval"] == Approval.APPROVED and in_knox
        updates.append(
            {
                "did": r.id,
                "approval": values["approval"],
                "profile_id": values["profile_id"],
                "end_user_id": values["user"],
                "sync_state": SyncState.PENDING if push else SyncState.SYNCED,
                "push": push,
            }
        )
    pushed = [u["did"] for u in updates if u["push"]]
    if pushed:
        label = f"Send kmeweb's values again for {count(len(pushed), 'device')}"
        if operation is None:
            operation = operations.start_operation(
                session, ChangeKind.DEVICE_RESYNC, label, len(pushed), actor
            )
        else:
            operation.label, operation.total = label, len(pushed)
    _write(session, updates)
    if pushed:
        outbox.record_device_change(session, ChangeKind.DEVICE_RESYNC, pushed, operation, actor)
    audit.record(
        session,
        actor,
        "device.portal.send_ours",
        "device",
        None,
        {
            "devices": len(settled),
            "sent": len(pushed),
            "restored": sum(1 for r in settled if _holds_samsungs(r) and r.portal_previous),
            "approved_in_portal": len(rows) - len(settled),
            "not_flagged": len(ids) - len(rows),
            "device_ids": ids_summary([u["did"] for u in updates]),
            "operation_id": operation.id if pushed and operation is not None else None,
        },
    )
    session.flush()
    return operation if pushed else None


def _previous_profile(row: Any) -> int | None:
    return (row.portal_previous or {}).get("profile_id")


def _write(session: Session, updates: list[dict[str, Any]]) -> None:
    """One executemany: each device's settled values, the flag cleared, its version bumped."""
    if not updates:
        return
    shift = kept_counts.reassigning(session, {u["did"]: u["profile_id"] for u in updates})
    session.execute(
        _DEVICE.update()
        .where(_DEVICE.c.id == bindparam("did"))
        .values(
            approval=bindparam("approval"),
            profile_id=bindparam("profile_id"),
            end_user_id=bindparam("end_user_id"),
            portal_changed_at=None,
            portal_previous=None,
            version=_DEVICE.c.version + 1,
            updated_at=utcnow(),
        ),
        [{k: v for k, v in u.items() if k not in ("push", "sync_state")} for u in updates],
    )
    session.execute(
        outbox.device_sync_upsert(
            session,
            _DEVICE.c.id == bindparam("did"),
            sync_state=bindparam("sync_state", type_=String),
            sync_error=None,
        ),
        [{"did": u["did"], "sync_state": u["sync_state"]} for u in updates],
    )
    kept_counts.apply(session, shift)


def take_samsungs(session: Session, device_ids: Sequence[int], actor: Any) -> int:
    """Take Samsung's values as kmeweb's own for the selected devices changed in the Samsung
    portal: approval, profile and (when the change was one of the user) the user KME holds
    (`kme_seen_*`; a profile deleted since, or a user not in the directory, keeps kmeweb's).
    Nothing is pushed; the flag is cleared and each device is synced (its version bumped).
    Records audit "device.portal.take_samsungs". Flushes. Returns how many devices settled.
    Raises ValidationError (field "device_ids": nothing selected, or none of it flagged).
    """
    ids = _selection(device_ids)
    rows = _flagged(session, ids)
    if not rows:
        raise ValidationError(NONE_FLAGGED, field="device_ids")
    kinds = _profile_kinds(session, [r.kme_seen_profile_id for r in rows])
    users = _user_ids(session, [r.kme_seen_user for r in rows])
    updates = []
    for r in rows:
        approval = r.kme_seen_approval or r.approval
        profile_id = r.kme_seen_profile_id if r.kme_seen_profile_id in kinds else r.profile_id
        if approval == Approval.PENDING:
            profile_id = None
        user = r.end_user_id
        if "user" in (r.portal_previous or {}) and r.kme_seen_user:
            user = users.get(r.kme_seen_user.lower(), user)
        updates.append(
            {
                "did": r.id,
                "approval": approval,
                "profile_id": profile_id,
                "end_user_id": user,
                "sync_state": SyncState.SYNCED,
            }
        )
    _write(session, updates)
    audit.record(
        session,
        actor,
        "device.portal.take_samsungs",
        "device",
        None,
        {
            "devices": len(rows),
            "not_flagged": len(ids) - len(rows),
            "device_ids": ids_summary([r.id for r in rows]),
        },
    )
    session.flush()
    return len(rows)


@dataclass(frozen=True)
class PortalCounts:
    """What a dialog shows before Send ours again / Take Samsung's: how many devices are
    selected, how many of them were changed in the Samsung portal (what either action
    settles), and how many of those the portal approved (Send ours again leaves them)."""

    selected: int
    flagged: int
    approved_in_portal: int

    @property
    def sendable(self) -> int:
        return self.flagged - self.approved_in_portal


def _flagged_selection(stmt: Any, selection: DeviceSelection) -> Any:
    """`stmt` limited to the flagged devices of an "all matching" selection."""
    return selection_filtered(stmt.where(Device.portal_changed_at.is_not(None)), selection)


def selection_counts(session: Session, selection: DeviceSelection) -> PortalCounts:
    """PortalCounts of a selection, read now: counts for "all matching" (on the partial index
    ix_device_portal_changed), the flagged rows of explicit ids. Raises NotFound (no such
    profile), ValidationError (no profile named for "all matching")."""
    if selection.all_matching:
        selected = count_matching(session, selection)
        flagged = session.scalar(_flagged_selection(select(func.count(Device.id)), selection))
        cannot_undo = session.scalar(
            _flagged_selection(select(func.count(Device.id)), selection).where(
                Device.approval == Approval.APPROVED,
                Device.kme_seen_approval == Approval.APPROVED,
                Device.profile_id == Device.kme_seen_profile_id,
                Device.portal_previous["approval"].as_string() == Approval.PENDING.value,
            )
        )
        return PortalCounts(selected, flagged or 0, cannot_undo or 0)
    rows = _flagged(session, list(selection.ids))
    return PortalCounts(len(selection.ids), len(rows), sum(1 for r in rows if _cannot_undo(r)))


@dataclass(frozen=True)
class PortalOutcome:
    """What an action on a selection did: `devices` settled now (or to be settled by the job),
    `operation` the push of Send ours again or the job of a large selection, `later` True when
    a job settles them."""

    devices: int
    operation: Operation | None = None
    later: bool = False


def settle_selection(
    session: Session,
    selection: DeviceSelection,
    action: str,
    actor: Any,
    expected_count: int | None = None,
) -> PortalOutcome:
    """Send ours again (`action` SEND_OURS) or Take Samsung's (TAKE_SAMSUNGS) for a selection
    made on a profile's page (or by the API), guarded by `expected_count` (how many devices
    the selection holds, as the admin saw it). "All matching" over more than SELECTION_JOB_MIN
    devices is counted and checked now and settled by its job (start_selection). Flushes.
    Raises ValidationError (unknown action, nothing flagged), NotFound, Conflict
    ("count_mismatch", or explicit ids that left the profile).
    """
    if action not in ACTIONS:
        raise ValidationError("Choose Send ours again or Take Samsung's.", field="action")
    if selection.all_matching and count_matching(session, selection) > SELECTION_JOB_MIN:
        operation = start_selection(session, selection, action, actor, expected_count)
        return PortalOutcome(operation.total, operation, later=True)
    ids = resolve_expected(session, selection, expected_count)
    if action == SEND_OURS:
        flagged = len(_flagged(session, ids))
        operation = send_ours_again(session, ids, actor)
        return PortalOutcome(flagged, operation)
    return PortalOutcome(take_samsungs(session, ids, actor))


def start_selection(
    session: Session,
    selection: DeviceSelection,
    action: str,
    actor: Any,
    expected_count: int | None = None,
) -> Operation:
    """Settle "all N matching" later: check the expected count and that some are flagged,
    then add the queued operation (kind device.portal.selection, its `params` the selection,
    action and actor) whose job runs run_selection after the commit, and record audit
    "device.portal.start". Flushes. Raises NotFound, Conflict ("count_mismatch"),
    ValidationError (nothing flagged)."""
    n = count_matching(session, selection)
    _check_count(n, expected_count)
    counts = selection_counts(session, selection)
    if not counts.flagged:
        raise ValidationError(NONE_FLAGGED, field="device_ids")
    label = f"{ACTIONS[action]}: {count(counts.flagged, 'device')} changed in Samsung portal"
    operation = operations.create_operation(
        session, OperationKind.DEVICE_PORTAL_SELECTION, label, counts.flagged, actor
    )
    operation.params = {
        "action": action,
        "profile_id": selection.profile_id,
        "filter": selection.filter.params(),
        "expected_count": expected_count,
        "actor": actor if isinstance(actor, str) else actor.email,
    }
    audit.record(
        session,
        actor,
        "device.portal.start",
        "profile",
        selection.profile_id,
        {
            "action": action,
            "devices": counts.flagged,
            "selected": n,
            "filter": selection.filter.params(),
            "operation_id": operation.id,
        },
    )
    session.flush()
    dispatch.after_commit(session, operation)
    return operation


def run_selection(session: Session, operation: Operation, actor: Any) -> int:
    """The settling start_selection accepted, as its job runs it: the selection is resolved
    now and settled under `operation` (Send ours again writes its changes, which the push
    then sends and finishes the operation with; Take Samsung's finishes it here). Returns how
    many devices settled; 0 on a second run (the devices are no longer flagged, or the
    operation has its changes). Flushes. Raises NotFound (the profile is gone)."""
    params = operation.params or {}
    ids = operation_selection(session, operation)[1]
    flagged = [r.id for r in _flagged(session, ids)]
    if not flagged:
        operations.finish(session, operation.id)
        return 0
    if params.get("action") == SEND_OURS:
        sent = send_ours_again(session, flagged, actor, operation=operation)
        if sent is None:
            operations.finish(session, operation.id)
        return len(flagged)
    done = take_samsungs(session, flagged, actor)
    operation.total = done
    operations.add_progress(session, operation.id, done)
    operations.finish(session, operation.id)
    return done


def flagged_count(session: Session) -> int:
    """Devices changed in the Samsung portal and not settled (the partial index)."""
    return (
        session.scalar(select(func.count(Device.id)).where(Device.portal_changed_at.is_not(None)))
        or 0
    )


def missing_count(session: Session) -> int:
    """Devices the last full pull did not find in KME (the partial index)."""
    return (
        session.scalar(select(func.count(Device.id)).where(Device.kme_missing_at.is_not(None))) or 0
    )


@dataclass(frozen=True)
class PortalNote:
    """What a device row says of KME: when the portal change was seen (`at`) and each value
    it changed as (what, Samsung's value, kmeweb's value before); when the full pull last
    found it missing (`missing_at`)."""

    at: datetime | None
    changes: list[tuple[str, str, str]] = field(default_factory=list)
    missing_at: datetime | None = None


NO_PROFILE = "none (waiting for approval)"


def portal_notes(session: Session, devices: Iterable[Any]) -> dict[int, PortalNote]:
    """{device id: PortalNote} of the devices (rows with the Device columns) that carry a
    portal change or a not-found flag; profile names read in one query."""
    flagged = [d for d in devices if d.portal_changed_at or d.kme_missing_at]
    profile_ids = {
        p
        for d in flagged
        for p in (d.kme_seen_profile_id, (d.portal_previous or {}).get("profile_id"))
        if p is not None
    }
    names = (
        dict(
            session.execute(
                select(Profile.id, Profile.name).where(Profile.id.in_(profile_ids))
            ).all()
        )
        if profile_ids
        else {}
    )

    def profile(pid: int | None) -> str:
        return NO_PROFILE if pid is None else names.get(pid, f"deleted profile #{pid}")

    notes = {}
    for d in flagged:
        previous = (d.portal_previous or {}) if d.portal_changed_at else {}
        changes = []
        if "approval" in previous and previous["approval"] != d.kme_seen_approval:
            changes.append(("Approval", str(d.kme_seen_approval), str(previous["approval"])))
        if "profile_id" in previous and previous["profile_id"] != d.kme_seen_profile_id:
            changes.append(
                ("Profile", profile(d.kme_seen_profile_id), profile(previous["profile_id"]))
            )
        if previous.get("user"):
            changes.append(("User", d.kme_seen_user or "none", previous["user"]))
        notes[d.id] = PortalNote(d.portal_changed_at, changes, d.kme_missing_at)
    return notes


def flagged_in_profile(session: Session, profile_id: int) -> int:
    """How many of the profile's devices were changed in the Samsung portal (not settled)."""
    return (
        session.scalar(
            select(func.count(Device.id)).where(
                Device.profile_id == profile_id, Device.portal_changed_at.is_not(None)
            )
        )
        or 0
    )


def flags_in_profile(session: Session, profile_id: int) -> bool:
    """Whether some of the profile's devices were changed in the Samsung portal or not found
    in KME (the device table then offers its Samsung filter): one probe of each partial index
    (ix_device_portal_changed, ix_device_kme_missing)."""
    for flag in (Device.portal_changed_at, Device.kme_missing_at):
        probe = select(Device.id).where(Device.profile_id == profile_id, flag.is_not(None))
        if session.scalar(probe.limit(1)) is not None:
            return True
    return False
