"""The profile page's "Placed by rule" filter: which routing rule placed each device, the
table narrowed to one rule's devices, and "all N matching" selections that keep the filter
(the dialogs, the move now, and the move a job runs later)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from kmeweb.devices import services
from kmeweb.devices.models import Device
from kmeweb.devices.selection import DeviceFilter, DeviceSelection
from kmeweb.rules import services as rules
from tests.factories import bulk_devices, make_default_profile, make_profile

HX = {"HX-Request": "true"}


@pytest.fixture
def placed(session):
    """Kiosk holds 3 devices placed by "Tablets", 2 by "Scanners" (one with a note), 2 by
    no rule; Office holds 1 placed by "Scanners"."""
    make_default_profile(session)
    kiosk = make_profile(session, name="Kiosk")
    office = make_profile(session, name="Office")
    tablets = rules.create_rule(session, {"name": "Tablets", "model_patterns": "SM-T*"}, "t")
    scanners = rules.create_rule(session, {"name": "Scanners", "model_patterns": "SM-G5*"}, "t")
    session.commit()
    by_tablets = bulk_devices(session, 3, kiosk, model="SM-T220")
    by_scanners = bulk_devices(session, 2, kiosk, model="SM-G525F")
    by_nobody = bulk_devices(session, 2, kiosk, model="SM-A546B")
    elsewhere = bulk_devices(session, 1, office, model="SM-G525F")
    note = "Rule “Scanners” points at a profile that was deleted"
    for ids, rule, extra in (
        (by_tablets, tablets, {}),
        (by_scanners[:1], scanners, {}),
        (by_scanners[1:], scanners, {"rule_note": note}),
        (elsewhere, scanners, {}),
    ):
        session.execute(
            update(Device)
            .where(Device.id.in_(ids))
            .values(rule_id=rule.id, rule_version=rule.version, **extra)
        )
    session.commit()
    return {
        "kiosk": kiosk,
        "office": office,
        "tablets": tablets,
        "scanners": scanners,
        "by_tablets": by_tablets,
        "by_scanners": by_scanners,
        "by_nobody": by_nobody,
        "note": note,
    }


def test_the_filter_is_one_value_everywhere_a_request_carries_it():
    values = {"all_matching": "1", "q": "", "rule": " 7 "}

    class Args(dict):
        def getlist(self, key):
            return [self[key]] if key in self else []

    selection = DeviceSelection.from_values(3, Args(values))
    assert selection.filter == DeviceFilter(rule="7") and selection.filter.rule_id == 7
    assert DeviceFilter.from_values(Args({"rule": "abc"})).rule == ""  # no id: no filter
    assert DeviceFilter(rule="7").active and DeviceFilter(rule="7").known_total((9, 1, 8)) is None
    assert DeviceFilter(rule="7", sync="error").words({7: "Tablets"}) == (
        "Sync state: Error, Placed by rule: Tablets"
    )
    assert DeviceFilter(rule="7").words() == "Placed by rule: #7"


def test_services_select_count_and_list_by_rule(session, placed):
    kiosk, tablets, scanners = placed["kiosk"], placed["tablets"], placed["scanners"]
    assert services.rules_placing(session, kiosk.id) == [
        (scanners.id, "Scanners"),
        (tablets.id, "Tablets"),
    ]
    assert services.rules_placing(session, placed["office"].id) == [(scanners.id, "Scanners")]
    selection = DeviceSelection(
        kiosk.id, all_matching=True, filter=DeviceFilter(rule=str(tablets.id))
    )
    assert services.resolve_selection(session, selection) == placed["by_tablets"]
    assert services.count_matching(session, selection) == 3
    query = services.devices_query(kiosk.id, rule_id=scanners.id)
    assert [d.id for d in session.scalars(query)] == placed["by_scanners"]


def test_a_later_move_of_all_matching_keeps_the_rule_filter(session, placed, admin):
    kiosk, office, tablets = placed["kiosk"], placed["office"], placed["tablets"]
    selection = DeviceSelection(
        kiosk.id, all_matching=True, filter=DeviceFilter(rule=str(tablets.id))
    )
    operation = services.start_selection_move(session, selection, office.id, admin, 3)
    assert operation.params["filter"]["rule"] == str(tablets.id)
    session.commit()
    assert services.run_selection_move(session, operation, admin) == 3
    moved = session.scalars(select(Device.id).where(Device.profile_id == office.id)).all()
    assert set(placed["by_tablets"]) <= set(moved)
    assert not set(placed["by_scanners"] + placed["by_nobody"]) & set(moved)


def test_the_profile_page_says_which_rule_placed_each_device_and_filters_by_it(
    client, login, session, placed
):
    login("viewer")
    kiosk, tablets, scanners = placed["kiosk"], placed["tablets"], placed["scanners"]
    page = client.get(f"/profiles/{kiosk.id}").get_data(as_text=True)
    select_html = page.split('id="rule"')[1].split("</select>")[0]
    assert re.findall(r'<option[^>]*value="([^"]*)"[^>]*>([^<]*)<', select_html) == [
        ("", "Any"),
        (str(scanners.id), "Scanners"),
        (str(tablets.id), "Tablets"),
    ]
    assert page.count('data-testid="placed-by"') == 5
    assert (
        f'href="/admin/rules/{tablets.id}">Tablets</a> <span class="text-nowrap">(version 1)'
        in page
    )
    assert page.count('data-testid="rule-note"') == 1 and placed["note"] in page

    page = client.get(f"/profiles/{kiosk.id}?rule={tablets.id}").get_data(as_text=True)
    assert len(re.findall(r'data-testid="device-row"', page)) == 3
    assert "Scanners</a>" not in page.split('data-testid="devices-table"')[1]
    assert f'name="rule" value="{tablets.id}"' in page  # the selection carries it
    part = client.get(f"/profiles/{kiosk.id}?rule={scanners.id}&part=devices", headers=HX)
    assert part.get_data(as_text=True).count('data-testid="device-row"') == 2

    # a profile no rule placed devices in has no such filter
    empty = make_profile(session, name="Empty")
    assert 'id="rule"' not in client.get(f"/profiles/{empty.id}").get_data(as_text=True)


def test_all_matching_a_rule_is_moved_and_said_in_words(client, login, actions, session, placed):
    login("admin")
    kiosk, office, tablets = placed["kiosk"], placed["office"], placed["tablets"]
    page = client.get(f"/profiles/{kiosk.id}?rule={tablets.id}").get_data(as_text=True)
    assert "Select all 3 matching devices" in page
    dialog = client.get(
        f"/profiles/{kiosk.id}/move?all_matching=1&rule={tablets.id}", headers=HX
    ).get_data(as_text=True)
    assert "All <strong>3</strong> devices matching Placed by rule: Tablets in Kiosk" in dialog
    assert f'name="rule" type="hidden" value="{tablets.id}"' in dialog
    data = {"all_matching": "1", "rule": str(tablets.id), "profile_id": str(office.id)}
    assert actions.post(f"/profiles/{kiosk.id}/move", data).status_code == 303
    moved = session.scalars(select(Device.id).where(Device.profile_id == office.id)).all()
    assert set(placed["by_tablets"]) <= set(moved)
    left = session.scalars(select(Device.id).where(Device.profile_id == kiosk.id)).all()
    assert sorted(left) == sorted(placed["by_scanners"] + placed["by_nobody"])
