"""Remove (a Self-Maintained profile's device table, issue 20 item 4): the selected devices
leave kmeweb, audited; only from self-maintained profiles, only by admins."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from kmeweb.audit.models import AuditEvent
from kmeweb.devices import services as devices
from kmeweb.devices.models import Device
from kmeweb.devices.selection import DeviceSelection
from kmeweb.errors import Conflict
from kmeweb.outbox.models import Change
from tests.factories import count_rows, make_device, make_profile


@pytest.fixture
def shelf(session):
    return make_profile(session, name="Warehouse", kind="self_maintained", config={})


def test_remove_deletes_the_selection_and_audits_it(session, shelf, admin):
    a, b, kept = (make_device(session, shelf) for _ in range(3))
    imeis = [a.imei, b.imei]
    selection = DeviceSelection.from_values(
        shelf.id, MultiDict([("device_ids", str(a.id)), ("device_ids", str(b.id))])
    )
    assert devices.remove_selection(session, selection, admin) == 2
    session.commit()
    assert session.scalars(select(Device.id)).all() == [kept.id]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "device.remove"))
    assert event.target_type == "profile" and event.target_id == str(shelf.id)
    assert event.details["devices"] == 2
    assert event.details["identifiers"] == imeis
    assert count_rows(session, Change) == 0  # not in Knox: nothing to send


def test_remove_all_matching_takes_the_filter(session, shelf, admin):
    make_device(session, shelf, serial="R58M12ABCDE")
    other = make_device(session, shelf)
    values = {"all_matching": "1", "q": "R58M12ABCDE"}
    assert devices.remove_selection(
        session, DeviceSelection.from_values(shelf.id, MultiDict(values)), admin
    )
    session.commit()
    assert session.scalars(select(Device.id)).all() == [other.id]


def test_remove_is_refused_outside_self_maintained_profiles(session, admin):
    sales = make_profile(session, name="Field Sales")
    device = make_device(session, sales)
    selection = DeviceSelection.from_values(sales.id, MultiDict({"device_ids": str(device.id)}))
    with pytest.raises(Conflict):
        devices.remove_selection(session, selection, admin)


def test_remove_through_the_dialog(session, shelf, login, actions, client):
    a, kept = make_device(session, shelf), make_device(session, shelf)
    login()
    dialog = client.get(f"/profiles/{shelf.id}/remove?device_ids={a.id}")
    html = dialog.get_data(as_text=True)
    assert dialog.status_code == 200
    assert a.imei in html and "Remove 1 device" in html and kept.imei not in html
    response = actions.post(f"/profiles/{shelf.id}/remove", {"device_ids": [a.id]})
    assert response.status_code == 303
    session.expire_all()
    assert session.scalars(select(Device.id)).all() == [kept.id]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 device was removed from Warehouse." in page


def test_remove_from_a_kme_profile_answers_409_in_the_dialog(session, login, actions):
    sales = make_profile(session, name="Field Sales")
    device = make_device(session, sales)
    login()
    response = actions.post(f"/profiles/{sales.id}/remove", {"device_ids": [device.id]})
    assert response.status_code == 409
    assert count_rows(session, Device) == 1


def test_viewers_get_403(session, shelf, login, actions, client):
    device = make_device(session, shelf)
    login("viewer")
    assert client.get(f"/profiles/{shelf.id}/remove?device_ids={device.id}").status_code == 403
    response = actions.post(f"/profiles/{shelf.id}/remove", {"device_ids": [device.id]})
    assert response.status_code == 403
    assert count_rows(session, Device) == 1
    page = client.get(f"/profiles/{shelf.id}").get_data(as_text=True)
    assert "Remove" not in page
