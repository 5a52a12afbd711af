"""Pull: uploads, devices, auto-approve, reseller default profile, portal edits and conflicts."""

from __future__ import annotations

from sqlalchemy import func, select

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.identifiers import luhn_check_digit
from kmeweb.integration import approvals, routing
from kmeweb.integration.models import Reseller, Upload
from kmeweb.operations.models import Operation
from kmeweb.profiles import services as profile_services
from kmeweb.profiles.models import Profile
from kmeweb.rules import services as rules
from kmeweb.sync.jobs import start_pull
from tests.sync_fixtures import kme_profile


def _pull(session, work) -> Operation:
    operation_id = start_pull(session, "test").id
    session.commit()
    work()
    return session.get(Operation, operation_id)


def _count(session, *where) -> int:
    return session.scalar(select(func.count()).select_from(Device).where(*where))


def test_pull_brings_uploads_and_their_pending_devices(session, integration, sim, work):
    operation = _pull(session, work)
    assert operation.status == "done", operation.error
    assert operation.total == 1450 and operation.done == 1450
    uploads = session.scalars(select(Upload).order_by(Upload.device_count)).all()
    assert [(u.device_count, u.status) for u in uploads] == [(250, "pending"), (1200, "pending")]
    assert session.scalar(select(Reseller.name)) == sim.creds["reseller_name"]
    assert _count(session, Device.approval == "pending", Device.profile_id.is_(None)) == 1450
    first = sim.devices()[next(iter(sim.devices()))]
    local = session.scalar(select(Device).where(Device.kme_device_id == first.id))
    assert local.imei == first.mei and local.serial == first.serial and local.model == first.model
    assert session.scalar(select(func.count()).where(AuditEvent.action == "sync.pull")) == 1


def test_incremental_pull_fetches_only_changes(session, integration, sim, work):
    _pull(session, work)
    sim.upload(30, reseller="Second Reseller")
    operation = _pull(session, work)
    assert operation.status == "done"
    assert operation.total == 30  # only the new devices came over the wire
    assert _count(session) == 1480


def _imeis(prefix: str, n: int) -> list[str]:
    body = [f"{prefix}{i:06d}"[:14].ljust(14, "0") for i in range(n)]
    return [b + str(luhn_check_digit(b)) for b in body]


def test_rules_route_a_new_upload_by_model_and_order_number(session, integration, sim, work):
    _pull(session, work)
    sales = kme_profile(session, "Sales", description="field sales")
    kiosk = kme_profile(session, "Kiosk", description="tablets")
    session.commit()
    work()  # the profiles are created in KME first
    reseller = session.scalar(select(Reseller))
    tablets = rules.create_rule(
        session,
        {"name": "Tablets", "model_patterns": "SM-T*", "action": "approve", "profile_id": kiosk.id},
        "test",
    )
    orders = rules.create_rule(
        session,
        {
            "name": "Sales orders",
            "reseller_ids": [reseller.id],
            "order_patterns": "PO-SALES-*",
            "action": "approve",
            "profile_id": sales.id,
        },
        "test",
    )
    session.commit()
    phones = [{"mei": m, "model": "SM-G991B"} for m in _imeis("3520990", 30)]
    pads = [{"mei": m, "model": "SM-T505"} for m in _imeis("3520991", 10)]
    sales_upload = sim.upload(
        0, reseller=sim.creds["reseller_name"], orderNo="PO-SALES-0042", devices=phones + pads
    )
    other = sim.upload(5, reseller=sim.creds["reseller_name"], orderNo="PO-HQ-0001")

    operation = _pull(session, work)  # the pull routes the uploads, the push assigns them
    assert operation.status == "done"
    work()
    routed = session.scalar(select(Upload).where(Upload.kme_upload_id == sales_upload["uploadId"]))
    assert routed.status == "approved"
    devices = session.scalars(select(Device).where(Device.upload_id == routed.id)).all()
    placed = {(d.model, d.approval, d.profile_id, d.rule_id, d.sync_state) for d in devices}
    assert placed == {
        ("SM-G991B", "approved", sales.id, orders.id, "synced"),
        ("SM-T505", "approved", kiosk.id, tablets.id, "synced"),
    }
    for device in devices:
        remote = sim.device(device.kme_device_id)
        want = kiosk if device.model == "SM-T505" else sales
        assert remote["approved"] is True and remote["profileId"] == want.kme_profile_id

    # Everything else waits for approval, held by the last rule, in no profile yet.
    waiting = session.scalar(select(Upload).where(Upload.kme_upload_id == other["uploadId"]))
    assert waiting.status == "pending"
    held = session.scalars(select(Device).where(Device.upload_id == waiting.id)).all()
    catch_all = rules.list_rules(session)[-1]
    assert {(d.approval, d.profile_id, d.rule_id) for d in held} == {
        ("pending", None, catch_all.id)
    }


