"""Routing rules without HTTP: what an admin may save, the order they are tried in, where the
first matching rule sends a device (the pull's hook, Approve All Devices, Apply rules to
existing devices), and what happens when a rule's profile is deleted."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from kmeweb.audit.models import AuditEvent
from kmeweb.audit.readable import readable
from kmeweb.devices.models import Device
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.integration import approvals, routing
from kmeweb.integration.models import Upload
from kmeweb.outbox.models import Change
from kmeweb.profiles import services as profile_services
from kmeweb.rules import engine
from kmeweb.rules import services as rules
from kmeweb.rules.models import RoutingRule
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_end_user,
    make_profile,
    make_reseller,
    make_upload,
    next_imei,
)


def _fields(err: ValidationError) -> dict[str | None, str]:
    return {e.field: e.message for e in err.each()}


def test_bad_input_is_refused_next_to_each_field_and_nothing_is_saved(session, admin):
    make_default_profile(session)
    own = make_profile(session, name="Own CSV", kind="self_maintained", config={})
    with pytest.raises(ValidationError) as refused:
        rules.create_rule(
            session,
            {
                "name": "",
                "reseller_ids": [999999],
                "order_patterns": "PO-[SALES]",
                "model_patterns": "*",
                "identifiers": "353456789012345\nnot-an-imei!",
                "imei_from": "35000000000000",
                "profile_id": own.id,
            },
            admin,
        )
    fields = _fields(refused.value)
    assert fields["name"] == "Enter a name."
    assert fields["reseller_ids"].startswith("Unknown reseller: 999999.")
    assert "“PO-[SALES]” is not a pattern" in fields["order_patterns"]
    assert "matches every model" in fields["model_patterns"]
    assert "353456789012345" in fields["identifiers"]  # its Luhn digit is wrong
    assert fields["imei_from"] == "An IMEI has 15 digits."
    assert fields["profile_id"] == "Choose a Samsung Knox Mobile Enrollment profile."
    session.rollback()
    assert count_rows(session, RoutingRule, RoutingRule.catch_all.is_(False)) == 0


def test_a_rule_needs_a_condition_a_whole_range_and_a_kme_profile_for_its_user(session, admin):
    make_default_profile(session)
    user = make_end_user(session)
    with pytest.raises(ValidationError) as refused:
        rules.create_rule(session, {"name": "Everything"}, admin)
    assert _fields(refused.value) == {
        "conditions": "Give the rule at least one condition: the last rule already takes "
        "everything else."
    }
    with pytest.raises(ValidationError) as refused:
        rules.create_rule(
            session,
            {"name": "R", "imei_from": "350000000000009", "imei_to": "340000000000000"},
            admin,
        )
    assert _fields(refused.value) == {"imei_to": "The range ends before it starts."}
    with pytest.raises(ValidationError) as refused:
        rules.create_rule(
            session, {"name": "R", "model_patterns": "SM-T*", "end_user_id": user.id}, admin
        )
    assert "carries no user" in _fields(refused.value)["end_user_id"]


def test_rules_are_saved_before_the_catch_all_edited_with_a_version_and_audited(session, admin):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    first = rules.create_rule(session, {"name": "Tablets", "model_patterns": "SM-T*"}, admin)
    second = rules.create_rule(
        session,
        {"name": "Sales", "order_patterns": "PO-SALES-*\nPO-FIELD-*", "profile_id": sales.id},
        admin,
    )
    session.commit()
    listed = rules.list_rules(session)
    assert [r.name for r in listed] == ["Tablets", "Sales", "Everything else"]
    assert listed[-1].catch_all
    assert second.order_patterns == ["PO-SALES-*", "PO-FIELD-*"]

    rules.update_rule(
        session,
        first.id,
        {"name": "Tablets", "model_patterns": "SM-T*, SM-X*", "action": "approve"},
        admin,
        expected_version=1,
    )
    session.commit()
    assert first.version == 2 and first.model_patterns == ["SM-T*", "SM-X*"]
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "rule.update")).one()
    assert event.details["changed"]["action"] == ["hold", "approve"]
    assert event.details["version"] == 2
    shown = readable(session, [event])[event.id]  # the Audit log names the rule
    assert shown.target == "rule Tablets"
    assert ("Changed", "Model patterns: SM-T* → SM-T*, SM-X*; Action: hold → approve") in (
        shown.details
    )

    with pytest.raises(Conflict) as stale:  # another admin saved version 2 meanwhile
        rules.update_rule(session, first.id, {"name": "Pads"}, admin, expected_version=1)
    assert stale.value.message == rules.STALE_RULE
    with pytest.raises(Conflict):
        rules.delete_rule(session, listed[-1].id, admin)
    with pytest.raises(NotFound):
        rules.get_rule_or_404(session, 999999)


def test_two_admins_reordering_at_once_the_second_gets_a_conflict(session, admin):
    make_default_profile(session)
    a = rules.create_rule(session, {"name": "A", "model_patterns": "SM-A*"}, admin)
    b = rules.create_rule(session, {"name": "B", "model_patterns": "SM-B*"}, admin)
    c = rules.create_rule(session, {"name": "C", "model_patterns": "SM-C*"}, admin)
    session.commit()
    seen = f"{a.id},{b.id},{c.id}"  # what both admins' pages showed
    rules.move_rule(session, c.id, "up", admin, expected_order=seen)
    session.commit()
    assert [r.name for r in rules.list_rules(session)] == ["A", "C", "B", "Everything else"]
    with pytest.raises(Conflict) as late:
        rules.set_order(session, [b.id, a.id, c.id], admin, expected_order=seen)
    assert late.value.message == rules.STALE_ORDER
    session.rollback()
    assert [r.name for r in rules.list_rules(session)] == ["A", "C", "B", "Everything else"]
    with pytest.raises(ValidationError):
        rules.set_order(session, [a.id, a.id, c.id], admin)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "rule.order")).one()
    assert event.details == {"order": ["A", "C", "B"], "old_order": ["A", "B", "C"]}


def _upload_with(session, reseller, order, models: dict[str, int]) -> Upload:
    upload = make_upload(session, reseller_id=reseller.id, order_number=order)
    for model, n in models.items():
        bulk_devices(session, n, None, approval="pending", upload_id=upload.id, model=model)
    return upload


def test_the_first_matching_rule_places_each_device_of_a_new_upload(session, admin):
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    kiosk = make_profile(session, name="Kiosk")
    execs = make_profile(session, name="Executives")
    alice = make_end_user(session, username="alice@example.com")
    a, b = make_reseller(session, name="Reseller A"), make_reseller(session, name="Reseller B")
    vip = next_imei()
    session.add(Device(imei=vip, model="SM-G991B", approval="pending", attributes={}))
    upload_sales = _upload_with(session, a, "PO-SALES-7", {"SM-G991B": 6, "SM-T505": 2})
    session.execute(update(Device).where(Device.imei == vip).values(upload_id=upload_sales.id))
    upload_b = _upload_with(session, b, "PO-SALES-8", {"SM-G991B": 3, "SM-T505": 1})
    vip_rule = rules.create_rule(
        session,
        {"name": "Executives", "identifiers": vip, "action": "approve", "profile_id": execs.id},
        admin,
    )
    kiosk_rule = rules.create_rule(
        session,
        {
            "name": "Tablets",
            "model_patterns": "sm-t*",  # patterns ignore case
            "action": "approve",
            "profile_id": kiosk.id,
            "attributes": {"site": "Store 12"},
        },
        admin,
    )
    sales_rule = rules.create_rule(
        session,
        {
            "name": "Sales phones",
            "reseller_ids": [a.id],
            "order_patterns": "PO-SALES-*",
            "action": "approve",
            "profile_id": sales.id,
            "end_user_id": alice.id,
        },
        admin,
    )
    session.commit()
    catch_all = rules.list_rules(session)[-1].id

    stats = routing.route_uploads(session, [upload_sales.id, upload_b.id])
    assert stats == {
        "uploads_auto_approved": 1,
        "devices_auto_approved": 9,  # the VIP phone, 6 sales phones, 2 tablets
        "devices_held_by_rule": 4,  # B's 3 phones (the last rule), and B's tablet with them
    }
    rows = session.execute(
        select(
            Device.upload_id,
            Device.model,
            Device.approval,
            Device.profile_id,
            Device.rule_id,
            Device.rule_note,
        )
    ).all()
    assert set(rows) == {
        (upload_sales.id, "SM-G991B", "approved", execs.id, vip_rule.id, None),
        (upload_sales.id, "SM-G991B", "approved", sales.id, sales_rule.id, None),
        (upload_sales.id, "SM-T505", "approved", kiosk.id, kiosk_rule.id, None),
        # KME approves whole uploads: B's tablet waits with the phones the last rule holds.
        (upload_b.id, "SM-T505", "pending", None, kiosk_rule.id, engine.WAITS_NOTE),
        (upload_b.id, "SM-G991B", "pending", None, catch_all, None),
    }
    phones = session.scalars(select(Device).where(Device.rule_id == sales_rule.id)).all()
    assert {d.end_user_id for d in phones} == {alice.id}
    tablets = session.scalars(
        select(Device).where(Device.rule_id == kiosk_rule.id, Device.approval == "approved")
    ).all()
    assert {d.attributes["site"] for d in tablets} == {"Store 12"}
    session.expire_all()
    assert session.get(Upload, upload_sales.id).status == "approved"
    assert session.get(Upload, upload_b.id).status == "pending"
    event = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "upload.approve", AuditEvent.target_id == str(upload_sales.id)
        )
    ).one()
    assert event.actor == "sync"
    assert event.details["rules"] == {"Executives": 1, "Tablets": 2, "Sales phones": 6}
    # KME hears of each destination: the upload approval, then the devices' assignments.
    kinds = {(c.kind, c.profile_id) for c in session.scalars(select(Change))}
    assert ("upload.approve", sales.id) in kinds and ("device.approve", kiosk.id) in kinds
    assert routing.route_uploads(session, [upload_b.id])["devices_held_by_rule"] == 0

    # The admin approves what waits: each device goes where its rule says, as the upload's
    # page says before the admin clicks (counted per rule, in rule order).
    target = approvals.approval_target_name(session, session.get(Upload, upload_b.id))
    assert target == f"Kiosk (1 device), {default.name} (3 devices)"
    approvals.approve_upload(session, upload_b.id, admin)
    session.commit()
    placed = session.execute(
        select(Device.model, Device.profile_id, Device.rule_note).where(
            Device.upload_id == upload_b.id
        )
    ).all()
    assert set(placed) == {("SM-T505", kiosk.id, None), ("SM-G991B", default.id, None)}
    assert session.get(Upload, upload_b.id).status == "approved"


def test_a_deleted_profile_breaks_its_rule_and_its_devices_wait_in_the_default(session, admin):
    default = make_default_profile(session)
    doomed = make_profile(session, name="Doomed")
    reseller = make_reseller(session)
    rule = rules.create_rule(
        session,
        {
            "name": "To Doomed",
            "reseller_ids": [reseller.id],
            "action": "approve",
            "profile_id": doomed.id,
        },
        admin,
    )
    session.commit()
    profile_services.delete_profile(session, doomed.id, admin)
    session.commit()
    session.expire_all()
    assert rule.profile_id is None and not rule.to_default
    view = rules.describe(session, rules.list_rules(session))[0]
    assert view.broken == "Rule “To Doomed” points at a profile that was deleted"

    upload = make_upload(session, pending=4, reseller_id=reseller.id)
    routing.route_uploads(session, [upload.id])
    devices = session.scalars(select(Device).where(Device.upload_id == upload.id)).all()
    assert {(d.approval, d.profile_id, d.rule_id, d.rule_note) for d in devices} == {
        ("approved", default.id, rule.id, view.broken)
    }


def test_preview_counts_what_the_rule_would_take_in_its_place(session, admin):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    kiosk = make_profile(session, name="Kiosk")
    reseller = make_reseller(session)
    _upload_with(session, reseller, "PO-SALES-1", {"SM-T505": 2, "SM-G991B": 5})
    bulk_devices(session, 3, kiosk, model="SM-T500")
    bulk_devices(session, 4, sales, model="SM-T220")
    rules.create_rule(
        session, {"name": "Old tablets", "model_patterns": "SM-T500", "profile_id": kiosk.id}, admin
    )
    session.commit()
    draft = rules.parse_rule(
        session, {"name": "Tablets", "model_patterns": "SM-T*", "profile_id": kiosk.id}
    )
    seen = engine.preview(session, draft, engine.load_rules(session))
    # The 3 SM-T500 belong to the rule before it; 2 pending tablets, 4 in Sales would move.
    assert (seen.pending, seen.approved, seen.already_there) == (2, 4, 0)
    assert seen.moves == [("Sales", 4)] and seen.destination == "Kiosk"
    assert len(seen.sample) == 6
    assert count_rows(session, Device, Device.profile_id == kiosk.id) == 3  # nothing moved


def test_apply_shows_counts_first_then_moves_through_the_outbox(session, admin):
    default = make_default_profile(session)
    kiosk = make_profile(session, name="Kiosk")
    sales = make_profile(session, name="Sales")
    tablets = bulk_devices(session, 5, default, model="SM-T505")
    placed_by_hand = bulk_devices(session, 2, sales, model="SM-G991B")
    rules.create_rule(
        session,
        {"name": "Tablets", "model_patterns": "SM-T*", "action": "approve", "profile_id": kiosk.id},
        admin,
    )
    session.commit()
    plan = routing.apply_plan(session)
    by_rule = {line.rule: line for line in plan.lines}
    assert (by_rule["Tablets"].move, by_rule["Tablets"].stay) == (5, 0)
    assert by_rule["Everything else"].stay == 2  # the catch-all never takes placed devices
    assert plan.changes == 5

    with pytest.raises(Conflict) as stale:
        routing.start_apply(session, admin, expected_changes=4)
    assert stale.value.code == "count_mismatch"
    operation = routing.start_apply(session, admin, expected_changes=5)
    session.commit()
    assert routing.run_apply(session, operation, admin) == 5
    session.commit()
    assert routing.run_apply(session, operation, admin) == 0  # a second run writes nothing
    moved = session.scalars(select(Device).where(Device.id.in_(tablets))).all()
    assert {(d.profile_id, d.sync_state) for d in moved} == {(kiosk.id, "pending")}
    changes = session.scalars(select(Change).where(Change.operation_id == operation.id)).all()
    assert {c.kind for c in changes} == {"device.move"}
    assert sum(c.device_count for c in changes) == 5
    kept = session.scalars(select(Device.profile_id).where(Device.id.in_(placed_by_hand)))
    assert set(kept) == {sales.id}
    with pytest.raises(Conflict):
        routing.start_apply(session, admin)  # one runs (its push has not finished)


def test_each_device_goes_through_the_rules_once_a_later_rule_waits_for_apply(session, admin):
    make_default_profile(session)
    kiosk = make_profile(session, name="Kiosk")
    reseller = make_reseller(session)
    upload = _upload_with(session, reseller, "PO-1", {"SM-T505": 3})
    assert routing.route_uploads(session, [upload.id])["devices_held_by_rule"] == 3
    rules.create_rule(
        session,
        {"name": "Tablets", "model_patterns": "SM-T*", "action": "approve", "profile_id": kiosk.id},
        admin,
    )
    session.commit()
    # The next pull leaves them: saving a rule moves no device already here.
    assert routing.route_uploads(session, [upload.id]) == {
        "uploads_auto_approved": 0,
        "devices_auto_approved": 0,
        "devices_held_by_rule": 0,
    }
    assert count_rows(session, Device, Device.approval == "pending") == 3
    # New devices of the same upload arrive: they wait with it (KME approves whole uploads).
    bulk_devices(session, 2, None, approval="pending", upload_id=upload.id, model="SM-T505")
    assert routing.route_uploads(session, [upload.id])["devices_held_by_rule"] == 2
    waiting = session.scalars(select(Device.rule_note).where(Device.approval == "pending"))
    assert list(waiting).count(engine.WAITS_NOTE) == 2
    # On request, the rules reach them all.
    assert routing.apply_plan(session).changes == 5
