"""POST /enroll's own lane (kmeweb.enroll.lane) skips Flask's hooks but keeps what every answer
must have: the security headers, the request id, the request metrics, no cookies, and the
forwarded client address behind a trusted proxy."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.ops.metrics import HTTP_REQUESTS
from kmeweb.security import CONTENT_SECURITY_POLICY
from tests.factories import make_device, make_profile


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return {**app_config, "PROXY_HOPS": 1}


def _enrolled(session):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == "device.register")).all()


def _count(status: str) -> float:
    return HTTP_REQUESTS.labels("enroll.enroll", status)._value.get()


def test_answers_carry_the_security_headers_and_the_request_id_and_no_cookie(client, session):
    profile = make_profile(session)
    device = make_device(session, profile)
    session.commit()
    for body, status in (
        ({"imei": device.imei, "token": profile.token, "agent_version": "1"}, 200),
        ({"imei": "490154203237518", "token": "wrong", "agent_version": "1"}, 401),
    ):
        response = client.post("/enroll", json=body, headers={"X-Request-Id": "agent-42"})
        assert response.status_code == status, response.get_json()
        assert response.is_json
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Request-Id"] == "agent-42"
        assert "Set-Cookie" not in response.headers


def test_enrollments_are_counted_by_status_in_the_request_metrics(client, session):
    profile = make_profile(session)
    device = make_device(session, profile)
    session.commit()
    ok, refused = _count("200"), _count("415")
    client.post("/enroll", json={"imei": device.imei, "token": profile.token, "agent_version": "1"})
    client.post("/enroll", data="imei=1", content_type="text/plain")
    assert (_count("200"), _count("415")) == (ok + 1, refused + 1)


def test_behind_a_trusted_proxy_the_device_address_is_the_forwarded_one(client, session):
    profile = make_profile(session)
    device = make_device(session, profile)
    session.commit()
    response = client.post(
        "/enroll",
        json={"imei": device.imei, "token": profile.token, "agent_version": "1"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status_code == 200, response.get_json()
    session.expire_all()
    assert [event.ip for event in _enrolled(session)] == ["203.0.113.9"]


def test_other_methods_and_paths_still_get_flasks_answers(client):
    response = client.get("/enroll")
    assert response.status_code == 405 and response.is_json
    assert client.post("/enroll/x", json={}).status_code == 404


def test_a_profile_without_a_server_url_answers_with_this_servers(client, session):
    profile = make_profile(session)
    config = dict(profile.config)
    config["agent"] = {k: v for k, v in config["agent"].items() if k != "server_url"}
    config["kme"] = {k: v for k, v in config["kme"].items() if k != "mdm_server_uri"}
    profile.config = config
    device = make_device(session, profile)
    session.commit()
    response = client.post(
        "/enroll",
        json={"imei": device.imei, "token": profile.token, "agent_version": "1"},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ignored.example"},
        base_url="http://kme.corp.example",
    )
    assert response.status_code == 200, response.get_json()
    # Behind one proxy the scheme is the forwarded one; the host is the request's own.
    assert response.get_json()["server_url"] == "https://kme.corp.example"
