"""Push: claim pending outbox changes in order and send them to KME.

Claims: the oldest due pending change whose profile has no earlier unfinished
change (so a profile is created before devices are assigned to it, and an upload
is approved before its devices are placed). PostgreSQL claims with
`FOR UPDATE SKIP LOCKED`, so workers on many hosts never take the same change; on
SQLite the conditional UPDATE is the claim. A running change holds a lease
(`next_attempt_at`); the sweeper puts back changes whose worker died.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Text, and_, bindparam, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session, aliased

from kmeweb import crypto, gcpause
from kmeweb.devices import history
from kmeweb.devices.models import Approval, Device, DeviceEventKind, DeviceSync
from kmeweb.directory.models import EndUser
from kmeweb.extensions import utcnow
from kmeweb.integration.models import Integration
from kmeweb.knox import (
    BatchResult,
    DeviceAssignment,
    DeviceOutcome,
    KnoxClient,
    KnoxError,
    KnoxRejectedError,
    KnoxTransientError,
)
from kmeweb.knox import errors as knox_codes
from kmeweb.operations import services as operations
from kmeweb.operations.models import ACTIVE, Operation
from kmeweb.operations.queue import JobTimeout
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import (
    UNFINISHED,
    Change,
    ChangeAttempt,
    ChangeKind,
    ChangeStatus,
    SyncState,
)
from kmeweb.outbox.services import DEVICE_SYNC_KINDS
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sqlutil import id_filters
from kmeweb.sync.mapping import to_knox_profile
from kmeweb.text import count

log = logging.getLogger("kmeweb.sync")


class RetryLater(Exception):
    """The change cannot go yet (e.g. its profile is not in KME yet); try again later."""


def _cfg(name: str) -> float:
    return float(current_app.config[name])


def claim_next(session: Session, worker: str) -> Change | None:
    """Claim the next due change for `worker` and commit the claim; None when nothing is due."""
    earlier = aliased(Change)
    blocked = exists().where(
        earlier.profile_id == Change.profile_id,
        earlier.id < Change.id,
        earlier.status.in_(UNFINISHED),
    )
    for _ in range(20):
        now = utcnow()
        stmt = (
            select(Change.id)
            .where(Change.status == ChangeStatus.PENDING, Change.next_attempt_at <= now, ~blocked)
            .order_by(Change.id)
            .limit(1)
        )
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=Change)
        change_id = session.scalar(stmt)
        if change_id is None:
            session.rollback()
            return None
        lease = now + timedelta(seconds=_cfg("CHANGE_LEASE_S"))
        claimed = session.execute(
            update(Change)
            .where(Change.id == change_id, Change.status == ChangeStatus.PENDING)
            .values(
                status=ChangeStatus.RUNNING,
                attempts=Change.attempts + 1,
                claimed_by=worker,
                next_attempt_at=lease,
            )
        ).rowcount
        if claimed == 1:
            operation_id = session.scalar(select(Change.operation_id).where(Change.id == change_id))
            if operation_id is not None:
                operations.mark_running(session, operation_id)
            session.commit()
            return session.get(Change, change_id)
        session.rollback()  # another worker took it between our read and our update
    return None


def process(session: Session, client: KnoxClient, change: Change) -> None:
    """Send one claimed change to KME and record the outcome; commits.

    Transient Knox errors (and RetryLater) put the change back with backoff until
    CHANGE_MAX_ATTEMPTS; a rejection fails it with Knox's message and marks what it
    covered as `error`. Never raises for Knox errors: other changes go on. Re-raises RQ's
    job timeout after putting the change back, so a job RQ gave up on stops working.
    """
    handler = HANDLERS[change.kind]
    try:
        # One change carries up to thousands of devices, read into as many tuples: with the
        # cyclic collector on, building them set off collections that walked the whole heap.
        with gcpause.paused():
            note = handler(session, client, change)
    except JobTimeout as exc:  # RQ gave up on the job: put the change back, and stop
        session.rollback()
        _retry_or_fail(session, change, exc)
        raise
    except (KnoxTransientError, RetryLater) as exc:
        session.rollback()
        _retry_or_fail(session, change, exc)
    except KnoxError as exc:
        session.rollback()
        _fail(session, change, readable(exc), exc)
    except Exception as exc:  # a bug or a database error: retry, then show it
        log.exception("change %s (%s) raised", change.id, change.kind)
        session.rollback()
        _retry_or_fail(session, change, exc)
    else:
        change.status = ChangeStatus.DONE
        change.done_at = utcnow()
        change.last_error = note  # claimed_by stays: which worker applied it
        _attempt(session, change.id, history.ACCEPTED, None, note)
        if change.operation_id:
            # Approval operations count devices; the upload approval itself is not one.
            step = 0 if change.kind in outbox.UPLOAD_KINDS else max(change.device_count, 1)
            operations.add_progress(session, change.operation_id, step)
        session.commit()
    maybe_finish_operation(session, change.operation_id)


def readable(exc: BaseException) -> str:
    """What an admin reads about a failed KME call: Knox's code and message, no internals."""
    if isinstance(exc, KnoxError) and exc.code is not None:
        detail = f": {exc.data}" if exc.data and str(exc.data) != exc.knox_message else ""
        return f"KME refused it ({exc.code} {exc.knox_message or ''}{detail})".replace(" )", ")")
    return str(exc) or exc.__class__.__name__


