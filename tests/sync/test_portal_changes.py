"""Changes made in the Samsung portal, made visible (issue 24): the simulator over HTTP is
changed behind kmeweb's back through its control endpoints, a real RQ worker pulls and pushes.

KMEWEB_PORTAL_CHECK_DEVICES sets the size of the issue's check (default 2,000 devices, 1% of
them changed; the issue's 100,000 is run by hand)."""

from __future__ import annotations

import os
import time

from sqlalchemy import func, select, update

from kmeweb.audit.models import AuditEvent
from kmeweb.devices import portal
from kmeweb.devices import services as device_services
from kmeweb.devices.models import Device, DeviceEvent, DeviceEventKind
from kmeweb.integration.models import Integration, PortalPolicy
from kmeweb.knox.simulator.state import SimDevice
from kmeweb.operations.models import Operation
from kmeweb.sync.jobs import start_pull
from kmeweb.sync.knox import knox_client
from tests.sync_fixtures import kme_profile


def _pull(session, work, full: bool = False) -> Operation:
    operation_id = start_pull(session, "test", full=full).id
    session.commit()
    work()
    return session.get(Operation, operation_id)


def _tenant(session, sim, work, n: int) -> dict:
    """Kiosk and Sales in KME; `n` devices of an auto-approved upload in Kiosk, pulled."""
    kiosk = kme_profile(session, "Kiosk")
    sales = kme_profile(session, "Sales")
    session.commit()
    work()  # the push creates both profiles in KME
    kiosk, sales = session.merge(kiosk), session.merge(sales)
    sim.control("POST", "/resellers", json={"name": "Auto", "autoApprove": True})
    sim.upload(n, reseller="Auto", profileId=kiosk.kme_profile_id)
    _pull(session, work)
    ids = list(session.scalars(select(Device.id).where(Device.profile_id == kiosk.id)))
    assert len(ids) == n
    return {"kiosk": kiosk, "sales": sales, "ids": ids}


def _set_policy(session, policy: str) -> None:
    session.execute(update(Integration).values(portal_policy=policy))
    session.commit()


def _portal_move(sim, session, ids, kme_profile_id) -> None:
    """Move devices in the Samsung portal (one PATCH each, as an admin there would)."""
    for kme_id in session.scalars(select(Device.kme_device_id).where(Device.id.in_(ids))):
        sim.control("PATCH", f"/devices/{kme_id}", json={"profileId": kme_profile_id})


def _flagged(session) -> set[int]:
    return set(session.scalars(select(Device.id).where(Device.portal_changed_at.is_not(None))))


def _events(session, kind) -> int:
    return session.scalar(select(func.count(DeviceEvent.id)).where(DeviceEvent.kind == kind))


