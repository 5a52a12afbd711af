"""The device table's actions on a profile's page (kmeweb.devices.views): Move Devices,
Unassign, Delete, Edit attributes, each a dialog, and Download Existing Inventory."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from kmeweb.devices import services
from kmeweb.devices.models import Device
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_device,
    make_end_user,
    make_profile,
)

HX = {"HX-Request": "true"}


@pytest.fixture
def default(session):
    return make_default_profile(session)


def test_move_devices_dialog_excludes_current_profile_and_moves(
    client, login, actions, session, default
):
    login("admin")
    sales = make_profile(session, name="Sales")
    ops = make_profile(session, name="Ops")
    own = make_profile(session, name="Lab", kind="self_maintained", config={})
    ids = bulk_devices(session, 3, default)
    query = "&".join(f"device_ids={i}" for i in ids)
    dialog = client.get(f"/profiles/{default.id}/move?{query}", headers=HX)
    html = dialog.get_data(as_text=True)
    assert dialog.status_code == 200 and "<html" not in html
    assert "3</strong> devices:" in html
    options = re.findall(r'<option value="(\d+)"', html)
    assert str(sales.id) in options and str(ops.id) in options
    assert str(default.id) not in options and str(own.id) not in options
    # a plain request gets the same dialog as a page
    assert "<html" in client.get(f"/profiles/{default.id}/move?{query}").get_data(as_text=True)
    data = {"device_ids": ids, "profile_id": str(sales.id), "from_profile_id": str(default.id)}
    response = actions.post(f"/profiles/{default.id}/move", data, headers=HX)
    assert response.status_code == 204
    op = session.scalar(select(Operation).order_by(Operation.id.desc()))
    assert response.headers["HX-Redirect"] == f"/profiles/{default.id}?op={op.id}"
    assert op.label == "Move 3 devices to Sales"
    assert count_rows(session, Device, Device.profile_id == sales.id) == 3
    page = client.get(f"/profiles/{default.id}?op={op.id}").get_data(as_text=True)
    assert f'id="op-status-{op.id}"' in page and "Move 3 devices to Sales" in page


def test_move_all_matching_a_search(client, login, actions, session, default):
    login("admin")
    sales = make_profile(session, name="Sales")
    wanted = bulk_devices(session, 5, default, model="SM-X200")
    bulk_devices(session, 4, default, model="SM-A546B")
    dialog = client.get(f"/profiles/{default.id}/move?all_matching=1&q=x200", headers=HX)
    assert "All <strong>5</strong> devices matching the search “x200”" in dialog.get_data(
        as_text=True
    )
    data = {"all_matching": "1", "q": "x200", "profile_id": str(sales.id)}
    assert actions.post(f"/profiles/{default.id}/move", data).status_code == 303
    moved = session.scalars(select(Device.id).where(Device.profile_id == sales.id)).all()
    assert sorted(moved) == wanted


def test_move_refusals_show_in_the_dialog(client, login, actions, session, default, admin):
    login("admin")
    sales = make_profile(session, name="Sales")
    ops = make_profile(session, name="Ops")
    ids = bulk_devices(session, 3, default)
    empty = actions.post(f"/profiles/{default.id}/move", {"profile_id": str(sales.id)}, headers=HX)
    assert empty.status_code == 422 and "Select at least one device." in empty.get_data(
        as_text=True
    )
    no_target = actions.post(f"/profiles/{default.id}/move", {"device_ids": ids, "profile_id": ""})
    assert no_target.status_code == 422
    assert "Choose a Samsung Knox Mobile Enrollment profile." in no_target.get_data(as_text=True)
    # another admin moved two of them meanwhile: the dialog says which
    services.move_devices(session, ids[:2], ops.id, admin)
    session.commit()
    imeis = session.scalars(select(Device.imei).where(Device.id.in_(ids[:2]))).all()
    stale = actions.post(
        f"/profiles/{default.id}/move", {"device_ids": ids, "profile_id": str(sales.id)}, headers=HX
    )
    body = stale.get_data(as_text=True)
    assert stale.status_code == 409 and "2 of the selected devices were moved meanwhile" in body
    assert all(imei in body for imei in imeis)
    assert count_rows(session, Device, Device.profile_id == sales.id) == 0  # nothing applied


def test_pending_approval_or_self_maintained_selection_is_refused(
    client, login, actions, session, default
):
    login("admin")
    sales = make_profile(session, name="Sales")
    lab = make_profile(session, name="Lab", kind="self_maintained", config={})
    local = bulk_devices(session, 2, lab)
    response = actions.post(
        f"/profiles/{lab.id}/move", {"device_ids": local, "profile_id": str(sales.id)}
    )
    assert response.status_code == 422  # shown in the dialog, next to the selection
    assert "belong to a self-maintained profile" in response.get_data(as_text=True)
    pending = make_device(session, None)
    response = actions.post(
        f"/profiles/{default.id}/move",
        {"device_ids": [pending.id], "profile_id": str(sales.id)},
    )
    assert response.status_code == 409  # not in this profile (it waits for approval)


def test_unassign_returns_devices_to_default(client, login, actions, session, default):
    login("admin")
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 2, sales)
    dialog = client.get(f"/profiles/{sales.id}/unassign?device_ids={ids[0]}", headers=HX)
    assert "go back to the Samsung KME Default Profile" in dialog.get_data(as_text=True)
    response = actions.post(f"/profiles/{sales.id}/unassign", {"device_ids": [ids[0]]})
    assert response.status_code == 303
    assert session.get(Device, ids[0]).profile_id == default.id
    assert session.get(Device, ids[1]).profile_id == sales.id
    assert count_rows(session, Change, Change.kind == "device.unassign") == 1


def test_delete_devices_from_the_default_profile(client, login, actions, session, default):
    login("admin")
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 3, default)
    dialog = client.get(
        f"/profiles/{default.id}/delete-devices?device_ids={ids[0]}&device_ids={ids[1]}"
    )
    assert "2 devices are removed from KME and from kmeweb" in dialog.get_data(as_text=True)
    response = actions.post(f"/profiles/{default.id}/delete-devices", {"device_ids": ids[:2]})
    assert response.status_code == 303
    assert count_rows(session, Device) == 1
    assert count_rows(session, Change, Change.kind == "device.delete") == 1
    # only from the Default Profile
    own = bulk_devices(session, 1, sales)
    refused = actions.post(f"/profiles/{sales.id}/delete-devices", {"device_ids": own})
    assert refused.status_code == 409 and count_rows(session, Device) == 2


def test_edit_attributes_of_selected_devices(client, login, actions, session, default):
    login("admin")
    sales = make_profile(session, name="Sales")
    a = make_device(session, sales, attributes={"site": "berlin", "floor": "2"})
    b = make_device(session, sales, attributes={"site": "berlin"})
    c = make_device(session, sales, attributes={"site": "rome"})
    dialog = client.get(f"/profiles/{sales.id}/attributes?device_ids={a.id}&device_ids={b.id}")
    html = dialog.get_data(as_text=True)
    assert 'value="site"' in html and 'value="berlin"' in html and 'value="floor"' in html
    data = {
        "device_ids": [a.id, b.id],
        "rows-0-key": "site",
        "rows-0-value": "munich",
        "rows-1-key": "floor",
        "rows-1-value": "",
        "rows-1-remove": "y",
        "rows-2-key": "asset",
        "rows-2-value": "A-17",
    }
    assert actions.post(f"/profiles/{sales.id}/attributes", data).status_code == 303
    session.expire_all()
    assert a.attributes == {"site": "munich", "asset": "A-17"}
    assert b.attributes == {"site": "munich", "asset": "A-17"}
    assert c.attributes == {"site": "rome"}
    bad = dict(data, **{"rows-2-key": "bad/key"})
    response = actions.post(f"/profiles/{sales.id}/attributes", bad)
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="rows-2-key-error"' in body
    assert 'value="munich"' in body  # typed values kept
    empty = actions.post(f"/profiles/{sales.id}/attributes", {"device_ids": [a.id]})
    assert empty.status_code == 422
    assert "Add, change or remove at least one attribute." in empty.get_data(as_text=True)


def test_inventory_csv_is_streamed_and_formula_safe(client, login, session, default):
    login("viewer")
    sales = make_profile(session, name="Sales / EU")
    user = make_end_user(session, username="=cmd|calc")
    make_device(
        session,
        sales,
        model="SM-S911B",
        end_user_id=user.id,
        attributes={"note": "=HYPERLINK()"},
        enrollment_password_enc="secret-cipher",
    )
    bulk_devices(session, 3, sales)
    response = client.get(f"/profiles/{sales.id}/inventory.csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert 'filename="inventory-Sales---EU-' in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True).lstrip("\ufeff")
    lines = text.strip().split("\r\n")
    assert lines[0] == "IMEI,Serial,Model,User,Attributes,Registration,Sync state"
    assert len(lines) == 5
    assert "'=cmd|calc" in text and "secret-cipher" not in text
    assert "not registered" in lines[1] and "synced" in lines[1]
