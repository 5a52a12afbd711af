"""Profile services: local change, outbox rows and audit in one transaction; rules."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm.exc import StaleDataError

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.history import device_history
from kmeweb.devices.models import Device
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from kmeweb.profiles import services
from kmeweb.profiles.models import Profile
from tests.factories import (
    KME_CONFIG,
    bulk_devices,
    count_rows,
    make_default_profile,
    make_device,
    make_end_user,
    make_profile,
)


def _data(**over):
    data = {"name": "Sales", "description": "Sales phones", "config": copy.deepcopy(KME_CONFIG)}
    data.update(over)
    return data


def test_create_kme_profile_writes_profile_change_and_audit(session, admin):
    profile = services.create_profile(session, _data(), admin)
    session.commit()

    assert profile.kind == "kme" and profile.sync_state == "pending"
    assert len(profile.token) >= 32
    assert profile.token_expires_at is not None
    days = (profile.token_expires_at - utcnow()).days
    assert 6 <= days <= 7
    change = session.scalars(select(Change)).one()
    assert change.kind == "profile.create" and change.profile_id == profile.id
    operation = session.get(Operation, change.operation_id)
    assert operation.kind == "profile.create" and operation.label == "Create profile Sales"
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "profile.create")).one()
    assert event.target_id == str(profile.id) and event.actor == admin.email
    assert profile.token not in str(event.details)


def test_rollback_leaves_nothing(session, admin):
    services.create_profile(session, _data(), admin)
    session.rollback()
    assert count_rows(session, Profile) == 0
    assert count_rows(session, Change) == 0
    assert count_rows(session, Operation) == 0
    assert count_rows(session, AuditEvent, AuditEvent.action == "profile.create") == 0


def test_self_maintained_profile_is_local_only(session, admin):
    profile = services.create_profile(
        session, _data(kind="self_maintained", token_expiry_days=None), admin
    )
    session.commit()
    assert profile.kind == "self_maintained" and profile.sync_state == "synced"
    assert profile.token_expires_at is None
    assert profile.config["kme"] == {}
    assert count_rows(session, Change) == 0
    assert count_rows(session, AuditEvent, AuditEvent.action == "profile.create") == 1


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Sales/EMEA"}, "name"),
        ({"name": "50% off"}, "name"),
        ({"name": "a(b)"}, "name"),
        ({"name": "what?"}, "name"),
        ({"name": "a{b}"}, "name"),
        ({"name": "x[1]"}, "name"),
        ({"name": "a\\b"}, "name"),
        ({"description": "d" * 201}, "description"),
        ({"token_expiry_days": 6}, "token_expiry_days"),
        ({"token_expiry_days": 1000}, "token_expiry_days"),
        ({"token_expiry_days": "soon"}, "token_expiry_days"),
        ({"kind": "kme_default"}, "kind"),
        ({"end_user_id": 999999}, "end_user_id"),
    ],
)
def test_create_validation_names_the_field(session, admin, over, field):
    with pytest.raises(ValidationError) as err:
        services.create_profile(session, _data(**over), admin)
    assert err.value.field == field
    session.rollback()
    assert count_rows(session, Profile) == 0


def test_name_is_unique_case_insensitively(session, admin):
    make_profile(session, name="Sales")
    with pytest.raises(ValidationError) as err:
        services.create_profile(session, _data(name="  sALES "), admin)
    assert err.value.field == "name"


def test_token_expiry_bounds_and_never(session, admin):
    p7 = services.create_profile(session, _data(name="A", token_expiry_days=7), admin)
    p999 = services.create_profile(session, _data(name="B", token_expiry_days="999"), admin)
    never = services.create_profile(session, _data(name="C", token_expiry_days="never"), admin)
    assert (p999.token_expires_at - p7.token_expires_at).days == 992
    assert never.token_expires_at is None
    assert services.token_status(never) == "never expires"
    assert services.token_status(p7).startswith("expires ")
    assert len({p7.token, p999.token, never.token}) == 3


def test_token_status_expired_and_matching(session):
    profile = make_profile(session, token_expires_at=utcnow() - timedelta(days=1))
    assert services.token_status(profile) == "expired"
    assert services.token_matches(profile.token, profile.token)
    other_last = "y" if profile.token.endswith("x") else "x"  # never the token itself
    assert not services.token_matches(profile.token, profile.token[:-1] + other_last)
    assert not services.token_matches(None, profile.token)
    assert services.profile_for_token(session, profile.token).id == profile.id
    assert services.profile_for_token(session, "nope") is None


def test_update_profile_bumps_version_and_queues_update(session, admin):
    profile = make_profile(session, name="Sales")
    version = profile.version
    services.update_profile(
        session, profile.id, {"name": "Sales EMEA", "description": "new"}, version, admin
    )
    session.commit()
    assert profile.name == "Sales EMEA" and profile.version == version + 1
    assert profile.sync_state == "pending"
    change = session.scalars(select(Change)).one()
    assert change.kind == "profile.update" and change.payload["name"] == "Sales EMEA"
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "profile.update")).one()
    assert event.details["values"]["name"] == ["Sales", "Sales EMEA"]


def test_update_with_stale_version_conflicts(session, admin):
    profile = make_profile(session)
    with pytest.raises(Conflict, match="changed by someone else"):
        services.update_profile(session, profile.id, {"name": "X"}, profile.version - 1, admin)
    session.rollback()
    assert count_rows(session, Change) == 0


def test_token_expiry_alone_stays_local(session, admin):
    profile = make_profile(session)
    services.update_profile(session, profile.id, {"token_expiry_days": 30}, profile.version, admin)
    session.commit()
    assert count_rows(session, Change) == 0
    assert profile.sync_state == "synced"


def test_update_validates_config_fields(session, admin):
    profile = make_profile(session)
    config = copy.deepcopy(KME_CONFIG)
    config["agent"]["allow_user_cancel"] = True
    with pytest.raises(ValidationError) as err:
        services.update_profile(session, profile.id, {"config": config}, profile.version, admin)
    assert err.value.field == "agent.allow_user_cancel"


def test_default_profile_cannot_be_renamed_or_deleted(session, admin):
    default = make_default_profile(session)
    with pytest.raises(ValidationError) as err:
        services.update_profile(session, default.id, {"name": "Other"}, default.version, admin)
    assert err.value.field == "name"
    session.rollback()
    services.update_profile(
        session, default.id, {"name": default.name, "description": "d"}, default.version, admin
    )
    assert count_rows(session, Change) == 0
    with pytest.raises(Conflict):
        services.delete_profile(session, default.id, admin)


def test_delete_profile_moves_devices_to_default(session, admin):
    default = make_default_profile(session)
    profile = make_profile(session, name="Sales")
    ids = bulk_devices(session, 1200, profile)
    session.expire_all()

    moved = services.delete_profile(session, profile.id, admin)
    session.commit()

    assert moved == 1200
    assert session.get(Profile, profile.id) is None
    assert count_rows(session, Device, Device.profile_id == default.id) == 1200
    assert count_rows(session, Device, Device.sync_state == "pending", Device.version == 2) == 1200
    kinds = [c.kind for c in session.scalars(select(Change).order_by(Change.id))]
    assert kinds == ["device.unassign"] * 3 + ["profile.delete"]
    unassign = session.scalars(select(Change).where(Change.kind == "device.unassign")).all()
    assert sorted(i for c in unassign for i in c.payload["device_ids"]) == ids
    assert all(c.profile_id == default.id for c in unassign)
    delete = session.scalars(select(Change).where(Change.kind == "profile.delete")).one()
    assert delete.payload["kme_profile_id"] == profile.kme_profile_id
    assert len({c.operation_id for c in session.scalars(select(Change))}) == 1
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "profile.delete")).one()
    assert event.details["devices_moved_to_default"] == 1200
    # Each device's history says where it went and why, naming the profile that is gone.
    entry = device_history(session, ids[-1]).entries[0]
    assert (entry.who, entry.what) == (admin.email, "Unassigned")
    assert entry.detail.startswith(f"Sales (deleted) → {default.name}")


def test_delete_self_maintained_profile_moves_locally(session, admin):
    default = make_default_profile(session)
    profile = make_profile(session, kind="self_maintained", config={})
    device = make_device(session, profile)
    services.delete_profile(session, profile.id, admin)
    session.commit()
    session.refresh(device)
    assert device.profile_id == default.id and device.sync_state == "synced"
    assert count_rows(session, Change) == 0


def test_delete_missing_profile_is_not_found(session, admin):
    with pytest.raises(NotFound):
        services.delete_profile(session, 12345, admin)


def test_refresh_token_invalidates_old_one(session, admin):
    profile = make_profile(session)
    old = profile.token
    services.refresh_token(session, profile.id, None, admin)
    session.commit()
    assert profile.token != old and profile.token_expires_at is None
    assert services.profile_for_token(session, old) is None
    assert session.scalars(select(Change)).one().kind == "profile.update"
    with pytest.raises(ValidationError) as err:
        services.refresh_token(session, profile.id, 3, admin)
    assert err.value.field == "token_expiry_days"


def test_extend_token_keeps_it(session, admin):
    profile = make_profile(session, token_expires_at=utcnow() + timedelta(days=10))
    token = profile.token
    services.extend_token(session, profile.id, 30, admin, from_current=True)
    session.commit()
    assert profile.token == token
    assert 39 <= (profile.token_expires_at - utcnow()).days <= 40
    assert count_rows(session, Change) == 0
    with pytest.raises(ValidationError):
        services.extend_token(session, profile.id, 995, admin, from_current=True)


def test_set_profile_user(session, admin):
    profile = make_profile(session)
    user = make_end_user(session, username="jdoe")
    services.set_profile_user(session, profile.id, user.id, admin)
    session.commit()
    assert profile.end_user_id == user.id
    assert session.scalars(select(Change)).one().kind == "profile.update"
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "profile.user")).one()
    assert event.details["user"] == "jdoe"
    with pytest.raises(ValidationError) as err:
        services.set_profile_user(session, profile.id, 424242, admin)
    assert err.value.field == "end_user_id"


def test_list_default_first_and_counts(session):
    b = make_profile(session, name="Alpha")
    default = make_default_profile(session)
    c = make_profile(session, name="beta")
    bulk_devices(session, 5, b)
    bulk_devices(session, 1, c, registered_at=utcnow())
    bulk_devices(session, 2, c)

    names = [p.name for p in session.scalars(services.list_profiles_query())]
    assert names == [default.name, "Alpha", "beta"]
    assert [p.name for p in session.scalars(services.list_profiles_query("ALP"))] == ["Alpha"]
    counts = services.profile_counts(session, [default.id, b.id, c.id])
    assert counts == {default.id: (0, 0, 0), b.id: (5, 0, 5), c.id: (3, 1, 2)}


def test_default_profile_name_is_reserved(session, admin):
    with pytest.raises(ValidationError) as err:
        services.create_profile(session, _data(name="samsung kme default profile"), admin)
    assert err.value.field == "name"


def test_concurrent_write_is_caught_at_flush(session, admin):
    profile = make_profile(session)
    version = profile.version
    # another process saves the profile after we read it
    session.execute(
        update(Profile)
        .where(Profile.id == profile.id)
        .values(version=Profile.version + 1)
        .execution_options(synchronize_session=False)
    )
    with pytest.raises(Conflict, match="changed by someone else") as err:
        services.update_profile(session, profile.id, {"description": "x"}, version, admin)
    assert isinstance(err.value.__cause__, StaleDataError)
    session.rollback()


def test_delete_profile_rollback_leaves_everything(session, admin):
    make_default_profile(session)
    profile = make_profile(session)
    bulk_devices(session, 20, profile)
    services.delete_profile(session, profile.id, admin)
    session.rollback()
    assert session.get(Profile, profile.id) is not None
    assert count_rows(session, Device, Device.profile_id == profile.id, Device.version == 1) == 20
    assert count_rows(session, Change) == 0 and count_rows(session, Operation) == 0


def test_the_default_profile_refuses_a_token_user_or_configuration(session, admin):
    default = make_default_profile(session)
    data = {"token_expiry_days": 30, "config": {"agent": {"user": "x"}}, "without_token": True}
    with pytest.raises(ValidationError) as err:
        services.update_profile(session, default.id, data, default.version, admin)
    assert sorted(e.field for e in err.value.each()) == sorted(data)
    session.rollback()
    unchanged = {"token_expiry_days": None, "config": {}, "end_user_id": None}
    services.update_profile(session, default.id, unchanged, default.version, admin)
