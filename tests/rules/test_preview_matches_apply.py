"""What the rule editor's preview says a rule would do is what "Apply rules to existing
devices" does, on a tenant of tens of thousands of devices with overlapping rules of every
condition kind; and saving a rule moves no device.

The tenant is `flask seed-scale`'s (kmeweb.demo.scale): uploads from several resellers, some
waiting for approval, approved devices spread over KME profiles and the Default Profile, six
models (SM-T870 among them), IMEIs in one run's range. On top of it: order numbers of the sales
department (PO-SALES-*, some in lower case), and a self-maintained profile holding some
devices (rules never place those).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select, update

from kmeweb.demo.scale import seed_scale
from kmeweb.devices.models import Approval, Device
from kmeweb.integration import routing
from kmeweb.integration.models import Reseller, Upload
from kmeweb.profiles import services as profile_services
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.rules import engine
from kmeweb.rules import services as rules
from kmeweb.rules.models import RoutingRule

DEVICES = 30_000
ACTOR = "admin@example.com"


def _seed(session) -> dict[str, Any]:
    seed_scale(session, uploads=200, devices=DEVICES, profiles=12, users=50)
    uploads = list(session.scalars(select(Upload.id).order_by(Upload.id)))
    resellers = list(session.scalars(select(Reseller.id).order_by(Reseller.id)))
    for i, upload_id in enumerate(uploads):
        # Every reseller with uploads waiting and approved (seed-scale's round robin of
        # resellers follows its waiting uploads), a third of them from the sales department.
        values = {"reseller_id": resellers[i // 5 % len(resellers)]}
        if i % 3:
            values["order_number"] = f"PO-SALES-{i:04d}" if i % 3 == 1 else f"po-sales-{i:04d}"
        session.execute(update(Upload).where(Upload.id == upload_id).values(**values))
    lab = Profile(
        name="Lab",
        description="",
        kind=ProfileKind.SELF_MAINTAINED,
        without_token=True,
        config={},
    )
    session.add(lab)
    session.flush()
    in_lab = (
        select(Device.id)
        .where(Device.approval == Approval.APPROVED, Device.model == "SM-T870")
        .order_by(Device.id)
        .limit(600)
        .scalar_subquery()
    )
    session.execute(
        update(Device)
        .where(Device.id.in_(in_lab))
        .values(profile_id=lab.id)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    kme = list(
        session.scalars(
            select(Profile.id).where(Profile.kind == ProfileKind.KME).order_by(Profile.id)
        )
    )
    imeis = list(session.scalars(select(Device.imei).order_by(Device.id)))
    serials = list(session.scalars(select(Device.serial).order_by(Device.id)))
    return {"kme": kme, "resellers": resellers, "imeis": imeis, "serials": serials, "lab": lab.id}


def _rule_data(fx: dict[str, Any]) -> list[dict[str, Any]]:
    """Overlapping rules, one or more of each condition kind, in the order they are tried."""
    kme, resellers, imeis, serials = fx["kme"], fx["resellers"], fx["imeis"], fx["serials"]
    vip = imeis[5::97][:300] + serials[11::131][:120]
    return [
        {
            "name": "First reseller's tablets",
            "reseller_ids": [resellers[0]],
            "model_patterns": "SM-T*",
            "action": "approve",
            "profile_id": str(kme[0]),
        },
        {
            "name": "Sales department",
            "order_patterns": "PO-SALES-*",
            "action": "approve",
            "profile_id": str(kme[1]),
        },
        {
            "name": "Tablets",
            "model_patterns": "SM-T* SM-X2??",
            "action": "hold",
            "profile_id": str(kme[2]),
        },
        {
            "name": "VIP",
            "identifiers": "\n".join(["IMEI or serial", *vip]),
            "action": "approve",
            "profile_id": str(kme[3]),
        },
        {
            "name": "Block of IMEIs",
            "imei_from": imeis[DEVICES // 2],
            "imei_to": imeis[DEVICES // 2 + 6000],
            "action": "approve",
            "profile_id": "default",
        },
        {
            "name": "Two resellers' orders",
            "reseller_ids": [resellers[1], resellers[2]],
            "order_patterns": ["po-*-0000?1", "*-00015?"],
            "action": "approve",
            "profile_id": str(kme[4]),
        },
        {
            "name": "Doomed",
            "reseller_ids": [resellers[3]],
            "action": "approve",
            "profile_id": str(kme[5]),
        },
    ]


def _device_rows(session) -> list[Any]:
    """What a rule may change on each device (where it is, what placed it, its sync)."""
    session.expire_all()
    return session.execute(
        select(
            Device.id,
            Device.approval,
            Device.profile_id,
            Device.rule_id,
            Device.rule_version,
            Device.rule_note,
            Device.end_user_id,
            Device.sync_state,
            Device.version,
            Device.updated_at,
        ).order_by(Device.id)
    ).all()


def _counts(preview: engine.Preview) -> dict[str, Any]:
    return {
        "pending": preview.pending,
        "approved": preview.approved,
        "moves": preview.moves,
        "already_there": preview.already_there,
        "sample": preview.sample,
    }


def test_saving_rules_moves_no_device_and_the_preview_is_what_applying_does(session):
    fx = _seed(session)
    before_saving = _device_rows(session)

    # Each rule previewed as a draft, then saved: the saved rule previews the same.
    for data in _rule_data(fx):
        draft = rules.parse_rule(session, data)
        saw = engine.preview(session, draft, engine.load_rules(session))
        rule = rules.create_rule(session, data, ACTOR)
        session.commit()
        saved = engine.preview(session, engine.RuleSpec.of(rule), engine.load_rules(session))
        assert _counts(saved) == _counts(saw), rule.name
        assert saw.total > 0, f"{rule.name} matches nothing: the fixture tests nothing"
    tablets = session.scalar(select(RoutingRule).where(RoutingRule.name == "Tablets"))
    rules.update_rule(
        session,
        tablets.id,
        {**_rule_data(fx)[2], "model_patterns": "SM-T* SM-X2?? SM-A5*"},
        ACTOR,
        expected_version=1,
    )
    session.commit()
    assert _device_rows(session) == before_saving, "saving a rule changed devices"

    # A rule whose profile was deleted: its devices wait in the Default Profile.
    doomed = session.scalar(select(RoutingRule).where(RoutingRule.name == "Doomed"))
    profile_services.delete_profile(session, fx["kme"][5], ACTOR)
    session.commit()
    session.expire_all()
    assert doomed.profile_id is None and not doomed.to_default

    saved = engine.load_rules(session)
    previews = {spec.key: engine.preview(session, spec, saved) for spec in saved}
    plan = routing.apply_plan(session)
    lines = {line.rule_key: line for line in plan.lines}
    for spec in saved:
        p, line = previews[spec.key], lines[spec.key]
        pending = line.approve + line.hold + line.wait
        assert (p.pending, p.approved) == (pending, line.move + line.stay), spec.name
        assert (p.moving, p.already_there) == (line.move, line.stay), spec.name
    assert previews[doomed.id].note and previews[doomed.id].moves == []
    nowhere = rules.parse_rule(session, {"name": "No such order", "order_patterns": "NOPE-*"})
    assert engine.preview(session, nowhere, saved).total == 0
    assert sum(p.total for p in previews.values()) == session.scalar(
        select(func.count()).where(engine.placeable())
    ), "each placeable device is previewed under exactly one rule"

    before = {row.id: row for row in _device_rows(session)}
    operation = routing.start_apply(session, ACTOR, expected_changes=plan.changes)
    session.commit()
    changed = routing.run_apply(session, operation, ACTOR)
    session.commit()
    after = {row.id: row for row in _device_rows(session)}

    names = dict(session.execute(select(Profile.id, Profile.name)).all())
    dests = engine.destinations(session, saved)
    placed = {
        i
        for i, row in after.items()
        if (row.approval, row.profile_id) != (before[i].approval, before[i].profile_id)
    }
    assert changed == plan.changes == len(placed)
    for spec in saved:
        p, dest = previews[spec.key], dests[spec.key]
        mine = [i for i, row in after.items() if row.rule_id == spec.key]
        was_pending = [i for i in mine if before[i].approval == Approval.PENDING]
        now_approved = [i for i in was_pending if after[i].approval == Approval.APPROVED]
        held = [i for i in was_pending if after[i].approval == Approval.PENDING]
        moved = Counter(
            names[before[i].profile_id]
            for i in mine
            if before[i].approval == Approval.APPROVED
            and after[i].profile_id != before[i].profile_id
        )
        line = lines[spec.key]
        assert len(was_pending) == p.pending, spec.name
        # KME approves whole uploads: what a rule approves at once in an upload another rule
        # holds in part waits with it, as the plan said.
        assert (len(now_approved), len(held)) == (line.approve, line.hold + line.wait), spec.name
        assert {after[i].profile_id for i in now_approved} <= {dest.profile_id}, spec.name
        assert sorted(moved.items(), key=lambda m: (-m[1], m[0])) == p.moves, spec.name
        notes = {after[i].rule_note for i in was_pending}
        assert notes <= {p.note, engine.WAITS_NOTE if line.wait else p.note}, spec.name
    assert {i for i, row in after.items() if row.profile_id == fx["lab"]} == {
        i for i, row in before.items() if row.profile_id == fx["lab"]
    }, "a rule placed a device of a self-maintained profile"
    assert routing.apply_plan(session).changes == 0  # applied: nothing left to change