DEVICE_LABELS = {"not_found": "KME does not know this device", "invalid": "invalid id"}


def device_error(outcome: DeviceOutcome) -> str:
    """What a device's `sync_error` says when KME did not apply a change to it: what went
    wrong, then Samsung's code and message as KME gave them, e.g. "invalid id (4001703
    BULK_ENROLL_DEVICE_INVALID: ...)", or the reason alone when KME gave no code."""
    label = DEVICE_LABELS.get(outcome.outcome, "KME could not apply it")
    reason = outcome.reason or outcome.outcome.replace("_", " ")
    said = f"{outcome.code} {reason}" if outcome.code is not None else reason
    return f"{label} ({said})"[:500]


def _samsung_said(exc: BaseException | None) -> tuple[str | None, str | None]:
    """Samsung's code (else the HTTP status) and message of a failed call, for the history."""
    if exc is None:
        return None, None
    if isinstance(exc, KnoxError):
        code = exc.code if exc.code is not None else exc.status
        message = exc.knox_message or str(exc)
        if exc.data and str(exc.data) != message:
            message = f"{message}: {exc.data}"
        return (None if code is None else str(code)), message
    return None, readable(exc)


def _attempt(
    session: Session,
    change_id: int,
    outcome: str,
    exc: BaseException | None,
    message: str | None = None,
) -> None:
    """One change_attempt row: this attempt and Samsung's answer (each device's history
    shows it through the change that carried the device)."""
    code, said = _samsung_said(exc)
    text = said or message
    session.add(
        ChangeAttempt(
            change_id=change_id,
            outcome=outcome,
            code=code[:64] if code else None,
            message=text[:2000] if text else None,
        )
    )


def _retry_or_fail(session: Session, change: Change, exc: BaseException) -> None:
    change = session.get(Change, change.id)
    if change.attempts >= int(_cfg("CHANGE_MAX_ATTEMPTS")):
        _fail(session, change, f"gave up after {change.attempts} attempts: {readable(exc)}", exc)
        return
    base, cap = _cfg("CHANGE_RETRY_BASE_S"), _cfg("CHANGE_RETRY_MAX_S")
    delay = random.uniform(base / 2, min(cap, base * 2 ** (change.attempts - 1)))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        delay = max(delay, float(retry_after))
    change.status = ChangeStatus.PENDING
    change.claimed_by = None
    change.next_attempt_at = utcnow() + timedelta(seconds=delay)
    change.last_error = f"will retry: {readable(exc)}"
    _attempt(session, change.id, history.RETRY, exc)
    session.commit()


