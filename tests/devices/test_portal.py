"""Settling devices changed in the Samsung portal: Send ours again and Take Samsung's, for
ids and for "all N matching" the table's "Changed in Samsung portal" filter (the request, and
the job a large selection runs). The pull that flags them is tested in tests/sync."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from kmeweb.audit.models import AuditEvent
from kmeweb.devices import portal
from kmeweb.devices.models import Device, KmeState
from kmeweb.devices.selection import DeviceFilter, DeviceSelection
from kmeweb.errors import Conflict, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change, ChangeKind
from tests.factories import (
    SYNC_FIELDS,
    bulk_devices,
    make_default_profile,
    make_end_user,
    make_profile,
    set_device_sync,
)

CHANGED = DeviceFilter(kme=KmeState.CHANGED)


def _flag(session, ids, **values):
    seen = {k: values.pop(k) for k in SYNC_FIELDS if k in values}
    session.execute(
        update(Device)
        .where(Device.id.in_(ids))
        .values(portal_changed_at=utcnow() - timedelta(minutes=5), **values)
    )
    set_device_sync(session, ids, kme_seen_at=utcnow(), **seen)
    session.commit()


@pytest.fixture
def tenant(session):
    """Kiosk and Sales. In Sales, 3 devices the portal moved there from Kiosk and kmeweb
    adopted (ADOPT); in Kiosk, 2 the portal moved to Sales and kmeweb kept (OURS), and 2
    never changed; 1 pending device the portal approved into Sales (adopted)."""
    make_default_profile(session)
    kiosk = make_profile(session, name="Kiosk")
    sales = make_profile(session, name="Sales")
    adopted = bulk_devices(session, 3, sales, kme_device_id=None)
    kept = bulk_devices(session, 2, kiosk)
    calm = bulk_devices(session, 2, kiosk)
    approved_there = bulk_devices(session, 1, sales)
    seen_sales = {"kme_seen_approval": "approved", "kme_seen_profile_id": sales.id}
    _flag(
        session,
        adopted,
        portal_previous={"approval": "approved", "profile_id": kiosk.id},
        **seen_sales,
    )
    _flag(
        session,
        kept,
        portal_previous={"approval": "approved", "profile_id": kiosk.id},
        **seen_sales,
    )
    _flag(
        session,
        approved_there,
        portal_previous={"approval": "pending", "profile_id": None},
        **seen_sales,
    )
    return {
        "kiosk": kiosk,
        "sales": sales,
        "adopted": adopted,
        "kept": kept,
        "calm": calm,
        "approved_there": approved_there,
    }


def _device(session, device_id) -> Device:
    session.expire_all()
    return session.get(Device, device_id)


def test_send_ours_again_restores_what_was_adopted_and_pushes_what_was_kept(session, admin, tenant):
    kiosk = tenant["kiosk"]
    ids = tenant["adopted"] + tenant["kept"] + tenant["calm"] + tenant["approved_there"]
    operation = portal.send_ours_again(session, ids, admin)
    session.commit()
    for device_id in tenant["adopted"] + tenant["kept"]:
        device = _device(session, device_id)
        assert device.profile_id == kiosk.id  # kmeweb's value, back or kept
        assert device.sync_state == "pending" and device.portal_changed_at is None
        assert device.portal_previous is None
    # KME cannot take back an approval: that device stays flagged for Take Samsung's.
    assert _device(session, tenant["approved_there"][0]).portal_changed_at is not None
    pushed = [
        i
        for c in session.scalars(select(Change).where(Change.operation_id == operation.id))
        for i in c.payload["device_ids"]
    ]
    assert sorted(pushed) == sorted(tenant["adopted"] + tenant["kept"])
    assert operation.kind == ChangeKind.DEVICE_RESYNC and operation.total == 5
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "device.portal.send_ours"))
    assert event.details["sent"] == 5 and event.details["restored"] == 3
    assert event.details["approved_in_portal"] == 1 and event.details["not_flagged"] == 2


def test_take_samsungs_makes_kmes_values_kmewebs_own_without_a_push(session, admin, tenant):
    sales = tenant["sales"]
    ids = tenant["adopted"] + tenant["kept"] + tenant["approved_there"]
    assert portal.take_samsungs(session, ids, admin) == 6
    session.commit()
    for device_id in ids:
        device = _device(session, device_id)
        assert (device.profile_id, device.sync_state) == (sales.id, "synced")
        assert device.portal_changed_at is None
    assert session.scalar(select(Change.id)) is None
    assert session.scalar(
        select(AuditEvent.id).where(AuditEvent.action == "device.portal.take_samsungs")
    )


def test_the_user_kme_holds_is_taken_or_sent_back(session, admin, tenant):
    kiosk = tenant["kiosk"]
    ann = make_end_user(session, username="ann@example.com")
    bob = make_end_user(session, username="bob@example.com")
    [a, b] = bulk_devices(session, 2, kiosk, end_user_id=ann.id)
    values = {"portal_previous": {"user": "ann@example.com"}, "kme_seen_user": "BOB@example.com"}
    _flag(session, [a, b], kme_seen_approval="approved", kme_seen_profile_id=kiosk.id, **values)
    portal.take_samsungs(session, [a], admin)
    portal.send_ours_again(session, [b], admin)
    session.commit()
    assert _device(session, a).end_user_id == bob.id
    assert (_device(session, b).end_user_id, _device(session, b).sync_state) == (ann.id, "pending")


def test_nothing_flagged_is_refused(session, admin, tenant):
    with pytest.raises(ValidationError, match="None of the selected"):
        portal.send_ours_again(session, tenant["calm"], admin)
    with pytest.raises(ValidationError, match="None of the selected"):
        portal.take_samsungs(session, tenant["calm"], admin)


def test_counts_before_acting_for_ids_and_for_all_matching(session, tenant):
    sales = tenant["sales"]
    everything = DeviceSelection(sales.id, all_matching=True)
    changed = DeviceSelection(sales.id, all_matching=True, filter=CHANGED)
    ids = DeviceSelection(sales.id, ids=(*tenant["adopted"][:2], *tenant["approved_there"]))
    assert portal.selection_counts(session, everything) == portal.PortalCounts(4, 4, 1)
    assert portal.selection_counts(session, changed) == portal.PortalCounts(4, 4, 1)
    assert portal.selection_counts(session, ids) == portal.PortalCounts(3, 3, 1)
    assert portal.selection_counts(session, changed).sendable == 3
    kiosk = DeviceSelection(tenant["kiosk"].id, all_matching=True, filter=CHANGED)
    assert portal.selection_counts(session, kiosk) == portal.PortalCounts(2, 2, 0)


def test_all_matching_the_filter_is_guarded_by_the_count_the_admin_saw(session, admin, tenant):
    kiosk = DeviceSelection(tenant["kiosk"].id, all_matching=True, filter=CHANGED)
    with pytest.raises(Conflict) as err:
        portal.settle_selection(session, kiosk, portal.SEND_OURS, admin, expected_count=3)
    assert err.value.code == "count_mismatch"
    outcome = portal.settle_selection(session, kiosk, portal.SEND_OURS, admin, expected_count=2)
    session.commit()
    assert outcome.devices == 2 and not outcome.later
    assert {_device(session, i).portal_changed_at for i in tenant["kept"]} == {None}
    # The filter now matches none of Kiosk's devices.
    assert portal.selection_counts(session, kiosk) == portal.PortalCounts(0, 0, 0)


def test_a_large_all_matching_selection_is_settled_by_its_job(
    session, admin, tenant, monkeypatch, work
):
    monkeypatch.setattr(portal, "SELECTION_JOB_MIN", 2)
    sales = DeviceSelection(tenant["sales"].id, all_matching=True, filter=CHANGED)
    outcome = portal.settle_selection(session, sales, portal.TAKE_SAMSUNGS, admin, 4)
    session.commit()
    assert outcome.later and outcome.devices == 4
    assert outcome.operation.params["filter"]["kme"] == KmeState.CHANGED
    assert _device(session, tenant["adopted"][0]).portal_changed_at is not None  # not yet
    work()
    operation = session.get(Operation, outcome.operation.id)
    assert (operation.status, operation.done) == ("done", 4)
    flagged = tenant["adopted"] + tenant["approved_there"]
    assert {_device(session, i).portal_changed_at for i in flagged} == {None}
    assert _device(session, tenant["kept"][0]).portal_changed_at is not None  # other profile


HX = {"HX-Request": "true"}


def test_the_profile_page_filters_and_shows_samsungs_value_beside_kmewebs(
    client, login, session, tenant
):
    login("viewer")
    kiosk, sales = tenant["kiosk"], tenant["sales"]
    page = client.get(f"/profiles/{sales.id}?kme=changed").get_data(as_text=True)
    assert len(re.findall(r'data-testid="device-row"', page)) == 4
    assert page.count('data-testid="portal-change"') == 4
    assert "Profile: Samsung holds <strong>Sales</strong>; kmeweb had Kiosk" in page
    assert "Approval: Samsung holds <strong>approved</strong>; kmeweb had pending" in page
    assert 'name="kme" value="changed"' in page  # the selection carries the filter
    assert "Send ours again" not in page and "data-select-page" not in page  # a viewer
    calm = client.get(f"/profiles/{kiosk.id}?kme=changed").get_data(as_text=True)
    assert len(re.findall(r'data-testid="device-row"', calm)) == 2


def test_a_viewer_cannot_open_or_post_the_settling_dialogs(client, login, actions, session, tenant):
    login("viewer")
    sales = tenant["sales"].id
    assert client.get(f"/profiles/{sales}/portal/ours?all_matching=1").status_code == 403
    data = {"all_matching": "1", "kme": "changed", "expected_count": "4"}
    assert actions.post(f"/profiles/{sales}/portal/samsungs", data).status_code == 403
    assert _device(session, tenant["adopted"][0]).portal_changed_at is not None


def test_send_ours_again_for_all_matching_shows_the_counts_then_acts(
    client, login, actions, session, tenant
):
    login()
    sales, kiosk = tenant["sales"], tenant["kiosk"]
    page = client.get(f"/profiles/{sales.id}").get_data(as_text=True)
    assert "Send ours again" in page and "Take Samsung's" in page
    query = "all_matching=1&kme=changed"
    dialog = client.get(f"/profiles/{sales.id}/portal/ours?{query}", headers=HX)
    text = dialog.get_data(as_text=True)
    assert "<strong>4</strong> of them were changed in the Samsung portal" in text
    assert "go to Samsung again for <strong>3</strong> devices" in text
    assert 'data-testid="portal-cannot-undo"' in text
    assert 'name="kme" type="hidden" value="changed"' in text or 'value="changed"' in text
    data = {"all_matching": "1", "kme": "changed", "from_profile_id": str(sales.id)}
    stale = actions.post(f"/profiles/{sales.id}/portal/ours", {**data, "expected_count": "5"})
    assert stale.status_code == 409 and "nothing was changed" in stale.get_data(as_text=True)
    response = actions.post(f"/profiles/{sales.id}/portal/ours", {**data, "expected_count": "4"})
    assert response.status_code == 303 and "op=" in response.headers["Location"]
    assert {_device(session, i).profile_id for i in tenant["adopted"]} == {kiosk.id}
    assert _device(session, tenant["approved_there"][0]).portal_changed_at is not None


def test_take_samsungs_for_ticked_devices(client, login, actions, session, tenant):
    login()
    kiosk, sales = tenant["kiosk"], tenant["sales"]
    ticked = tenant["kept"]
    dialog = client.get(
        f"/profiles/{kiosk.id}/portal/samsungs?" + "&".join(f"device_ids={i}" for i in ticked)
    ).get_data(as_text=True)
    assert "<strong>2</strong> of them were changed in the Samsung portal" in dialog
    assert "nothing is sent to Samsung" in dialog
    data = {"device_ids": [str(i) for i in ticked], "expected_count": "2"}
    response = actions.post(f"/profiles/{kiosk.id}/portal/samsungs", data)
    assert response.status_code == 303
    assert {_device(session, i).profile_id for i in ticked} == {sales.id}
    assert {_device(session, i).portal_changed_at for i in ticked} == {None}
