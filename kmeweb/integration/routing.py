"""Routing rules acting on devices: the pull's hook for new uploads, and "Apply rules to
existing devices" (its counts first, then an operation whose job writes the changes).

Both read the rules through kmeweb.rules.engine, the same CASE the rule editor's preview
counts with, so what an admin saw is what happens. Approvals go through
kmeweb.integration.approvals, moves through kmeweb.devices.services.move_devices: the outbox
carries each to KME with retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.devices import services as device_services
from kmeweb.devices.models import Approval, Device
from kmeweb.errors import Conflict
from kmeweb.extensions import utcnow
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.operations import dispatch
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation, OperationKind
from kmeweb.outbox.models import Change
from kmeweb.profiles.services import ensure_default_profile
from kmeweb.rules import engine
from kmeweb.rules import services as rule_services
from kmeweb.sqlutil import id_filters
from kmeweb.text import count

APPLY_KEY = "rules.apply"


def mark_held(session: Session, group: engine.Placement) -> int:
    """Record on pending devices the rule that holds them (and why it cannot be followed), and
    on those it approves at once that wait with their upload why they wait, where that is not
    recorded yet. Local only: KME keeps them pending. Returns how many changed."""
    changed = 0
    for ids, note in ((group.hold, None), (group.wait, engine.WAITS_NOTE)):
        values = group.values(note)
        values.pop("end_user_id", None)
        for where in id_filters(session, Device.id, ids):
            result = session.execute(
                update(Device)
                .where(
                    where,
                    or_(
                        Device.rule_id.is_distinct_from(values["rule_id"]),
                        Device.rule_version.is_distinct_from(values["rule_version"]),
                        Device.rule_note.is_distinct_from(values["rule_note"]),
                    ),
                )
                .values(**values, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            changed += result.rowcount or 0
    return changed


def route_uploads(session: Session, upload_ids: Sequence[int]) -> dict[str, int]:
    """The pull's uploads hook (kmeweb.sync.hooks): the pending devices of each upload that the
    rules have not seen yet go through the routing rules, once. A rule that approves at once
    approves its devices into its destination ("Approve N devices of upload U", actor
    "sync"); the others wait, each recording the rule that holds it. KME approves whole
    uploads, so when a rule holds some devices of an upload (now or at an earlier pull), the
    upload waits whole: the devices another rule would approve at once wait too, saying why
    (engine.WAITS_NOTE), and go to their rule's destination when the admin approves the
    upload. Devices seen once are not routed again: a rule saved later reaches them through
    Apply rules to existing devices, or the admin's approval. An upload whose approval is
    still running is left for the next pull.

    The rules are evaluated once for the pending devices of all the uploads (one statement
    per chunk of uploads, not one per upload: engine.placements_by_upload); each upload then
    places those of its devices that are still pending.

    Commits after each upload, as the pull commits as it goes. Returns counts for the pull's
    summary: uploads_auto_approved, devices_auto_approved, devices_held_by_rule (held or
    waiting).
    """
    ensure_default_profile(session)
    rule_services.ensure_catch_all(session)  # so each held device names the rule holding it
    rules = engine.load_rules(session)
    stats = {"uploads_auto_approved": 0, "devices_auto_approved": 0, "devices_held_by_rule": 0}
    wanted = list(dict.fromkeys(upload_ids))
    routed: dict[int | None, list[engine.Placement]] = {}
    for where in id_filters(session, Device.upload_id, wanted):
        routed.update(
            engine.placements_by_upload(
                session,
                rules,
                [where, Device.approval == Approval.PENDING, Device.routed_at.is_(None)],
            )
        )
    for upload_id in wanted:
        upload = session.get(Upload, upload_id)
        if (
            upload is None
            or upload_id not in routed
            or operations.active_operation(session, approvals.approval_key(upload_id))
        ):
            continue
        groups = _still_pending(session, upload_id, routed[upload_id])
        pending = (Device.upload_id == upload_id, Device.approval == Approval.PENDING)
        if _held_before(session, pending):
            for group in groups:
                group.wait.extend(group.approve)
                group.approve.clear()
        for group in groups:
            mark_held(session, group)
            stats["devices_held_by_rule"] += len(group.hold) + len(group.wait)
        n = sum(len(g.approve) for g in groups)
        if n:
            approvals.approve_placements(session, upload, groups, n, "sync")
            stats["uploads_auto_approved"] += 1
            stats["devices_auto_approved"] += n
        _mark_routed(session, [i for g in groups for i in (*g.approve, *g.hold, *g.wait)])
        session.commit()
    return stats


def _held_before(session: Session, pending: Sequence[Any]) -> bool:
    """Whether devices of the upload that the rules saw at an earlier pull still wait."""
    seen = select(Device.id).where(*pending, Device.routed_at.is_not(None)).limit(1)
    return session.scalar(seen) is not None


def _mark_routed(session: Session, device_ids: Sequence[int]) -> None:
    now = utcnow()
    for where in id_filters(session, Device.id, device_ids):
        session.execute(
            update(Device)
            .where(where, Device.routed_at.is_(None))
            .values(routed_at=now)
            .execution_options(synchronize_session=False)
        )


def _still_pending(
    session: Session, upload_id: int, groups: Sequence[engine.Placement]
) -> list[engine.Placement]:
    """The upload's placements without the devices approved since the rules were evaluated
    (by an admin, while the hook worked through the uploads before this one)."""
    pending = set(
        session.scalars(
            select(Device.id).where(
                Device.upload_id == upload_id, Device.approval == Approval.PENDING
            )
        )
    )
    return [
        replace(
            g,
            approve=[i for i in g.approve if i in pending],
            hold=[i for i in g.hold if i in pending],
            wait=[i for i in g.wait if i in pending],
            move=[],
        )
        for g in groups
    ]


def apply_plan(session: Session) -> engine.Plan:
    """What "Apply rules to existing devices" would do now, per rule."""
    ensure_default_profile(session)
    return engine.plan(session, engine.load_rules(session))


def start_apply(session: Session, actor: Any, expected_changes: int | None = None) -> Operation:
    """Apply rules to existing devices: check that the counts the admin saw still hold, then
    add the queued operation ("Apply routing rules", kind rules.apply) whose job
    (kmeweb.integration.jobs.apply_rules_job, after the commit) writes the approvals and
    moves. Records audit "rules.apply.start". Flushes.
    Raises Conflict while an apply runs, when nothing would change, or when the number of
    devices that would change is not `expected_changes` any more.
    """
    running = operations.active_operation(session, APPLY_KEY)
    if running is not None:
        raise Conflict(
            f"The rules are already being applied (operation {running.id}); its progress is "
            "on the Operations page."
        )
    plan = apply_plan(session)
    n = plan.changes
    if not n:
        raise Conflict("The rules would change nothing: every device is where they say.")
    if expected_changes is not None and expected_changes != n:
        raise Conflict(
            f"The devices changed since the counts were shown: {count(n, 'device')} would "
            f"change now, not {expected_changes:,}. Look at the new counts and apply again.",
            code="count_mismatch",
        )
    operation = operations.create_operation(
        session,
        OperationKind.RULES_APPLY,
        f"Apply routing rules to {count(n, 'device')}",
        n,
        actor,
        dedup_key=APPLY_KEY,
    )
    operation.params = {"actor": actor if isinstance(actor, str) else actor.email}
    audit.record(
        session,
        actor,
        "rules.apply.start",
        "operation",
        operation.id,
        {"devices": n, "operation_id": operation.id, **_plan_details(plan)},
    )
    session.flush()
    dispatch.after_commit(session, operation)
    return operation


def _plan_details(plan: engine.Plan) -> dict[str, Any]:
    return {
        "rules": {
            line.rule: {"approve": line.approve, "move": line.move, "to": line.destination}
            for line in plan.lines
            if line.approve or line.move
        }
    }


def run_apply(session: Session, operation: Operation, actor: Any) -> int:
    """The apply start_apply accepted, as its job runs it: the rules are read and the devices
    placed NOW (approvals per upload, moves per destination) under `operation`; held devices
    record their rule. Returns how many devices changed; 0 when the operation already has its
    outbox changes (a second run changes nothing twice). Flushes.
    Raises Conflict when nothing is left to change.
    """
    if session.scalar(select(Change.id).where(Change.operation_id == operation.id).limit(1)):
        return 0
    ensure_default_profile(session)
    groups = engine.placements(session, engine.load_rules(session))
    changed = 0
    for group in groups:
        mark_held(session, group)
        changed += _approve_by_upload(session, operation, actor, group)
        if group.move:
            device_services.move_devices(
                session,
                group.move,
                group.destination.profile_id,
                actor,
                operation=operation,
                placed=group.values(),
            )
            device_services.merge_attributes(session, group.move, group.attributes)
            changed += len(group.move)
    if not changed:
        raise Conflict("The rules changed nothing: every device is already where they say.")
    operation.total = changed
    operation.label = f"Apply routing rules to {count(changed, 'device')}"
    session.flush()
    return changed


def _approve_by_upload(
    session: Session, operation: Operation, actor: Any, group: engine.Placement
) -> int:
    """Approve the group's pending devices, one upload at a time (KME approves uploads)."""
    if not group.approve:
        return 0
    by_upload: dict[int | None, list[int]] = {}
    for where in id_filters(session, Device.id, group.approve):
        for device_id, upload_id in session.execute(
            select(Device.id, Device.upload_id).where(where)
        ):
            by_upload.setdefault(upload_id, []).append(device_id)
    for upload_id, ids in by_upload.items():
        upload = session.get(Upload, upload_id) if upload_id is not None else None
        part = engine.Placement(group.rule, group.destination, approve=sorted(ids))
        approvals.place_approved(session, operation, actor, upload, [part])
    return len(group.approve)