def _fail(session: Session, change: Change, message: str, exc: BaseException | None = None) -> None:
    change = session.get(Change, change.id)
    now = utcnow()
    _attempt(session, change.id, history.FAILED, exc, message)
    change.status = ChangeStatus.FAILED
    change.claimed_by = None
    change.done_at = now
    change.last_error = message[:2000]
    if change.kind in DEVICE_SYNC_KINDS:
        device_ids = change.payload.get("device_ids", [])
        for where in id_filters(session, DeviceSync.device_id, device_ids):
            session.execute(
                update(DeviceSync)
                .where(where, DeviceSync.sync_state == SyncState.PENDING)
                .values(sync_state=SyncState.ERROR, sync_error=message[:500])
            )
    session.execute(update(Integration).values(last_error=message[:2000], last_error_at=now))
    profile_id = change.payload.get("profile_id")
    if change.kind in (ChangeKind.PROFILE_CREATE, ChangeKind.PROFILE_UPDATE) and profile_id:
        session.execute(
            update(Profile)
            .where(Profile.id == profile_id)
            .values(sync_state=SyncState.ERROR, sync_error=message[:500], sync_error_at=now)
        )
    session.commit()


def maybe_finish_operation(session: Session, operation_id: int | None) -> None:
    """Finish the operation (done, or failed naming the first failure) once none of its
    changes is pending or running; commits."""
    if operation_id is None:
        return
    counts = dict(
        session.execute(
            select(Change.status, func.count())
            .where(Change.operation_id == operation_id)
            .group_by(Change.status)
        ).all()
    )
    if any(counts.get(status) for status in UNFINISHED):
        session.commit()
        return
    failed = counts.get(ChangeStatus.FAILED, 0)
    error = None
    if failed:
        first = session.scalar(
            select(Change.last_error)
            .where(Change.operation_id == operation_id, Change.status == ChangeStatus.FAILED)
            .order_by(Change.id)
            .limit(1)
        )
        error = f"{failed} of {sum(counts.values())} changes failed: {first}"
    operation = session.get(Operation, operation_id)
    if operation is not None and operation.status in ACTIVE:
        operations.finish(session, operation_id, error)
    session.commit()


def _push_devices(session: Session, client: KnoxClient, change: Change) -> str | None:
    """State-based: send each device's current assignment, user and password."""
    ids = change.payload.get("device_ids", [])
    if change.kind == ChangeKind.DEVICE_APPROVE:
        ids = _synced_by_approval(session, change, ids)
        if not ids:
            return None
    columns = (
        Device.id,
        Device.version,
        Device.imei,
        Device.serial,
        Device.kme_device_id,
        Device.approval,
        Device.enrollment_password_enc,
        Profile.kind,
        Profile.kme_profile_id,
        Profile.name,
        EndUser.username,
    )
    rows = [
        row
        for where in id_filters(session, Device.id, ids)
        for row in session.execute(
            select(*columns)
            .outerjoin(Profile, Device.profile_id == Profile.id)
            .outerjoin(EndUser, Device.end_user_id == EndUser.id)
            .where(where)
        )
    ]
    groups: dict[str | None, list[Any]] = defaultdict(list)
    for row in rows:
        if row.approval != Approval.APPROVED:
            continue
        if row.kind == ProfileKind.KME:
            if not row.kme_profile_id:
                raise RetryLater(f"profile {row.name!r} is not in KME yet")
            groups[row.kme_profile_id].append(row)
        else:  # the Default Profile (and self-maintained ones) mean "no KME profile"
            groups[None].append(row)
    # KME's upload approval leaves the upload's devices unassigned: approved devices that
    # stay in the Default Profile need no unassign call once that approval went through.
    unassigned_by_approval = (
        change.kind == ChangeKind.DEVICE_APPROVE
        and None in groups
        and _upload_approved(session, change)
    )
    results: list[tuple[Any, str, BatchResult]] = []
    for target, members in groups.items():
        by_ident = {(r.kme_device_id or r.imei or r.serial): r for r in members}
        if target is None and unassigned_by_approval:
            result = BatchResult()
        elif target is None:
            result = client.unassign_profile(list(by_ident), aliases=_aliases(by_ident))
        else:
            assignments = [
                DeviceAssignment(
                    ident,
                    user_name=r.username,
                    password=crypto.decrypt(r.enrollment_password_enc),
                )
                for ident, r in by_ident.items()
            ]
            result = client.assign_profile(target, assignments, aliases=_aliases(by_ident))
        results.extend((r, i, result) for i, r in by_ident.items())
    note, applied = _apply_device_results(session, results, change.id)
    _resync_moved_on(session, {row.id: row.version for row, _ident, _result in results}, applied)
    return note


