"""An operation's per-device results as a script follows them: pending while queued, then
succeeded, or failed with Samsung's code and message, after a real push to the simulator."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kmeweb.devices import services as device_services
from kmeweb.devices.models import Device
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.knox.errors import BULK_ENROLL_DEVICE_INVALID
from kmeweb.profiles.models import Profile
from kmeweb.sync.jobs import start_pull
from tests.factories import make_device, make_profile
from tests.sync_fixtures import kme_profile, with_sync_config


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


@pytest.fixture
def approved(session, integration, sim, work) -> list[Device]:
    """The demo tenant's 250-device upload pulled and approved, and a KME profile "Sales"."""
    start_pull(session, "test")
    session.commit()
    work()
    small = session.scalars(select(Upload).order_by(Upload.device_count)).first()
    approvals.approve_upload(session, small.id, "test")
    kme_profile(session, "Sales")
    session.commit()
    work()
    return session.scalars(
        select(Device).where(Device.upload_id == small.id).order_by(Device.id)
    ).all()


def results(api, operation_id: int, limit: int = 100) -> list[dict]:
    items, cursor = [], None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = api.get(f"/operations/{operation_id}/results{query}")
        assert r.status_code == 200, r.get_data(as_text=True)
        items += r.get_json()["items"]
        cursor = r.get_json()["next_cursor"]
        if cursor is None:
            return items


def test_results_of_a_move_where_kme_refuses_one_device(api, app, session, approved, sim, work):
    sales = session.scalar(select(Profile).where(Profile.name == "Sales"))
    app.config["KNOX_BATCH_SIZE"] = 1  # one device per change and per KME call
    devices = approved[:3]
    operation = device_services.move_devices(session, [d.id for d in devices], sales.id, "test")
    session.commit()

    queued = results(api, operation.id, limit=2)  # three changes, over two pages
    assert [(r["device_id"], r["result"], r["error"]) for r in queued] == [
        (d.id, "pending", None) for d in devices
    ]
    assert queued[0]["imei"] == devices[0].imei

    sim.fault(
        path="/kcs/v1/kme/devices/assignProfile",
        status=400,
        code=BULK_ENROLL_DEVICE_INVALID,
        message="Device is enrolled by another customer",
        remaining=1,
    )
    work()
    done = results(api, operation.id, limit=2)
    assert [(r["device_id"], r["result"]) for r in done] == [
        (devices[0].id, "failed"),
        (devices[1].id, "succeeded"),
        (devices[2].id, "succeeded"),
    ]
    error = done[0]["error"]
    assert str(BULK_ENROLL_DEVICE_INVALID) in error
    assert "Device is enrolled by another customer" in error
    assert [r["error"] for r in done[1:]] == [None, None]
    assert api.get(f"/operations/{operation.id}").get_json()["status"] == "done"


def test_results_of_a_refused_upload_approval_name_samsungs_code(
    api, session, integration, sim, work
):
    start_pull(session, "test")
    session.commit()
    work()
    small = session.scalars(select(Upload).order_by(Upload.device_count)).first()
    sim.fault(path="/kcs/v1/kme/devices/uploads/approvals", status=400, code=4000000)
    operation = approvals.approve_upload(session, small.id, "test")
    session.commit()
    work()
    rows = results(api, operation.id, limit=1000)
    assert len(rows) == 250
    assert {r["result"] for r in rows} == {"failed"}
    assert all(
        "KME did not approve the upload" in r["error"] and "4000000" in r["error"] for r in rows
    )
    assert rows[0]["imei"] and rows[0]["device_id"]
    assert api.get(f"/operations/{operation.id}").get_json()["status"] == "failed"


def test_results_of_a_delete_name_what_kme_knew_the_device_by(api, session):
    profile = make_profile(session)
    device = make_device(session, profile, kme_device_id="KME-1")
    operation = device_services.delete_devices(session, [device.id], "test")
    session.commit()
    rows = results(api, operation.id)
    assert rows == [
        {
            "device_id": None,
            "identifier": "KME-1",
            "imei": None,
            "serial": None,
            "result": "pending",
            "error": None,
        }
    ]


def test_unknown_operation_bad_cursor_and_scope(api, api_as, session):
    assert api.get("/operations/999999/results").status_code == 404
    profile = make_profile(session)
    device = make_device(session, profile)
    operation = device_services.unassign_devices(session, [device.id], "test")
    session.commit()
    bad = api.get(f"/operations/{operation.id}/results?cursor=WzFd")  # [1]: not a position
    assert bad.status_code == 422 and bad.get_json()["code"] == "invalid_cursor"
    other = api_as(scopes=["kme.devices:read"])
    assert other.get(f"/operations/{operation.id}/results").status_code == 403
