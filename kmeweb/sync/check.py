"""Check with Samsung: read one device's live record in KME, for the device page.

KME has no endpoint that returns one device (kme-api.md), so the job lists devices page by
page and stops at the first that is this one: first only the devices changed since a little
before the last pull read it (`changedAfter`, a few pages at most), then, when that did not
find it, every device (which also proves it is gone from KME). What KME holds, in kmeweb's
terms (approval, the kmeweb profile its KME profile maps to, the user name), is kept in the
operation's params under "kme". The record found then goes through the pull's own rules
(`pull.apply_device_page`, one device): a change made in the Samsung portal is flagged and
settled by the portal policy exactly as the next pull would, so the page's Send ours again /
Take Samsung's act on it at once. A device event "Checked with Samsung" records what was
found.

KME unreachable or refusing: the operation fails with a readable error and nothing else
changes (not even the integration's last error: a check is not a sync).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.devices.models import Approval, Device, DeviceEvent, DeviceEventKind
from kmeweb.errors import NotFound
from kmeweb.extensions import db, utcnow
from kmeweb.identifiers import normalize_serial
from kmeweb.integration.models import get_integration
from kmeweb.knox import KnoxClient, KnoxError
from kmeweb.knox import types as kt
from kmeweb.operations import dispatch
from kmeweb.operations import services as operations
from kmeweb.operations.models import ACTIVE, Operation, OperationKind
from kmeweb.operations.queue import JOB_FAILURES
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sync import push
from kmeweb.sync.jobs import schedule_followup
from kmeweb.sync.knox import knox_client
from kmeweb.sync.pull import (  # one reading of KME's status words and of a portal change
    PullContext,
    _is_pending_approval,
    apply_device_page,
)

log = logging.getLogger("kmeweb.sync")

#: How far before the last pull's read the changed-only listing starts (clock skew, and a
#: portal change made while that pull ran).
CHANGED_MARGIN = timedelta(hours=1)


def check_key(device_id: int) -> str:
    """The dedup key of a device's check: one at a time per device."""
    return f"device-check:{device_id}"


def start_check(session: Session, device_id: int, actor: Any) -> Operation:
    """Start Check with Samsung for one device, unless one is queued or running (then that
    one). Audited ("device.check"); flushes; the job is enqueued after the commit.
    Raises NotFound (no such device)."""
    running = operations.active_operation(session, check_key(device_id))
    if running is not None:
        return running
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("No such device.")
    label = f"Check with Samsung: {device.identifier or device.id}"
    operation = operations.create_operation(
        session, OperationKind.DEVICE_CHECK, label, 1, actor, dedup_key=check_key(device_id)
    )
    operation.params = {"device_id": device_id}
    audit.record(
        session, actor, "device.check", "device", device_id, {"operation_id": operation.id}
    )
    session.flush()
    dispatch.after_commit(session, operation)
    return operation


def latest_check(session: Session, device_id: int) -> Operation | None:
    """The device's most recent Check with Samsung (any state), or None."""
    return session.scalar(
        select(Operation)
        .where(Operation.dedup_key == check_key(device_id))
        .order_by(Operation.id.desc())
        .limit(1)
    )


def check_device_job(operation_id: int) -> dict[str, Any] | None:
    """Run one Check with Samsung; returns what KME holds (see the module docstring).

    Records a failure on the operation and re-raises it (RQ keeps it in the failed registry)."""
    session = db.session
    operation = session.get(Operation, operation_id)
    if operation is None or operation.status not in ACTIVE:
        return None
    params = dict(operation.params or {})
    device = session.get(Device, params.get("device_id"))
    integration = get_integration(session)
    refusal = None
    if device is None:
        refusal = "The device is no longer in kmeweb."
    elif integration is None or not integration.active:
        refusal = "The Knox integration is not active."
    if refusal is not None:
        operations.finish(session, operation_id, refusal)
        session.commit()
        return None
    assert device is not None and integration is not None
    since = device.kme_seen_at - CHANGED_MARGIN if device.kme_seen_at else None
    operations.mark_running(session, operation_id)
    session.commit()
    try:
        with knox_client(integration) as client:
            found, listing = find_device(client, device, since)
    except JOB_FAILURES as exc:  # RQ's timeout too: say why it stopped
        session.rollback()
        reason = push.readable(exc) if isinstance(exc, KnoxError) else str(exc)
        operations.finish(session, operation_id, f"Samsung could not be asked: {reason}")
        session.commit()
        raise
    result = kme_values(session, found, listing)
    sent_again = _apply_as_pull(session, integration, found)
    operation = session.get(Operation, operation_id)
    assert operation is not None
    operation.params = {**params, "kme": result}
    operation.done = 1
    session.add(
        DeviceEvent(
            device_id=device.id,
            kind=DeviceEventKind.CHECKED,
            actor="sync",
            operation_id=operation_id,
            details=result,
        )
    )
    operations.finish(session, operation_id)
    session.commit()
    if sent_again:  # portal policy OURS: kmeweb's values go to KME now
        schedule_followup(session)
    log.info("device %s checked with Samsung: %s", device.id, result)
    return result


def _apply_as_pull(session: Session, integration: Any, found: kt.Device | None) -> bool:
    """Apply the live record as a pull would (flushes); whether kmeweb's values must be sent
    again (portal policy OURS)."""
    if found is None:
        return False
    default_id = session.scalar(select(Profile.id).where(Profile.kind == ProfileKind.KME_DEFAULT))
    if default_id is None:
        return False
    stats: Counter = Counter()
    ctx = PullContext(session, default_id, integration.portal_policy)
    apply_device_page(session, [found], ctx, stats)
    return bool(stats["devices_sent_again"])


def _matches(d: kt.Device, device: Device) -> bool:
    if device.kme_device_id and d.id == device.kme_device_id:
        return True
    mei = (d.mei or "").upper()
    if device.imei and mei == device.imei.upper():
        return True
    return bool(device.serial and d.serial and normalize_serial(d.serial) == device.serial)


def find_device(
    client: KnoxClient, device: Device, since: datetime | None
) -> tuple[kt.Device | None, str]:
    """The device's KME record and how it was found ("changed" or "full"); None with "full"
    when KME no longer has it. Stops listing at the page that holds it."""
    passes = ([("changed", since)] if since is not None else []) + [("full", None)]
    for listing, changed_after in passes:
        for page in client.iter_device_pages(changed_after=changed_after):
            for d in page.devices:
                if _matches(d, device):
                    return d, listing
    return None, "full"


def kme_values(session: Session, d: kt.Device | None, listing: str) -> dict[str, Any]:
    """What KME holds for the device in kmeweb's terms, as the pull maps it: a pending status
    is a pending approval; an approved device in a KME profile kmeweb does not know is in the
    Default Profile."""
    checked_at = utcnow().isoformat()
    if d is None:
        return {"found": False, "checked_at": checked_at, "listing": listing}
    pending = _is_pending_approval(d.status)
    profile_id = None
    if not pending:
        profile_id = session.scalar(
            select(Profile.id).where(Profile.kme_profile_id == (d.profile_id or ""))
        ) or session.scalar(select(Profile.id).where(Profile.kind == ProfileKind.KME_DEFAULT))
    return {
        "found": True,
        "checked_at": checked_at,
        "listing": listing,
        "approval": Approval.PENDING.value if pending else Approval.APPROVED.value,
        "profile_id": profile_id,
        "profile_name": d.profile_name,
        "user": d.user_name,
        "status": d.status,
        "kme_device_id": d.id,
    }