def test_apply_rules_to_existing_devices_reaches_kme_through_a_worker(
    session, integration, sim, work
):
    _pull(session, work)
    small = session.scalar(select(Upload).where(Upload.device_count == 250))
    approvals.approve_upload(session, small.id, "test")  # 250 devices in the Default Profile
    kiosk = kme_profile(session, "Kiosk")
    session.commit()
    work()
    models = session.execute(
        select(Device.model, func.count())
        .where(Device.upload_id == small.id)
        .group_by(Device.model)
    ).all()
    model, n = max(models, key=lambda row: row[1])
    rules.create_rule(
        session,
        {"name": "By model", "model_patterns": model, "action": "approve", "profile_id": kiosk.id},
        "test",
    )
    session.commit()
    assert _count(session, Device.profile_id == kiosk.id) == 0  # saving moves nothing

    plan = routing.apply_plan(session)
    assert plan.changes == n  # the 1,200 still pending wait: the last rule holds them
    operation = routing.start_apply(session, "test", expected_changes=n)
    session.commit()
    work()  # the apply job writes the moves, the push sends them
    operation = session.get(Operation, operation.id)
    assert (operation.status, operation.total, operation.done) == ("done", n, n)
    moved = session.scalars(select(Device).where(Device.profile_id == kiosk.id)).all()
    assert len(moved) == n and {d.sync_state for d in moved} == {"synced"}
    assert {sim.device(d.kme_device_id)["profileId"] for d in moved} == {kiosk.kme_profile_id}


def test_portal_edit_applies_unless_a_local_change_is_pending(session, integration, sim, work):
    _pull(session, work)
    upload = session.scalar(select(Upload).order_by(Upload.device_count))
    approvals.approve_upload(session, upload.id, "test")
    session.commit()
    work()
    sales = kme_profile(session, "Sales")
    session.commit()
    work()
    default = profile_services.default_profile(session)
    a, b = session.scalars(
        select(Device).where(Device.upload_id == upload.id).order_by(Device.id).limit(2)
    ).all()
    assert a.profile_id == default.id and a.sync_state == "synced"
    # b gets a local change that is not pushed yet (no worker runs before the pull)
    from kmeweb.devices import services as device_services

    device_services.move_devices(session, [b.id], sales.id, "test")
    session.commit()
    # In the Samsung portal, both devices are put into Sales.
    for device in (a, b):
        sim.control("PATCH", f"/devices/{device.kme_device_id}", json={"profileId": None})
    sim.control("PATCH", f"/devices/{a.kme_device_id}", json={"profileId": sales.kme_profile_id})
    sim.control("PATCH", f"/devices/{b.kme_device_id}", json={"profileId": None})

    from kmeweb.sync import jobs

    operation = jobs.start_pull(session, "test")
    session.commit()
    # Run only the pull: b's pending move stays in the outbox meanwhile.
    jobs.pull_job(operation.id)
    session.expire_all()
    assert session.get(Device, a.id).profile_id == sales.id  # KME wins: no local change
    assert session.get(Device, b.id).profile_id == sales.id  # local pending move kept
    assert session.get(Device, b.id).sync_state == "pending"
    event = session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "device.changed_in_portal", AuditEvent.target_id == str(a.id)
        )
    )
    assert event.details["profile_id"] == [default.id, sales.id]
    assert event.details["note"] == "changed in Samsung portal"


