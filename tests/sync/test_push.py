"""Push: every kind of change reaches the simulator and comes back as synced; failures."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from kmeweb.devices import services as device_services
from kmeweb.devices.models import Device
from kmeweb.directory import services as directory
from kmeweb.integration import approvals
from kmeweb.integration.models import Integration, Upload
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from kmeweb.profiles import services as profile_services
from kmeweb.profiles.models import Profile
from kmeweb.sync import push
from kmeweb.sync.jobs import start_pull
from kmeweb.sync.knox import knox_client
from tests.sync_fixtures import kme_profile


def _pulled(session, work) -> list[Upload]:
    start_pull(session, "test")
    session.commit()
    work()
    return session.scalars(select(Upload).order_by(Upload.device_count)).all()


def _approved(session, work, upload: Upload) -> list[Device]:
    approvals.approve_upload(session, upload.id, "test")
    session.commit()
    work()
    return session.scalars(
        select(Device).where(Device.upload_id == upload.id).order_by(Device.id)
    ).all()


def _unfinished(session) -> int:
    return session.scalar(
        select(func.count()).select_from(Change).where(Change.status.in_(("pending", "running")))
    )


def test_every_kind_of_change_reaches_kme_and_comes_back_synced(session, integration, sim, work):
    small, _ = _pulled(session, work)
    devices = _approved(session, work, small)
    # approve: KME has the upload approved and the devices unassigned (Default Profile)
    assert all(d.approval == "approved" and d.sync_state == "synced" for d in devices)
    assert sim.device(devices[0].kme_device_id)["approved"] is True
    assert session.get(Upload, small.id).status == "approved"

    # profile create and update
    sales = kme_profile(session, "Sales", description="v1")
    session.commit()
    work()
    session.refresh(sales)
    assert sales.sync_state == "synced" and sales.kme_profile_id
    assert sim.profiles()[sales.kme_profile_id]["description"] == "v1"
    profile_services.update_profile(
        session,
        sales.id,
        {"name": "Sales", "description": "v2", "config": sales.config},
        sales.version,
        "test",
    )
    session.commit()
    work()
    assert sim.profiles()[sales.kme_profile_id]["description"] == "v2"
    assert session.get(Profile, sales.id).sync_state == "synced"

    # move, user + password, unassign
    moved = [d.id for d in devices[:10]]
    device_services.move_devices(session, moved, sales.id, "test")
    session.commit()
    work()
    assert {sim.device(session.get(Device, i).kme_device_id)["profileId"] for i in moved} == {
        sales.kme_profile_id
    }
    user = directory.get_or_create_user(session, "jdoe@example.com")
    device_services.set_device_user(session, moved[:2], user.id, "s3cret-pass", "test")
    session.commit()
    work()
    remote = sim.device(session.get(Device, moved[0]).kme_device_id)
    # sent RSA-encrypted with Samsung's key; the simulator decrypts with its private key
    assert (remote["userName"], remote["userToken"]) == ("jdoe@example.com", "s3cret-pass")
    assert remote["profileId"] == sales.kme_profile_id
    device_services.unassign_devices(session, moved[5:], "test")
    session.commit()
    work()
    assert sim.device(session.get(Device, moved[6]).kme_device_id)["profileId"] is None

    # delete devices, then the profile
    gone = session.get(Device, devices[-1].id)
    gone_kme = gone.kme_device_id
    device_services.delete_devices(session, [gone.id], "test")
    session.commit()
    work()
    assert gone_kme not in sim.devices()
    kme_id = sales.kme_profile_id
    profile_services.delete_profile(session, sales.id, "test")
    session.commit()
    work()
    assert kme_id not in sim.profiles()

    assert _unfinished(session) == 0
    states = dict(
        session.execute(select(Device.sync_state, func.count()).group_by(Device.sync_state)).all()
    )
    assert set(states) <= {"synced"} or states.get("synced")
    assert (
        session.scalar(
            select(func.count()).where(Device.sync_state != "synced", Device.approval == "approved")
        )
        == 0
    )
    assert session.scalar(select(func.count()).where(Operation.status != "done")) == 0


def test_push_is_idempotent_when_a_change_runs_twice(session, integration, sim, work):
    small, _ = _pulled(session, work)
    devices = _approved(session, work, small)
    sales = kme_profile(session, "Sales")
    session.commit()
    work()
    operation = device_services.move_devices(session, [d.id for d in devices], sales.id, "test")
    session.commit()
    work()
    # Put the finished change back as if a worker had died before recording "done".
    session.execute(
        Change.__table__.update()
        .where(Change.operation_id == operation.id)
        .values(status="pending", next_attempt_at=func.now())
    )
    session.commit()
    from kmeweb.operations.queue import enqueue
    from kmeweb.sync.jobs import push_job  # noqa: F401 - same job the worker runs

    enqueue("kmeweb.sync.jobs.push_job", None, job_id="push-again", queue="knox")
    work()
    counters = sim.counters()["devices"]
    for device in devices[:20]:
        profiles = counters[device.kme_device_id]["profiles"]
        assert profiles == [sales.kme_profile_id, sales.kme_profile_id]
        assert sim.device(device.kme_device_id)["profileId"] == sales.kme_profile_id
    assert session.scalar(select(func.count()).where(Device.sync_state == "pending")) == 0


def test_device_unknown_to_kme_gets_an_error_and_the_rest_go_through(
    session, integration, sim, work
):
    small, _ = _pulled(session, work)
    devices = _approved(session, work, small)
    sales = kme_profile(session, "Sales")
    session.commit()
    work()
    lost = devices[0]
    with sim.state.lock:  # the device vanishes from KME behind kmeweb's back
        tenant = sim.state.tenants[sim.creds["customer_id"]]
        tenant.devices.pop(lost.kme_device_id)
    device_services.move_devices(session, [d.id for d in devices[:5]], sales.id, "test")
    session.commit()
    work()
    lost = session.get(Device, lost.id)
    assert lost.sync_state == "error"
    # KME reports the id per device (not found / invalid) and kmeweb shows why
    assert lost.sync_error.startswith(("KME does not know this device", "invalid id"))
    others = [session.get(Device, d.id) for d in devices[1:5]]
    assert {d.sync_state for d in others} == {"synced"}
    from kmeweb.sync.status import profile_statuses

    status = profile_statuses(session)[sales.id]
    assert status.state == "error" and status.error_devices == 1


def test_unconfirmed_paths_can_be_overridden_by_configuration(session, app, integration, sim, work):
    # kme-api.md: the scopes page says PUT for v2 unassign where the notes say POST.
    app.config["KNOX_PATHS"] = {"devices_unassign_v2": "PUT /kcs/v2/kme/devices/unassignProfile"}
    small, _ = _pulled(session, work)
    devices = _approved(session, work, small)
    sales = kme_profile(session, "Sales")
    session.commit()
    device_services.move_devices(session, [devices[0].id], sales.id, "test")
    session.commit()
    work()
    device_services.unassign_devices(session, [devices[0].id], "test")
    session.commit()
    work()
    endpoints = sim.counters()["endpoints"]
    assert endpoints.get("PUT /kcs/v2/kme/devices/unassignProfile", {}).get("calls", 0) >= 1
    assert "POST /kcs/v2/kme/devices/unassignProfile" not in endpoints


def test_approval_into_the_default_profile_costs_one_kme_call(session, app, integration, sim, work):
    # KME's upload approval leaves the devices unassigned: no unassign call per batch follows.
    app.config["KNOX_BATCH_SIZE"] = 2
    small, _ = _pulled(session, work)
    before = sim.counters()["endpoints"]
    devices = _approved(session, work, small)
    assert len(devices) > 2 and all(d.sync_state == "synced" for d in devices)
    calls = {
        endpoint: counts["calls"] - before.get(endpoint, {}).get("calls", 0)
        for endpoint, counts in sim.counters()["endpoints"].items()
    }
    assert calls.get("POST /kcs/v1/kme/devices/uploads/approvals") == 1
    assert not any("unassign" in endpoint.lower() and n for endpoint, n in calls.items())
    assert session.scalar(select(Operation.status).where(Operation.kind == "upload.approve")) == (
        "done"
    )


def test_devices_moved_before_their_approval_is_pushed_end_where_the_admin_put_them(
    session, integration, sim, work
):
    # The approval's push marks the devices still in the Default Profile synced without a
    # call; the ones moved to a KME profile meanwhile go through the state-based push.
    sales = kme_profile(session, "Sales")
    session.commit()
    work()
    small, _ = _pulled(session, work)
    approvals.approve_upload(session, small.id, "test")
    session.commit()
    ids = session.scalars(select(Device.id).where(Device.upload_id == small.id)).all()
    device_services.move_devices(session, ids[:2], sales.id, "test")
    session.commit()
    default = profile_services.default_profile(session)
    kme_sales = session.get(Profile, sales.id).kme_profile_id
    # The approval's changes alone (upload, then devices): "synced" means KME holds it.
    with knox_client(session.get(Integration, integration.id)) as client:
        while (change := push.claim_next(session, "test")) is not None:
            if change.kind == "device.move":
                session.rollback()
                break
            push.process(session, client, change)
    assert change is not None, "the move's change is still to come"
    session.expire_all()
    for device in session.scalars(select(Device).where(Device.id.in_(ids))):
        remote = sim.device(device.kme_device_id)
        assert device.sync_state == "synced" and remote["approved"] is True
        kme_id = kme_sales if device.profile_id == sales.id else None
        assert remote["profileId"] == kme_id
    work()
    session.expire_all()
    for device in session.scalars(select(Device).where(Device.id.in_(ids))):
        remote = sim.device(device.kme_device_id)
        moved = device.id in ids[:2]
        assert device.sync_state == "synced" and remote["approved"] is True
        assert remote["profileId"] == (kme_sales if moved else None)
        assert device.kme_seen_profile_id == (sales.id if moved else default.id)
    # The next pull finds KME as kmeweb left it: nothing comes back as a portal change.
    _pulled(session, work)
    session.expire_all()
    assert [session.get(Device, i).profile_id for i in ids[:3]] == [sales.id, sales.id, default.id]


def test_a_refused_upload_approval_leaves_its_devices_not_synced(session, integration, sim, work):
    small, _ = _pulled(session, work)
    sim.fault(path="/kcs/v1/kme/devices/uploads/approvals", status=400, code=4000000)
    devices = _approved(session, work, small)
    assert devices and all(d.sync_state == "error" for d in devices)
    operation = session.scalar(select(Operation).where(Operation.kind == "upload.approve"))
    assert operation.status == "failed" and "KME" in operation.error


def test_unusable_credentials_are_shown_and_nothing_is_lost(session, integration, sim, work):
    from kmeweb.sync.jobs import push_job
    from kmeweb.sync.status import integration_status

    profile = kme_profile(session, "Sales")
    session.commit()
    integration.secret_enc = "not a fernet token"  # e.g. KMEWEB_ENCRYPTION_KEY was changed
    session.commit()
    with pytest.raises(ValueError):
        push_job(None)
    session.expire_all()
    status = integration_status(session)
    assert "cannot push to KME" in status["last_error"] and status["pending_changes"] == 1
    assert session.get(Profile, profile.id).sync_state == "pending"