def test_the_issues_check_with_kmeweb_as_the_source_of_truth(session, integration, sim, work):
    n = int(os.environ.get("KMEWEB_PORTAL_CHECK_DEVICES", "2000"))
    t = _tenant(session, sim, work, n)
    kiosk, sales = t["kiosk"], t["sales"]
    _set_policy(session, PortalPolicy.OURS)
    changed = t["ids"][::100][: n // 100]
    _portal_move(sim, session, changed, sales.kme_profile_id)

    started = time.monotonic()
    operation_id = start_pull(session, "test").id
    session.commit()
    from kmeweb.sync.jobs import pull_job  # run the pull alone first: its push comes next

    pull_job(operation_id)
    pulled = time.monotonic() - started
    session.expire_all()
    assert _flagged(session) == set(changed)
    device = session.get(Device, changed[0])
    # Samsung's value and kmeweb's (kept) with the time: what the device page shows.
    assert (device.kme_seen_profile_id, device.profile_id) == (sales.id, kiosk.id)
    assert device.portal_previous == {"approval": "approved", "profile_id": kiosk.id}
    assert device.portal_changed_at is not None and device.sync_state == "pending"
    assert _events(session, DeviceEventKind.PORTAL_CHANGE) == len(changed)
    event = session.scalar(select(DeviceEvent).where(DeviceEvent.device_id == changed[0]))
    assert event.details == {"profile": ["Kiosk", "Sales"], "kept": "kmeweb"}

    started = time.monotonic()
    work()  # the push the pull asked for
    pushed = time.monotonic() - started
    kme_ids = session.scalars(select(Device.kme_device_id).where(Device.id.in_(changed)))
    devices = sim.devices()
    assert {devices[k].profile_id for k in kme_ids} == {kiosk.kme_profile_id}
    flagged_at = session.get(Device, changed[0]).portal_changed_at

    _pull(session, work)
    assert _flagged(session) == set(changed)  # still to be settled by an admin, not again
    assert session.get(Device, changed[0]).portal_changed_at == flagged_at
    assert _events(session, DeviceEventKind.PORTAL_CHANGE) == len(changed)
    assert session.get(Device, changed[0]).kme_seen_profile_id == kiosk.id
    print(f"\n{n:,} devices, {len(changed):,} changed: pull {pulled:.2f} s, push {pushed:.2f} s")


def test_adopt_takes_samsungs_value_flags_it_and_send_ours_again_restores_it(
    session, integration, sim, work, make_admin
):
    t = _tenant(session, sim, work, 40)
    kiosk, sales = t["kiosk"], t["sales"]
    moved, again = t["ids"][:3], t["ids"][3]
    _portal_move(sim, session, [*moved, again], sales.kme_profile_id)
    _pull(session, work)
    assert _flagged(session) == {*moved, again}
    device = session.get(Device, moved[0])
    assert (device.profile_id, device.sync_state) == (sales.id, "synced")  # adopted
    assert device.portal_previous == {"approval": "approved", "profile_id": kiosk.id}
    audit = session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "device.changed_in_portal",
            AuditEvent.target_id == str(moved[0]),
        )
    )
    assert audit.details["profile_id"] == [kiosk.id, sales.id]
    first_at = session.get(Device, again).portal_changed_at

    # Changed again in the portal: a newer flag time, the first previous values kept.
    _portal_move(sim, session, [again], None)
    _pull(session, work)
    device = session.get(Device, again)
    assert device.portal_changed_at > first_at
    assert device.portal_previous == {"approval": "approved", "profile_id": kiosk.id}
    assert device.profile_id == device_services.ensure_default_profile(session).id

    admin = make_admin("settler@example.com")
    operation = portal.send_ours_again(session, [*moved, again], admin)
    session.commit()
    work()
    assert session.get(Operation, operation.id).status == "done"
    assert {session.get(Device, i).profile_id for i in [*moved, again]} == {kiosk.id}
    kme_ids = session.scalars(select(Device.kme_device_id).where(Device.id.in_([*moved, again])))
    devices = sim.devices()
    assert {devices[k].profile_id for k in kme_ids} == {kiosk.kme_profile_id}
    _pull(session, work)
    assert _flagged(session) == set()


def test_a_user_changed_in_the_portal_is_flagged(session, integration, sim, work, make_admin):
    from kmeweb.directory.models import EndUser

    t = _tenant(session, sim, work, 5)
    ann = EndUser(username="ann@example.com", email="ann@example.com")
    bob = EndUser(username="bob@example.com", email="bob@example.com")
    session.add_all([ann, bob])
    session.commit()
    device_id = t["ids"][0]
    device_services.set_device_user(session, [device_id], ann.id, "pw-ann", "test")
    session.commit()
    work()
    kme_id = session.get(Device, device_id).kme_device_id
    assert sim.device(kme_id)["userName"] == "ann@example.com"
    _pull(session, work)
    assert _flagged(session) == set()  # kmeweb's own change, read back: no portal change
    sim.control("PATCH", f"/devices/{kme_id}", json={"userName": "bob@example.com"})
    _pull(session, work)
    device = session.get(Device, device_id)
    assert device.portal_changed_at is not None and device.kme_seen_user == "bob@example.com"
    assert device.portal_previous["user"] == "ann@example.com"
    assert device.end_user_id == bob.id  # ADOPT: a user of the directory is taken
    portal.send_ours_again(session, [device_id], make_admin("u@example.com"))
    session.commit()
    work()
    assert sim.device(kme_id)["userName"] == "ann@example.com"


