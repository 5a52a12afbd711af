"""Integration settings, activation, reseller preferences and upload approval."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kmeweb import crypto
from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.integration import activation, approvals, settings, uploads
from kmeweb.integration.models import Integration
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from kmeweb.profiles.models import Profile
from kmeweb.rules import services as rules
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_profile,
    make_reseller,
    make_upload,
)

SETTINGS = {
    "name": "Knox EU",
    "description": "Production tenant",
    "auth_mode": "oauth",
    "base_url": "https://eu-api.samsungknox.com/",
    "client_id": "client-1",
    "secret": "s3cret",
    "customer_id": "C-100",
    "sync_interval_s": "600",
}


def test_save_settings_encrypts_secret_and_keeps_it_on_empty(session, admin):
    integration = settings.save_settings(session, SETTINGS, admin)
    session.commit()
    assert integration.secret_enc != "s3cret"
    assert crypto.decrypt(integration.secret_enc) == "s3cret"
    assert integration.base_url == "https://eu-api.samsungknox.com"
    assert integration.sync_interval_s == 600 and integration.active is False

    settings.save_settings(session, {**SETTINGS, "secret": "", "name": "Knox EU 2"}, admin)
    session.commit()
    assert crypto.decrypt(integration.secret_enc) == "s3cret"
    assert integration.name == "Knox EU 2"
    assert count_rows(session, Integration) == 1
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "integration.settings")
    ).all()
    assert len(events) == 2 and "s3cret" not in str([e.details for e in events])


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name": ""}, "name"),
        ({"auth_mode": "basic"}, "auth_mode"),
        ({"base_url": "api.samsungknox.com"}, "base_url"),
        ({"token_url": "nope"}, "token_url"),
        ({"client_id": ""}, "client_id"),
        ({"secret": ""}, "secret"),
        ({"sync_interval_s": "299"}, "sync_interval_s"),
        ({"sync_interval_s": "86401"}, "sync_interval_s"),
        ({"sync_interval_s": "often"}, "sync_interval_s"),
        ({"auth_mode": "legacy", "customer_id": ""}, "customer_id"),
    ],
)
def test_settings_validation(session, admin, over, field):
    with pytest.raises(ValidationError) as err:
        settings.save_settings(session, {**SETTINGS, **over}, admin)
    assert err.value.field == field


def test_changing_auth_mode_needs_a_new_secret(session, admin):
    settings.save_settings(session, SETTINGS, admin)
    with pytest.raises(ValidationError) as err:
        settings.save_settings(session, {**SETTINGS, "auth_mode": "legacy", "secret": ""}, admin)
    assert err.value.field == "secret"


def test_activate_creates_one_default_profile(session, admin):
    with pytest.raises(Conflict):
        activation.activate_integration(session, admin)
    settings.save_settings(session, SETTINGS, admin)
    integration = activation.activate_integration(session, admin)
    activation.activate_integration(session, admin)
    session.commit()
    assert integration.active
    defaults = session.scalars(select(Profile).where(Profile.kind == "kme_default")).all()
    assert len(defaults) == 1
    assert defaults[0].name == "Samsung KME Default Profile" and defaults[0].token is None
    assert count_rows(session, Change) == 0

    activation.deactivate_integration(session, admin)
    session.commit()
    assert integration.active is False
    assert count_rows(session, Profile) == 1
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-3:] == [
        "integration.activate",
        "integration.activate",
        "integration.deactivate",
    ]


def test_approve_upload_to_default_profile(session, admin):
    default = make_default_profile(session)
    upload = make_upload(session, pending=1200)
    session.expire_all()

    operation = approvals.approve_upload(session, upload.id, admin)
    session.commit()

    assert operation.kind == "upload.approve"
    assert operation.label == f"Approve 1,200 devices of upload {upload.kme_upload_id}"
    assert operation.total == 1200
    assert upload.status == "approved"
    assert count_rows(session, Device, Device.approval == "approved") == 1200
    assert (
        count_rows(
            session,
            Device,
            Device.profile_id == default.id,
            Device.sync_state == "pending",
            Device.version == 2,
        )
        == 1200
    )
    changes = session.scalars(select(Change).order_by(Change.id)).all()
    # Into the Default Profile the device rows need no KME call each: many batches per row.
    assert [c.kind for c in changes] == ["upload.approve", "device.approve"]
    assert changes[0].payload == {"kme_upload_ids": [upload.kme_upload_id]}
    assert all(c.profile_id == default.id and c.operation_id == operation.id for c in changes)
    assert sum(c.device_count for c in changes[1:]) == 1200
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "upload.approve")).one()
    assert event.details["devices"] == 1200

    with pytest.raises(Conflict):
        approvals.approve_upload(session, upload.id, admin)


def test_approve_upload_follows_the_rule_for_its_reseller(session, admin):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    reseller = make_reseller(session)
    rule = rules.create_rule(
        session,
        {"name": "Acme", "reseller_ids": [reseller.id], "action": "hold", "profile_id": sales.id},
        admin,
    )
    upload = make_upload(session, pending=3, reseller_id=reseller.id)
    approvals.approve_upload(session, upload.id, admin)
    session.commit()
    placed = session.scalars(select(Device).where(Device.profile_id == sales.id)).all()
    assert len(placed) == 3
    assert {(d.rule_id, d.rule_version) for d in placed} == {(rule.id, 1)}
    assert {c.profile_id for c in session.scalars(select(Change))} == {sales.id}


def test_approve_upload_rollback_leaves_nothing(session, admin):
    make_default_profile(session)
    upload = make_upload(session, pending=10)
    approvals.approve_upload(session, upload.id, admin)
    session.rollback()
    assert count_rows(session, Change) == 0 and count_rows(session, Operation) == 0
    assert count_rows(session, Device, Device.approval == "pending") == 10
    assert count_rows(session, Device, Device.version != 1) == 0


def test_approve_devices_subset_makes_upload_partial(session, admin):
    make_default_profile(session)
    upload = make_upload(session, pending=10)
    ids = list(session.scalars(select(Device.id).where(Device.upload_id == upload.id)))
    operation = approvals.approve_devices(session, ids[:4], admin)
    session.commit()
    assert operation.kind == "device.approve" and operation.total == 4
    assert upload.status == "partial"
    assert count_rows(session, Device, Device.approval == "approved") == 4
    pending = session.scalars(uploads.pending_devices_query(upload.id)).all()
    assert [d.id for d in pending] == ids[4:]

    with pytest.raises(Conflict):
        approvals.approve_devices(session, ids[:5], admin)
    session.rollback()
    with pytest.raises(NotFound):
        approvals.approve_devices(session, [*ids[4:], 999999], admin)
    session.rollback()
    approvals.approve_devices(session, ids[4:], admin)
    session.commit()
    assert upload.status == "approved"


def test_pending_devices_query_excludes_approved(session):
    upload = make_upload(session, pending=2)
    profile = make_profile(session)
    bulk_devices(session, 3, profile, upload_id=upload.id)
    assert len(session.scalars(uploads.pending_devices_query(upload.id)).all()) == 2
