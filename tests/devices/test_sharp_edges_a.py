"""Issue 19, A.1 and A.4 below the browser: a device dialog names what it acts on, and Move
Devices never sends devices to the Default Profile (that is Unassign)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from kmeweb.devices import services
from kmeweb.devices.models import Device
from kmeweb.devices.selection import DeviceFilter, DeviceSelection
from kmeweb.errors import ValidationError
from kmeweb.profiles import services as profiles
from tests.factories import bulk_devices, make_default_profile, make_device, make_profile

HX = {"HX-Request": "true"}


def test_first_identifiers_keep_the_selection_order_and_fall_back_to_serial(session):
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 4, sales)
    serial_only = make_device(session, sales, imei=None, serial="R58N12345AB")
    imeis = dict(session.execute(select(Device.id, Device.imei)).all())
    wanted = [ids[2], serial_only.id, ids[0], ids[1]]
    assert services.first_identifiers(session, wanted) == [
        imeis[ids[2]],
        "R58N12345AB",
        imeis[ids[0]],
    ]
    assert services.first_identifiers(session, []) == []


def test_filter_words_name_every_filter_of_all_matching():
    assert DeviceFilter().words() == ""
    words = DeviceFilter(q="A54", registration="pending", sync="error").words()
    assert words == "the search “A54”, Registration: Not registered, Sync state: Error"


def test_move_targets_leave_out_the_default_profile_and_move_refuses_it(session, admin):
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    ops = make_profile(session, name="Ops")
    make_profile(session, name="Lab", kind="self_maintained", config={})
    assert [p.name for p in profiles.move_targets(session, sales.id)] == ["Ops"]
    assert [p.name for p in profiles.move_targets(session, default.id)] == ["Ops", "Sales"]
    ids = bulk_devices(session, 2, sales)
    with pytest.raises(ValidationError, match="with Unassign, not Move") as refused:
        services.move_selection(
            session, DeviceSelection(sales.id, ids=tuple(ids)), default.id, admin
        )
    assert refused.value.field == "profile_id"
    assert ops.id  # Ops stays a target; the Default Profile only through Unassign


def test_move_dialog_preselects_nothing_and_names_the_devices(client, login, session):
    login("admin")
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    make_profile(session, name="Ops")
    ids = bulk_devices(session, 5, sales)
    imeis = [session.get(Device, i).imei for i in ids]
    query = "&".join(f"device_ids={i}" for i in ids)
    html = client.get(f"/profiles/{sales.id}/move?{query}", headers=HX).get_data(as_text=True)
    assert f"{imeis[0]}, {imeis[1]}, {imeis[2]}</span> … and 2 more" in html
    options = re.findall(r'<option (selected )?value="(\d*)"', html)
    assert options[0] == ("selected ", "") or options[0] == ("", "")
    assert str(default.id) not in [value for _, value in options]
    assert re.search(r'data-requires="profile_id" disabled>Move<', html)