def _synced_by_approval(session: Session, change: Change, device_ids: list[int]) -> list[int]:
    """Approved devices that are still in no KME profile need no call once KME approved their
    upload (it leaves them unassigned): mark them synced in one UPDATE per chunk, without
    reading them. Returns the other devices, for the state-based push; all of them while that
    approval is not done (the state-based push then waits for it, says why it failed, or
    unassigns devices approved without an upload)."""
    if not _upload_approval_done(session, change):
        return device_ids
    table = Device.__table__
    in_kme = select(Profile.id).where(Profile.kind == ProfileKind.KME)
    unassigned = and_(
        table.c.approval == Approval.APPROVED,
        or_(table.c.profile_id.is_(None), table.c.profile_id.not_in(in_kme)),
    )
    marked = 0
    for where in id_filters(session, table.c.id, device_ids):
        marked += outbox.write_device_sync(
            session, and_(where, unassigned), **_synced_values(table)
        )
    # Usually every device (an approval into the Default Profile): nothing to read back. Else
    # the ones the UPDATE could not match (moved into a KME profile meanwhile; gone ones are
    # in neither, and the state-based push would skip them).
    if marked == len(set(device_ids)):
        return []
    return [
        device_id
        for where in id_filters(session, table.c.id, device_ids)
        for device_id in session.scalars(
            select(table.c.id).where(where, not_(unassigned)).order_by(table.c.id)
        )
    ]


def _synced_values(table: Any) -> dict[str, Any]:
    """`outbox.write_device_sync`'s arguments for devices KME applied: synced, and KME now
    holds what was sent. The pull compares its next reading with this (kmeweb.sync.pull: a
    change made in the Samsung portal is one KME made since). A device without a user keeps
    the user KME was last seen with (an assignment without one leaves KME's as it was)."""
    pushed_user = (
        select(EndUser.username).where(EndUser.id == table.c.end_user_id).scalar_subquery()
    )
    seen = DeviceSync.__table__.c
    return {
        "on_clash": {
            "kme_seen_user": lambda new: func.coalesce(new.kme_seen_user, seen.kme_seen_user)
        },
        "sync_state": SyncState.SYNCED,
        "sync_error": None,
        "kme_seen_approval": table.c.approval,
        "kme_seen_profile_id": table.c.profile_id,
        "kme_seen_user": pushed_user,
        "kme_seen_at": utcnow(),
    }


def _aliases(by_ident: dict[str, Any]) -> dict[str, str]:
    """KME may name a device by another of its ids than the one sent: map those back."""
    return {
        name: ident
        for ident, r in by_ident.items()
        for name in (r.kme_device_id, r.imei, r.serial)
        if name
    }


def _upload_approval_rows(session: Session, change: Change) -> list[Any]:
    """(status, last_error) of this approval's upload.approve rows for the same profile."""
    if change.operation_id is None:
        return []
    return session.execute(
        select(Change.status, Change.last_error)
        .where(
            Change.operation_id == change.operation_id,
            Change.kind == ChangeKind.UPLOAD_APPROVE,
            Change.profile_id == change.profile_id,
        )
        .order_by(Change.id)
    ).all()


def _upload_approval_done(session: Session, change: Change) -> bool:
    """Whether KME approved the uploads of this approval: when `_upload_approved` would say
    True, without its errors (False when there are none, or one is unfinished or failed)."""
    rows = _upload_approval_rows(session, change)
    return bool(rows) and all(status == ChangeStatus.DONE for status, _error in rows)


