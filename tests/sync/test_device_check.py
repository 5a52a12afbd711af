"""Check with Samsung on the device page: a real RQ worker asks the KME simulator over HTTP for
the device's live record; KME down fails the check in one readable line, nothing else changes."""

from __future__ import annotations

import re

from sqlalchemy import select

from kmeweb.devices.models import Device, DeviceEvent, DeviceEventKind
from kmeweb.extensions import utcnow
from kmeweb.integration.models import get_integration
from kmeweb.operations.models import Operation
from kmeweb.sync.jobs import start_pull


def _pulled_device(session, work) -> Device:
    start_pull(session, "test")
    session.commit()
    work()
    return session.scalar(select(Device).where(Device.kme_device_id.is_not(None)).limit(1))


def test_check_with_samsung_shows_samsungs_value_now(
    client, login, actions, session, integration, sim, work
):
    device = _pulled_device(session, work)
    device.kme_seen_at = utcnow()  # as the pull that read it would have: the check lists changes
    session.commit()
    login("admin")
    sim.control("PATCH", f"/devices/{device.kme_device_id}", json={"userName": "zoe@example.com"})
    response = actions.post(f"/devices/{device.id}/check")
    assert response.status_code == 303 and response.location == f"/devices/{device.id}#sync"
    page = client.get(f"/devices/{device.id}").get_data(as_text=True)
    assert 'data-testid="check-running"' in page and 'hx-trigger="load delay:1s"' in page
    work()
    part = client.get(f"/devices/{device.id}/check", headers={"HX-Request": "true"})
    html = part.get_data(as_text=True)
    assert "check-running" not in html and "hx-get" not in html  # polling stopped
    assert (
        'data-testid="now-user"><span class="fw-semibold text-warning-emphasis">zoe@example.com'
        in html
    )
    assert 'data-testid="ours-user">—' in html
    assert 'data-testid="now-approval"><span class="">pending' in html
    operation = session.scalar(select(Operation).where(Operation.kind == "device.check"))
    assert operation.status == "done" and operation.params["kme"]["listing"] == "changed"
    event = session.scalar(select(DeviceEvent).where(DeviceEvent.device_id == device.id))
    assert event.kind == DeviceEventKind.CHECKED and event.details["user"] == "zoe@example.com"


def test_kme_down_during_a_check_says_so_in_one_line(
    client, login, actions, session, integration, sim, work
):
    device = _pulled_device(session, work)
    before = (device.sync_state, device.version, device.end_user_id)
    login("admin")
    sim.fault(path="/kcs/*", status=503)
    assert actions.post(f"/devices/{device.id}/check").status_code == 303
    work()
    html = client.get(f"/devices/{device.id}").get_data(as_text=True)
    errors = re.findall(r'data-testid="check-error">(.*?)</p>', html, re.S)
    assert len(errors) == 1 and "Samsung could not be asked" in errors[0], errors
    session.expire_all()
    device = session.get(Device, device.id)
    assert (device.sync_state, device.version, device.end_user_id) == before
    assert get_integration(session).last_error is None
