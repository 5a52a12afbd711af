"""Device services: bulk moves, unassign, delete, user/password, attributes, lists."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kmeweb import crypto
from kmeweb.audit.models import AuditEvent
from kmeweb.devices import services
from kmeweb.devices.models import Device
from kmeweb.errors import Conflict, NotFound, ValidationError
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


def test_move_20000_devices_in_one_call(session, admin):
    source = make_profile(session, name="Warehouse")
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 20_000, source)
    session.expire_all()

    operation = services.move_devices(session, ids, sales.id, admin)
    session.commit()

    assert operation.kind == "device.move" and operation.total == 20_000
    assert operation.label == "Move 20,000 devices to Sales"
    assert count_rows(session, Device, Device.profile_id == sales.id) == 20_000
    assert (
        count_rows(session, Device, Device.sync_state == "pending", Device.version == 2) == 20_000
    )
    changes = session.scalars(select(Change).order_by(Change.id)).all()
    assert len(changes) == 40
    assert {c.kind for c in changes} == {"device.move"}
    assert {c.device_count for c in changes} == {500}
    assert all(c.profile_id == sales.id and c.operation_id == operation.id for c in changes)
    assert [i for c in changes for i in c.payload["device_ids"]] == ids
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "device.move")).all()
    assert len(events) == 1
    assert events[0].details["devices"] == 20_000
    assert events[0].details["from_profiles"] == {str(source.id): 20_000}
    assert events[0].details["device_ids"]["count"] == 20_000


def test_change_rows_follow_knox_batch_size(app, session, admin):
    app.config["KNOX_BATCH_SIZE"] = 100
    source = make_profile(session)
    target = make_profile(session)
    ids = bulk_devices(session, 250, source)
    services.move_devices(session, ids, target.id, admin)
    session.commit()
    assert [c.device_count for c in session.scalars(select(Change).order_by(Change.id))] == [
        100,
        100,
        50,
    ]


def test_move_rollback_leaves_nothing(session, admin):
    source = make_profile(session)
    target = make_profile(session)
    ids = bulk_devices(session, 30, source)
    services.move_devices(session, ids, target.id, admin)
    session.rollback()
    assert count_rows(session, Device, Device.profile_id == source.id, Device.version == 1) == 30
    assert count_rows(session, Change) == 0 and count_rows(session, Operation) == 0
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.move") == 0


def test_move_is_all_or_nothing(session, admin):
    source = make_profile(session)
    target = make_profile(session)
    ids = bulk_devices(session, 5, source)
    pending = make_device(session)  # waiting for approval, no profile
    with pytest.raises(ValidationError, match="waiting for approval"):
        services.move_devices(session, [*ids, pending.id], target.id, admin)
    with pytest.raises(NotFound):
        services.move_devices(session, [*ids, 999_999], target.id, admin)
    session.rollback()
    assert count_rows(session, Device, Device.profile_id == target.id) == 0
    assert count_rows(session, Change) == 0


@pytest.mark.parametrize("kind", ["self_maintained", None])
def test_move_target_must_be_a_kme_profile(session, admin, kind):
    source = make_profile(session)
    ids = bulk_devices(session, 2, source)
    target_id = make_profile(session, kind=kind, config={}).id if kind else 424242
    with pytest.raises(ValidationError) as err:
        services.move_devices(session, ids, target_id, admin)
    assert err.value.field == "profile_id"


def test_move_requires_a_selection(session, admin):
    target = make_profile(session)
    with pytest.raises(ValidationError) as err:
        services.move_devices(session, [], target.id, admin)
    assert err.value.field == "device_ids"


def test_self_maintained_devices_cannot_move_to_kme(session, admin):
    own = make_profile(session, kind="self_maintained", config={})
    target = make_profile(session)
    device = make_device(session, own)
    with pytest.raises(ValidationError, match="self-maintained"):
        services.move_devices(session, [device.id], target.id, admin)


def test_devices_already_in_target_are_skipped(session, admin):
    a = make_profile(session)
    b = make_profile(session)
    in_a = bulk_devices(session, 3, a)
    in_b = bulk_devices(session, 2, b)
    operation = services.move_devices(session, in_a + in_b, b.id, admin)
    session.commit()
    assert operation.total == 3
    assert count_rows(session, Device, Device.id.in_(in_b), Device.version == 1) == 2
    with pytest.raises(Conflict, match="already in"):
        services.move_devices(session, in_b, b.id, admin)


def test_unassign_moves_to_default_profile(session, admin):
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 3, sales)
    operation = services.unassign_devices(session, ids, admin)
    session.commit()
    assert operation.kind == "device.unassign" and operation.label == "Unassign 3 devices"
    change = session.scalars(select(Change)).one()
    assert change.kind == "device.unassign" and change.profile_id == default.id
    assert count_rows(session, Device, Device.profile_id == default.id) == 3
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.unassign") == 1


def test_delete_devices_sends_kme_identifiers(session, admin):
    default = make_default_profile(session)
    own = make_profile(session, kind="self_maintained", config={})
    with_id = make_device(session, default, kme_device_id="KME-1")
    by_imei = make_device(session, default)
    by_serial = make_device(session, default, imei=None, serial="RAKM2SVY64A")
    local = make_device(session, own)
    imei = by_imei.imei
    ids = [with_id.id, by_imei.id, by_serial.id, local.id]

    operation = services.delete_devices(session, ids, admin)
    session.commit()

    assert count_rows(session, Device) == 0
    change = session.scalars(select(Change)).one()
    assert change.kind == "device.delete" and change.operation_id == operation.id
    assert change.payload == {"identifiers": ["KME-1", imei, "RAKM2SVY64A"]}
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "device.delete")).one()
    assert event.details["devices"] == 4 and event.details["in_knox"] == 3


def test_delete_only_local_devices_needs_no_operation(session, admin):
    own = make_profile(session, kind="self_maintained", config={})
    device = make_device(session, own)
    assert services.delete_devices(session, [device.id], admin) is None
    session.commit()
    assert count_rows(session, Device) == 0 and count_rows(session, Change) == 0


def test_set_device_user_encrypts_password(session, admin):
    sales = make_profile(session)
    user = make_end_user(session, username="jdoe")
    ids = bulk_devices(session, 3, sales)

    operation = services.set_device_user(session, ids, user.id, "pin-1234", admin)
    session.commit()

    assert operation.kind == "device.user"
    device = session.get(Device, ids[0])
    assert device.end_user_id == user.id and device.sync_state == "pending"
    assert device.enrollment_password_enc != "pin-1234"
    assert crypto.decrypt(device.enrollment_password_enc) == "pin-1234"
    change = session.scalars(select(Change)).one()
    assert change.kind == "device.user" and change.payload["device_ids"] == ids
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "device.user")).one()
    assert "pin-1234" not in str(event.details) and event.details["user"] == "jdoe"

    # None keeps the password; clearing the user clears it too
    services.set_device_user(session, ids, user.id, None, admin)
    session.commit()
    session.refresh(device)
    assert crypto.decrypt(device.enrollment_password_enc) == "pin-1234"
    services.set_device_user(session, ids, None, None, admin)
    session.commit()
    session.refresh(device)
    assert device.end_user_id is None and device.enrollment_password_enc is None


def test_set_device_user_rules(session, admin):
    default = make_default_profile(session)
    sales = make_profile(session)
    in_default = make_device(session, default)
    device = make_device(session, sales)
    with pytest.raises(ValidationError, match="Default Profile"):
        services.set_device_user(session, [in_default.id], None, None, admin)
    with pytest.raises(ValidationError) as err:
        services.set_device_user(session, [device.id], 77777, None, admin)
    assert err.value.field == "end_user_id"
    user = make_end_user(session)
    with pytest.raises(ValidationError) as err:
        services.set_device_user(session, [device.id], user.id, "x" * 246, admin)
    assert err.value.field == "password"


def test_update_attributes_is_local_and_versioned(session, admin):
    device = make_device(session, make_profile(session))
    version = device.version
    services.update_attributes(
        session, device.id, {"asset_tag": "A-17", "floor": 3, "old": ""}, version, admin
    )
    session.commit()
    assert device.attributes == {"asset_tag": "A-17", "floor": 3}
    assert device.version == version + 1 and device.sync_state == "synced"
    assert count_rows(session, Change) == 0
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.attributes") == 1

    with pytest.raises(Conflict, match="changed by someone else"):
        services.update_attributes(session, device.id, {"a": "b"}, version, admin)
    with pytest.raises(ValidationError) as err:
        services.update_attributes(session, device.id, {"bad/key": "b"}, device.version, admin)
    assert err.value.field == "attributes.bad/key"
    with pytest.raises(NotFound):
        services.update_attributes(session, 999_999, {}, 1, admin)


def test_devices_query_search_and_select_ids(session):
    sales = make_profile(session)
    other = make_profile(session)
    user = make_end_user(session, username="Jane.Doe")
    a = make_device(session, sales, model="SM-S918B", end_user_id=user.id)
    b = make_device(session, sales, imei=None, serial="R58M315CL4T")
    c = make_device(session, sales)
    make_device(session, other, model="SM-S918B")

    def found(search):
        return [d.id for d in session.scalars(services.devices_query(sales.id, search))]

    assert found(None) == [a.id, b.id, c.id]
    assert found("s918") == [a.id]
    assert found("jane") == [a.id]
    assert found("r58m") == [b.id]
    assert found(c.imei) == [c.id]
    assert found("%") == []
    assert services.select_device_ids(session, sales.id) == [a.id, b.id, c.id]
    assert services.select_device_ids(session, sales.id, "JANE") == [a.id]


@pytest.mark.parametrize("action", ["delete", "user", "unassign"])
def test_bulk_actions_roll_back_completely(session, admin, action):
    make_default_profile(session)
    sales = make_profile(session)
    user = make_end_user(session)
    ids = bulk_devices(session, 25, sales)
    events_before = count_rows(session, AuditEvent)
    if action == "delete":
        services.delete_devices(session, ids, admin)
    elif action == "user":
        services.set_device_user(session, ids, user.id, "secret", admin)
    else:
        services.unassign_devices(session, ids, admin)
    session.rollback()
    assert count_rows(session, Device, Device.profile_id == sales.id, Device.version == 1) == 25
    assert count_rows(session, Device, Device.end_user_id.is_not(None)) == 0
    assert count_rows(session, Change) == 0 and count_rows(session, Operation) == 0
    assert count_rows(session, AuditEvent) == events_before


def test_a_long_digit_search_finds_imeis_by_their_start(session):
    sales = make_profile(session)
    a = make_device(session, sales, imei="356938035643809")
    make_device(session, sales, imei="356938135643807")
    make_device(session, sales, imei=None, serial="R58M3569380356")

    def found(search):
        return [d.id for d in session.scalars(services.devices_query(sales.id, search))]

    assert found("3569380356") == [a.id]  # the IMEI's start, not a serial containing it
    assert found("356938035643809") == [a.id]
    assert found("43809") == [a.id]  # shorter digit runs stay substring searches
