"""Two first enrollments of one device at the same moment (an agent retrying while its first
request is still running): both are answered, the device is registered once, with one audit
event, and its profile counts it once. On SQLite and PostgreSQL, through the real lane.

The two requests reach two web processes (production runs several gunicorn workers): each app
has a lane of its own, as each process does. Within one process on SQLite the lane lets one
enrollment at a time read and write (kmeweb.enroll.engine), so two threads of one app can no
longer both read the device before either writes; two processes still can."""

from __future__ import annotations

import threading

from sqlalchemy import select

from kmeweb import create_app
from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device, DeviceEvent
from kmeweb.enroll import services
from kmeweb.extensions import db
from kmeweb.profiles import counts
from kmeweb.profiles import services as profile_services
from tests.factories import make_device, make_profile


def test_two_first_enrollments_at_once_register_the_device_once(
    app, app_config, session, monkeypatch
):
    profile = make_profile(session, name="Field")
    device = make_device(session, profile)
    session.commit()
    body = {"imei": device.imei, "token": profile.token, "agent_version": "3.0"}

    # Both requests have read the device as not registered before either writes.
    both_checked = threading.Barrier(2, timeout=10)
    register = services._register

    def _register_after_both_checked(*args, **kwargs):
        both_checked.wait()
        return register(*args, **kwargs)

    monkeypatch.setattr(services, "_register", _register_after_both_checked)
    answers: list = []

    def _enroll(web) -> None:
        response = web.test_client().post("/enroll", json=body)
        answers.append((response.status_code, response.get_json()))

    other_process = create_app(app_config)
    try:
        threads = [threading.Thread(target=_enroll, args=(web,)) for web in (app, other_process)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        with other_process.app_context():
            db.engine.dispose()

    assert [status for status, _ in answers] == [200, 200], answers
    assert sorted(answer["first_registration"] for _, answer in answers) == [False, True]
    assert answers[0][1]["registered_at"] == answers[1][1]["registered_at"]
    session.expire_all()
    assert session.get(Device, device.id).registered_at is not None
    registrations = select(AuditEvent).where(AuditEvent.action == "device.register")
    assert len(session.scalars(registrations).all()) == 1
    assert profile_services.profile_counts(session, [profile.id])[profile.id] == (1, 1, 0)
    assert counts.check(session) == []
    accepted = session.scalars(select(DeviceEvent).where(DeviceEvent.device_id == device.id))
    assert sorted(bool(event.details.get("first")) for event in accepted) == [False, True]