def test_a_device_deleted_in_the_portal_is_flagged_not_found_and_kept(
    session, integration, sim, work
):
    t = _tenant(session, sim, work, 6)
    gone = t["ids"][:2]
    kme_ids = list(session.scalars(select(Device.kme_device_id).where(Device.id.in_(gone))))
    kept: list[SimDevice] = [sim.devices()[k] for k in kme_ids]
    with knox_client(session.get(Integration, integration.id)) as client:
        client.delete_devices(kme_ids)  # as an admin would in the Samsung portal
    _pull(session, work)  # an incremental pull cannot tell
    assert (
        session.scalar(select(func.count(Device.id)).where(Device.kme_missing_at.is_not(None))) == 0
    )
    _pull(session, work, full=True)
    missing = set(session.scalars(select(Device.id).where(Device.kme_missing_at.is_not(None))))
    assert missing == set(gone)
    assert all(session.get(Device, i) is not None for i in gone)  # kept, never dropped
    _pull(session, work, full=True)
    assert _events(session, DeviceEventKind.NOT_IN_KME) == 2  # once each

    # Back in KME (restored in the portal): the next pull that sees it clears the flag.
    with sim.state.lock:
        tenant = sim.state.tenants[sim.creds["customer_id"]]
        for d in kept:
            tenant.index_device(d)
            sim.state.bump(tenant, d)
    _pull(session, work, full=True)
    assert (
        session.scalar(select(func.count(Device.id)).where(Device.kme_missing_at.is_not(None))) == 0
    )


def test_a_push_that_failed_for_good_is_not_a_portal_change(session, integration, sim, work):
    t = _tenant(session, sim, work, 5)
    device_id = t["ids"][0]
    sim.fault(
        path="/kcs/v1/kme/devices/assignProfile",
        status=400,
        rate=1.0,
        code=4001703,
        message="BULK_ENROLL_DEVICE_INVALID",
    )
    device_services.move_devices(session, [device_id], t["sales"].id, "test")
    session.commit()
    work()
    device = session.get(Device, device_id)
    assert device.sync_state == "error"
    sim.control("DELETE", "/faults")
    _pull(session, work)
    device = session.get(Device, device_id)
    # KME still holds what it held: kmeweb keeps its value and the error, nothing is flagged.
    assert (device.profile_id, device.sync_state) == (t["sales"].id, "error")
    assert _flagged(session) == set()


def test_check_with_samsung_flags_a_portal_move_and_the_device_page_settles_it(
    client, login, actions, session, integration, sim, work
):
    """A move made in the portal since the last pull: Check with Samsung (device page, real
    worker) flags it at once under the policy; Send ours again from the page puts it back in
    kmeweb's profile, in kmeweb and in KME."""
    t = _tenant(session, sim, work, 3)
    kiosk, sales = t["kiosk"], t["sales"]
    device_id = t["ids"][0]
    _portal_move(sim, session, [device_id], sales.kme_profile_id)
    login("admin")
    assert actions.post(f"/devices/{device_id}/check").status_code == 303
    work()
    session.expire_all()
    device = session.get(Device, device_id)
    assert device.portal_changed_at is not None
    assert (device.profile_id, device.kme_seen_profile_id) == (sales.id, sales.id)  # adopted
    assert device.portal_previous["profile_id"] == kiosk.id
    page = client.get(f"/devices/{device_id}").get_data(as_text=True)
    assert "Send ours again" in page and "Take Samsung" in page

    response = actions.post(f"/devices/{device_id}/send-ours")
    assert response.status_code == 303
    work()
    session.expire_all()
    device = session.get(Device, device_id)
    assert (device.profile_id, device.portal_changed_at) == (kiosk.id, None)
    assert sim.devices()[device.kme_device_id].profile_id == kiosk.kme_profile_id
    assert device.sync_state == "synced"