def test_portal_profile_edit_is_applied_and_audited(session, integration, sim, work):
    profile = kme_profile(session, "Warehouse", description="old text")
    session.commit()
    work()
    profile = session.get(Profile, profile.id)
    assert profile.kme_profile_id and profile.sync_state == "synced"
    sim.control("PATCH", f"/profiles/{profile.kme_profile_id}", json={"description": "new text"})
    _pull(session, work)
    session.expire_all()
    assert session.get(Profile, profile.id).description == "new text"
    event = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "profile.changed_in_portal")
    )
    assert event.details["description"] == ["old text", "new text"]


def test_profiles_created_in_the_portal_appear_locally(session, integration, sim, work):
    from kmeweb.knox import KnoxClient
    from kmeweb.knox import Profile as KnoxProfile
    from tests.knox_config import client_config

    with KnoxClient(client_config(sim.creds, sim.url)) as client:
        client.create_profile(
            KnoxProfile(
                name="Made in portal",
                supported_mdm="Other",
                skip_setup_wizard=True,
                allow_user_cancel=False,
                do_enabled=True,
                mdm_apk_url="https://mdm.example/a.apk",
            )
        )
    _pull(session, work)
    profile = session.scalar(select(Profile).where(Profile.name == "Made in portal"))
    assert profile is not None and profile.kind == "kme" and profile.token
    assert session.scalar(select(AuditEvent.action).where(AuditEvent.target_id == str(profile.id)))


def test_a_device_known_locally_by_imei_is_linked_not_duplicated(session, integration, sim, work):
    remote = next(iter(sim.devices().values()))
    default = profile_services.ensure_default_profile(session)
    local = Device(imei=remote.mei, approval="approved", profile_id=default.id, attributes={})
    session.add(local)
    session.commit()
    _pull(session, work)
    assert _count(session) == 1450  # not 1451
    session.refresh(local)
    assert local.kme_device_id == remote.id


def test_a_profile_with_a_pending_local_change_keeps_its_local_value(
    session, integration, sim, work
):
    from kmeweb.sync import jobs

    kept = kme_profile(session, "Kept local", description="v1")
    portal = kme_profile(session, "Portal wins", description="v1")
    session.commit()
    work()
    kept, portal = session.get(Profile, kept.id), session.get(Profile, portal.id)
    assert kept.sync_state == portal.sync_state == "synced"
    # An admin edits "Kept local" in kmeweb; the push has not run yet.
    profile_services.update_profile(
        session,
        kept.id,
        {"name": kept.name, "description": "local edit", "config": kept.config},
        kept.version,
        "test",
    )
    session.commit()
    # Meanwhile both profiles are edited in the Samsung portal.
    for profile in (kept, portal):
        sim.control(
            "PATCH", f"/profiles/{profile.kme_profile_id}", json={"description": "portal edit"}
        )
    operation = jobs.start_pull(session, "test")
    session.commit()
    jobs.pull_job(operation.id)  # only the pull: the local change stays in the outbox
    session.expire_all()
    kept, portal = session.get(Profile, kept.id), session.get(Profile, portal.id)
    assert (kept.description, kept.sync_state) == ("local edit", "pending")
    assert (portal.description, portal.sync_state) == ("portal edit", "synced")
    work()  # the push then sends the local value: KME ends as kmeweb says
    assert sim.profiles()[kept.kme_profile_id]["description"] == "local edit"
    assert session.get(Profile, kept.id).sync_state == "synced"