def _upload_approved(session: Session, change: Change) -> bool:
    """Whether KME approved the uploads of this approval (the operation's upload.approve rows
    for the same profile): False when there are none (approving devices without an upload),
    RetryLater while one is unfinished, KnoxRejectedError when one failed."""
    rows = _upload_approval_rows(session, change)
    statuses = [status for status, _error in rows]
    if not statuses:
        return False
    failed = [error for status, error in rows if status == ChangeStatus.FAILED]
    if failed:
        # Samsung's code and message on each device: why the approval was refused.
        raise KnoxRejectedError(
            f"KME did not approve the upload, so its devices stay pending there: {failed[0]}"
        )
    if any(status in UNFINISHED for status in statuses):
        raise RetryLater("the upload approval has not reached KME yet")
    return True


def _resync_moved_on(session: Session, versions: dict[int, int], applied: set[int]) -> int:
    """Push again the devices an admin changed while this push was in flight.

    Changes are ordered per profile, so a newer move of the same device (to another profile)
    may have reached KME first; this push's older assignment could then land last. A
    follow-up change, created only after this push's calls returned, sends the devices'
    current state once more, so KME ends as the database says. `applied`: the devices whose
    result was written at the version sent (unchanged, so not read again). Returns how many
    devices.
    """
    stale: list[int] = []
    others = [device_id for device_id in versions if device_id not in applied]
    for where in id_filters(session, Device.id, others):
        for device_id, version in session.execute(select(Device.id, Device.version).where(where)):
            if version != versions[device_id]:
                stale.append(device_id)
    if stale:
        changes = outbox.record_device_resync(session, stale)
        history.record_by_change(session, DeviceEventKind.PUSHED, changes, "sync", {"resync": True})
    return len(stale)


def _apply_device_results(
    session: Session, results: list[tuple[Any, str, BatchResult]], change_id: int | None = None
) -> tuple[str | None, set[int]]:
    """Write what KME did with each device, where the device is still at the version sent: the
    ones it applied synced (with what KME now holds), the others in error with Samsung's word.
    Returns the note for the change (None when all applied) and the devices marked synced."""
    bad = []
    refused: list[tuple[int, dict[str, Any], int | None]] = []
    # Devices of one push mostly share a version: one set-based UPDATE per version and chunk
    # (each only where the device is still at the version sent) instead of one per device.
    by_version: dict[int, list[int]] = defaultdict(list)
    for row, ident, result in results:
        outcome = result.outcomes.get(ident)
        if outcome is None or outcome.outcome == "succeeded":
            by_version[row.version].append(row.id)
        else:
            bad.append({"did": row.id, "v": row.version, "err": device_error(outcome)})
            said = {
                "label": DEVICE_LABELS.get(outcome.outcome, "KME could not apply it"),
                "outcome": outcome.outcome,
                "code": outcome.code,
                "reason": outcome.reason,
            }
            refused.append((row.id, said, change_id))
    # Each device KME refused on its own (not found, invalid): its history says so.
    history.record_each(session, DeviceEventKind.PUSHED, refused, "sync")
    table = Device.__table__
    applied: set[int] = set()
    for version, device_ids in by_version.items():
        for where in id_filters(session, table.c.id, device_ids):
            applied.update(
                session.scalars(
                    outbox.device_sync_upsert(
                        session, and_(where, table.c.version == version), **_synced_values(table)
                    ).returning(DeviceSync.__table__.c.device_id)
                )
            )
    if bad:
        session.execute(
            outbox.device_sync_upsert(
                session,
                and_(table.c.id == bindparam("did"), table.c.version == bindparam("v")),
                sync_state=SyncState.ERROR,
                sync_error=bindparam("err", type_=Text),
            ),
            bad,
        )
        note = f"{len(bad)} of {count(len(results), 'device')} not applied: {bad[0]['err']}"
        return note, applied
    return None, applied


def _delete_devices(session: Session, client: KnoxClient, change: Change) -> str | None:
    identifiers = change.payload.get("identifiers", [])
    result = client.delete_devices(identifiers)
    failed = [i for i in result.failed if i in identifiers]
    if failed:
        raise KnoxRejectedError(
            f"KME could not delete {count(len(failed), 'device')}: {result.reason(failed[0])}"
        )
    missing = len(result.not_found)
    return (
        f"{count(missing, 'device')} {'was' if missing == 1 else 'were'} already gone from KME"
        if missing
        else None
    )


