"""One device selection: parsed once from a request, resolved by one service, and the rules
of the dialogs that act on it (move target, delete from the Default Profile, attribute rows)."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from kmeweb.devices import services
from kmeweb.devices.models import Device
from kmeweb.devices.selection import DeviceFilter, DeviceSelection
from kmeweb.errors import Conflict, ValidationError
from tests.factories import bulk_devices, make_default_profile, make_device, make_profile


def test_explicit_ids_are_parsed_once_without_junk_or_repeats():
    values = MultiDict([("device_ids", v) for v in ("3", "1", "3", "x", "-2", "12345678901", "")])
    selection = DeviceSelection.from_values(7, values)
    assert selection == DeviceSelection(7, ids=(3, 1))
    assert not selection.all_matching


def test_all_matching_carries_the_table_filter_under_its_own_names():
    values = MultiDict(
        {"all_matching": "1", "q": "x200", "registration": "pending", "device_ids": "4"}
    )
    selection = DeviceSelection.from_values(7, values)
    assert selection.all_matching and selection.ids == ()
    assert selection.filter == DeviceFilter(q="x200", registration="pending", sync="")
    assert selection.filter.active and not DeviceFilter().active


def test_known_total_comes_from_the_counts_unless_searched():
    counts = (10, 4, 6)
    assert DeviceFilter().known_total(counts) == 10
    assert DeviceFilter(registration="registered").known_total(counts) == 4
    assert DeviceFilter(registration="pending").known_total(counts) == 6
    assert DeviceFilter(q="a").known_total(counts) is None
    assert DeviceFilter(sync="error").known_total(counts) is None


def test_resolve_all_matching_reads_the_profile_now(session):
    sales = make_profile(session, name="Sales")
    wanted = bulk_devices(session, 3, sales, model="SM-X200")
    bulk_devices(session, 2, sales, model="SM-A546B")
    bulk_devices(session, 2, make_profile(session, name="Ops"), model="SM-X200")
    selection = DeviceSelection(sales.id, all_matching=True, filter=DeviceFilter(q="x200"))
    assert services.resolve_selection(session, selection) == wanted


def test_resolve_explicit_ids_checks_they_are_still_in_the_profile(session, admin):
    sales = make_profile(session, name="Sales")
    ops = make_profile(session, name="Ops")
    ids = bulk_devices(session, 3, sales)
    selection = DeviceSelection(sales.id, ids=tuple(ids))
    assert services.resolve_selection(session, selection) == ids
    services.move_devices(session, ids[:1], ops.id, admin)
    with pytest.raises(Conflict, match="1 of the selected devices were moved meanwhile"):
        services.resolve_selection(session, selection)
    # a dialog that only shows the selection does not check it (the action will)
    assert services.resolve_selection(session, selection, check=False) == ids
    with pytest.raises(ValidationError, match="Select at least one device."):
        services.resolve_selection(session, DeviceSelection(sales.id))


@pytest.mark.parametrize("target", ["same", "", "abc", None])
def test_move_target_must_be_another_kme_profile(session, admin, target):
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 2, sales)
    value = str(sales.id) if target == "same" else target
    with pytest.raises(ValidationError) as refused:
        services.move_selection(session, DeviceSelection(sales.id, ids=tuple(ids)), value, admin)
    assert refused.value.field == "profile_id"
    expected = "Choose another profile." if target == "same" else "Choose a Samsung Knox"
    assert refused.value.message.startswith(expected)


def test_move_selection_moves(session, admin):
    sales = make_profile(session, name="Sales")
    ops = make_profile(session, name="Ops")
    ids = bulk_devices(session, 2, sales)
    selection = DeviceSelection(sales.id, ids=tuple(ids))
    operation = services.move_selection(session, selection, str(ops.id), admin)
    assert operation.label == "Move 2 devices to Ops"
    assert {session.get(Device, i).profile_id for i in ids} == {ops.id}


def test_devices_are_deleted_only_from_the_default_profile(session, admin):
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    own = bulk_devices(session, 1, sales)
    with pytest.raises(Conflict, match="unassign first"):
        services.delete_selection(session, DeviceSelection(sales.id, ids=tuple(own)), admin)
    ids = bulk_devices(session, 2, default)
    operation, n = services.delete_selection(
        session, DeviceSelection(default.id, tuple(ids)), admin
    )
    assert n == 2 and operation is not None and operation.label == "Delete 2 devices"


def test_attribute_rows_become_changes():
    rows = [
        {"key": " site ", "value": "munich", "remove": False},
        {"key": "floor", "value": "", "remove": True},
        {"key": "asset", "value": "  ", "remove": False},  # blank: left as it is
        {"key": "", "value": "ignored", "remove": False},
    ]
    assert services.attribute_changes(rows) == {"site": "munich", "floor": None}
    twice = [*rows, {"key": "site", "value": "rome", "remove": False}]
    with pytest.raises(ValidationError) as refused:
        services.attribute_changes(twice)
    assert refused.value.field == "rows.4.key" and "appears twice" in refused.value.message


def test_attribute_errors_name_the_row_and_column(session, admin):
    sales = make_profile(session, name="Sales")
    device = make_device(session, sales)
    selection = DeviceSelection(sales.id, ids=(device.id,))
    bad_key = [{"key": "ok"}, {"key": "bad/key", "value": "1"}]
    with pytest.raises(ValidationError) as refused:
        services.edit_selected_attributes(session, selection, bad_key, admin)
    assert refused.value.field == "rows.1.key"
    long_value = [{"key": "note", "value": "x" * 501}]
    with pytest.raises(ValidationError) as refused:
        services.edit_selected_attributes(session, selection, long_value, admin)
    assert refused.value.field == "rows.0.value"
    with pytest.raises(ValidationError) as refused:
        services.edit_selected_attributes(session, selection, [], admin)
    assert refused.value.field is None  # on the form: no row to point at
    rows = [{"key": "site", "value": "rome"}]
    assert services.edit_selected_attributes(session, selection, rows, admin) == 1
    session.refresh(device)
    assert device.attributes == {"site": "rome"}
