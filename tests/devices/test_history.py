"""A device's History: each step of its life in the words an admin reads, newest first, from
the real services, the push against the KME simulator (with a failure and its retry), and the
enrollment endpoint; the same rows as CSV; a viewer reads it; the purge takes old entries."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from kmeweb.audit.retention import save_retention
from kmeweb.devices import history
from kmeweb.devices import services as devices
from kmeweb.devices.models import Device, DeviceEvent, DeviceEventKind
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.ops.retention import purge_history
from kmeweb.outbox.models import Change, ChangeAttempt, ChangeStatus
from kmeweb.sync.jobs import push_job, start_pull
from tests.factories import bulk_devices, count_rows, make_end_user, make_profile
from tests.sync_fixtures import kme_profile, wait_until, with_sync_config


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def _pushed(session, work) -> None:
    """Run the worker until every change went. A retry due later than half a second is an
    RQ job scheduled for then, which a burst worker without its scheduler never runs: the
    push job then runs here, in this process, as the scheduled job would."""
    unfinished = (ChangeStatus.PENDING, ChangeStatus.RUNNING)

    def done() -> bool:
        work()
        if count_rows(session, Change, Change.status.in_(unfinished)):
            push_job()
            session.commit()
        return count_rows(session, Change, Change.status.in_(unfinished)) == 0

    wait_until(done, what="the push")


def test_history_tells_each_step_newest_first_and_the_csv_has_the_same_rows(
    session, integration, sim, work, make_admin, login, client
):
    lee = make_admin("lee@example.com")
    start_pull(session, "test")
    session.commit()
    work()
    upload = session.scalars(select(Upload).order_by(Upload.device_count)).first()
    approvals.approve_upload(session, upload.id, lee)
    session.commit()
    _pushed(session, work)
    device = session.scalars(
        select(Device).where(Device.upload_id == upload.id).order_by(Device.id)
    ).first()
    device_id, imei = device.id, device.imei
    sales = kme_profile(session, "Sales")
    session.commit()
    _pushed(session, work)

    # The move's first attempt: Samsung answers 503 to each of the client's 3 tries.
    sim.fault(
        path="/kcs/v1/kme/devices/assignProfile",
        status=503,
        code=5030000,
        message="Service busy",
        remaining=3,
    )
    devices.move_devices(session, [device_id], sales.id, lee)
    session.commit()
    _pushed(session, work)
    jdoe = make_end_user(session, username="jdoe@example.com")
    devices.set_device_user(session, [device_id], jdoe.id, "s3cret-pass", lee)
    session.commit()
    _pushed(session, work)
    devices.edit_attributes(session, [device_id], {"site": "Paris"}, lee)
    session.commit()
    refused = client.post("/enroll", json={"imei": imei, "agent_version": "7.1"})
    assert refused.status_code == 401
    token = session.get(type(sales), sales.id).token
    accepted = client.post("/enroll", json={"imei": imei, "agent_version": "7.1", "token": token})
    assert accepted.status_code == 200, accepted.get_json()
    assert session.get(Device, device_id).last_refusal_code == "token_required"
    devices.unassign_devices(session, [device_id], lee)
    session.commit()
    _pushed(session, work)
    devices.delete_devices(session, [device_id], lee)
    session.commit()
    _pushed(session, work)

    entries = history.device_history(session, device_id).entries
    lines = [(e.who, e.what, e.detail) for e in reversed(entries)]
    default = "Samsung KME Default Profile"
    sent = ("kmeweb (sync)", "Sent {} to Samsung: accepted", "")
    assert [(who, what) for who, what, _ in lines] == [
        (lines[0][0], "Uploaded by the reseller"),
        ("lee@example.com", "Approved"),
        (sent[0], sent[1].format("the approval")),
        ("lee@example.com", "Moved"),
        ("kmeweb (sync)", "Sent the move to Samsung: refused, will retry"),
        (sent[0], sent[1].format("the move")),
        ("lee@example.com", "Associated user changed"),
        (sent[0], sent[1].format("the user")),
        ("lee@example.com", "Attributes edited"),
        ("the device", "Enrollment refused"),
        ("the device", "Enrollment accepted"),
        ("lee@example.com", "Unassigned"),
        (sent[0], sent[1].format("the unassign")),
        ("lee@example.com", "Deleted"),
        (sent[0], sent[1].format("the deletion")),
    ]
    details = [detail for _, _, detail in lines]
    assert upload.kme_upload_id in details[0] and lines[0][0] != "kmeweb"
    assert details[1].startswith(f"into {default}")
    assert details[1].endswith(f"(upload {upload.kme_upload_id})")
    assert details[3] == f"{default} → Sales"
    assert details[4].startswith("5030000 Service busy")
    assert details[6] == "no user → jdoe@example.com; enrollment password changed"
    assert details[8] == "site: — → Paris"
    assert details[9].startswith("token_required This device's profile requires")
    assert details[10].startswith("first registration, agent 7.1")
    assert details[11] == f"Sales → {default}"
    assert details[13] == f"from kmeweb and KME (was {imei})"

    # Pages of 4 by the cursor give the same entries.
    paged, before = [], None
    while True:
        page = history.device_history(session, device_id, before, limit=4)
        paged += page.entries
        if page.older is None:
            break
        before = page.older
    assert [(e.what, e.detail) for e in paged] == [(e.what, e.detail) for e in entries]

    # A viewer reads the (deleted) device's history and downloads it, and can do nothing else.
    login("viewer")
    page = client.get(f"/devices/{device_id}/history")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "History" in html and "Sales → Samsung KME Default Profile" in html
    assert "deleted" in html and "<form" not in html.split('id="device-history"')[1]
    download = client.get(f"/devices/{device_id}/history.csv")
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == ["When", "Who", "What", "Details"]
    assert [tuple(r[1:]) for r in rows[1:]] == [(e.who, e.what, e.detail) for e in entries]
    fragment = client.get(f"/devices/{device_id}/history", headers={"HX-Request": "true"})
    assert fragment.get_data(as_text=True).lstrip().startswith("<section")


def test_csv_neutralises_formulas_and_paging_works_over_http(session, admin, login, client):
    profile = make_profile(session, name="Lab")
    other = make_profile(session, name="=cmd|' /C calc'!A0")
    device = Device(imei="356938035643809", approval="approved", profile_id=profile.id)
    session.add(device)
    session.commit()
    for _ in range(30):
        devices.move_devices(session, [device.id], other.id, admin)
        devices.move_devices(session, [device.id], profile.id, admin)
    session.commit()
    login("viewer")
    first = client.get(f"/devices/{device.id}/history").get_data(as_text=True)
    assert first.count('data-testid="history-entry"') == 50 and "Older ›" in first
    older = first.split('id="history-older"')[1].split('href="')[1].split('"')[0]
    rows = client.get(older.replace("&amp;", "&"), headers={"HX-Request": "true"})
    text = rows.get_data(as_text=True)
    assert text.lstrip().startswith("<tr") and text.count('data-testid="history-entry"') == 10
    assert "Older" not in text
    body = client.get(f"/devices/{device.id}/history.csv").get_data(as_text=True)
    assert "'=cmd" in body and "\n=cmd" not in body and ",=cmd" not in body
    assert client.get("/devices/999999/history").status_code == 404


def test_the_history_purge_takes_old_events_and_push_attempts(session, admin):
    now = datetime.now(UTC)
    profile = make_profile(session)
    device = Device(imei="490154203237518", approval="approved", profile_id=profile.id)
    session.add(device)
    session.commit()
    change = Change(kind="device.move", payload={"device_ids": [device.id]}, status="done")
    change.created_at = change.done_at = now - timedelta(days=40)
    session.add(change)
    session.flush()
    session.add(ChangeAttempt(change_id=change.id, outcome="accepted", at=now - timedelta(days=40)))
    for age in (40, 35, 5):
        history.record_events(
            session,
            DeviceEventKind.MOVED,
            [device.id],
            admin,
            {"from": None, "to": profile.id},
            change_id=change.id,
            at=now - timedelta(days=age),
        )
    save_retention(session, {"days": "30"}, "test")
    session.commit()
    report = purge_history(session, "test", batch_size=1, now=now)
    assert report.device_events == 2 and report.changes == 1
    assert count_rows(session, DeviceEvent) == 1
    assert session.scalar(select(func.count()).select_from(ChangeAttempt)) == 0


def test_a_move_in_several_outbox_rows_names_each_devices_own_row_and_source(app, session, admin):
    """Seven devices from two profiles moved at once, in outbox rows of two devices each:
    every device's "moved" event names the row that carries it to KME and the profile it
    came from (one INSERT per source profile, the rows' devices as one parameter)."""
    app.config["KNOX_BATCH_SIZE"] = 2
    east, west, target = make_profile(session), make_profile(session), make_profile(session)
    from_east = bulk_devices(session, 4, east)
    from_west = bulk_devices(session, 3, west)
    devices.move_devices(session, from_west + from_east, target.id, admin)
    session.commit()
    carried = {
        device_id: change.id
        for change in session.scalars(select(Change).where(Change.profile_id == target.id))
        for device_id in change.payload["device_ids"]
    }
    assert len(set(carried.values())) == 4 and set(carried) == {*from_east, *from_west}
    moved = session.scalars(
        select(DeviceEvent).where(DeviceEvent.kind == DeviceEventKind.MOVED)
    ).all()
    assert sorted((e.device_id, e.change_id, e.details["from"]) for e in moved) == sorted(
        [(d, carried[d], east.id) for d in from_east]
        + [(d, carried[d], west.id) for d in from_west]
    )


def test_a_change_only_kmeweb_holds_is_named_by_no_outbox_row(session, admin):
    """Devices of a self-maintained profile never go to KME: their "user" events name no
    outbox row (NULL), one per device."""
    shelf = make_profile(session, kind="self_maintained", kme_profile_id=None, token=None)
    ids = bulk_devices(session, 3, shelf)
    user = make_end_user(session)
    devices.set_device_user(session, ids, user.id, None, admin)
    session.commit()
    events = session.scalars(select(DeviceEvent).where(DeviceEvent.kind == DeviceEventKind.USER))
    assert sorted((e.device_id, e.change_id) for e in events) == [(i, None) for i in sorted(ids)]