def _approve_upload(session: Session, client: KnoxClient, change: Change) -> str | None:
    upload_ids = change.payload.get("kme_upload_ids", [])
    result = client.approve_uploads(upload_ids)
    problems = [i for i in upload_ids if i in result.outcomes and i not in result.succeeded]
    if problems:
        raise KnoxRejectedError(
            f"KME did not approve upload {problems[0]}: {result.reason(problems[0])}"
        )
    return None


def _upsert_profile(session: Session, client: KnoxClient, change: Change) -> str | None:
    """Create or update the profile in KME as it is now; the KME id is stored (and committed)
    before the change is marked done, and a retry first looks the profile up by name."""
    profile = session.get(Profile, change.payload.get("profile_id"))
    if profile is None or profile.kind != ProfileKind.KME:
        return "profile no longer exists locally" if profile is None else None
    version = profile.version
    username = session.get(EndUser, profile.end_user_id).username if profile.end_user_id else None
    remote = to_knox_profile(profile, username)
    if not profile.kme_profile_id:
        existing = client.find_profile_by_name(profile.name)
        if existing is None:
            created = client.create_profile(remote)
            _store_kme_id(session, profile.id, created.id)
        else:
            _store_kme_id(session, profile.id, existing.id)
            remote.id = existing.id
            client.update_profile(remote)
    else:
        remote.id = profile.kme_profile_id
        try:
            client.update_profile(remote)
        except KnoxRejectedError as exc:
            if exc.code not in (
                knox_codes.PROFILE_NOT_FOUND,
                knox_codes.BULK_ENROLL_PROFILE_NOT_FOUND,
            ):
                raise
            remote.id = None  # deleted in the portal: create it again
            created = client.create_profile(remote)
            _store_kme_id(session, profile.id, created.id)
    session.execute(
        update(Profile)
        .where(Profile.id == profile.id, Profile.version == version)
        .values(
            sync_state=SyncState.SYNCED,
            sync_error=None,
            sync_error_at=None,
            last_synced_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return None


def _store_kme_id(session: Session, profile_id: int, kme_profile_id: str | None) -> None:
    session.execute(
        update(Profile)
        .where(Profile.id == profile_id)
        .values(kme_profile_id=kme_profile_id)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def _delete_profile(session: Session, client: KnoxClient, change: Change) -> str | None:
    kme_id = change.payload.get("kme_profile_id")
    if not kme_id:
        return "profile was never created in KME"
    try:
        client.delete_profile(kme_id)
    except KnoxRejectedError as exc:
        if exc.code in (knox_codes.PROFILE_NOT_FOUND, knox_codes.BULK_ENROLL_PROFILE_NOT_FOUND):
            return "profile was already gone from KME"
        raise
    return None


HANDLERS = {
    **{kind: _push_devices for kind in DEVICE_SYNC_KINDS},
    ChangeKind.DEVICE_DELETE: _delete_devices,
    ChangeKind.UPLOAD_APPROVE: _approve_upload,
    ChangeKind.PROFILE_CREATE: _upsert_profile,
    ChangeKind.PROFILE_UPDATE: _upsert_profile,
    ChangeKind.PROFILE_DELETE: _delete_profile,
}


def run_push(
    session: Session, client: KnoxClient, worker: str, budget_s: float | None = None
) -> int:
    """Claim and process changes until none is due or the time budget is spent.

    Returns how many changes this call processed.
    """
    deadline = time.monotonic() + (budget_s or _cfg("PUSH_BUDGET_S"))
    processed = 0
    while time.monotonic() < deadline:
        change = claim_next(session, worker)
        if change is None:
            break
        process(session, client, change)
        processed += 1
    return processed


def next_due_in(session: Session) -> float | None:
    """Seconds until the earliest pending change is due (0 if one is due now), else None."""
    when = session.scalar(
        select(func.min(Change.next_attempt_at)).where(Change.status == ChangeStatus.PENDING)
    )
    if when is None:
        return None
    return max(0.0, (when - utcnow()).total_seconds())


def pending_count(session: Session) -> int:
    return session.scalar(select(func.count()).where(Change.status.in_(UNFINISHED))) or 0
