"""POST /enroll: every answer code, token expiry, registration without token, repeats, the rate
limits and the transport refusals (413, 415, 400). Through the real app and real Redis."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from kmeweb import crypto
from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.extensions import utcnow
from kmeweb.profiles import services as profile_services
from tests.factories import count_rows, make_device, make_end_user, make_profile

SECRET_WIFI = "wifi-secret-9"


def _enroll(client, body, **kw):
    return client.post("/enroll", json=body, **kw)


@pytest.fixture
def sales(session):
    """A synced KME profile with an associated user and a Wi-Fi password (a secret)."""
    boss = make_end_user(session, username="boss@example.com", display_name="The Boss")
    profile = make_profile(
        session,
        name="Sales",
        end_user_id=boss.id,
        token_expires_at=utcnow() + timedelta(days=30),
        secrets_enc=crypto.encrypt(json.dumps({"wifi_password": SECRET_WIFI})),
    )
    profile.config = {**profile.config, "system_extras": {"wifi_ssid": "corp", "locale": "de_DE"}}
    session.commit()
    return profile


def test_a_device_enrolls_with_its_token_and_counts_as_registered(client, session, sales):
    user = make_end_user(session, username="ann@example.com", email="ann@example.com")
    device = make_device(
        session,
        sales,
        end_user_id=user.id,
        serial="RF8N1234ABC",
        enrollment_password_enc=crypto.encrypt("pin-4711"),
    )
    assert profile_services.profile_counts(session, [sales.id])[sales.id] == (1, 0, 1)

    response = _enroll(
        client, {"imei": device.imei, "token": sales.token, "agent_version": "2.3.0"}
    )

    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["status"] == "registered" and answer["first_registration"] is True
    assert answer["server_url"] == "https://mdm.example.com"
    assert answer["device"] == {"imei": device.imei, "serial": "RF8N1234ABC", "model": "SM-G991B"}
    assert answer["user"]["username"] == "ann@example.com"  # the device's user beats the profile's
    assert answer["enrollment_password"] == "pin-4711"
    config = answer["config"]
    assert config["android.app.extra.PROVISIONING_WIFI_PASSWORD"] == SECRET_WIFI
    assert config["android.app.extra.PROVISIONING_WIFI_SSID"] == "corp"
    assert config["user"] == "ann@example.com" and config["enrollment_token"] == sales.token
    assert response.headers["Cache-Control"] == "no-store"

    session.expire_all()
    registered = session.get(Device, device.id)
    assert registered.registered_at is not None and registered.agent_version == "2.3.0"
    assert profile_services.profile_counts(session, [sales.id])[sales.id] == (1, 1, 0)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "device.register"))
    assert event.actor == "device" and event.target_id == str(device.id)
    assert event.details == {"profile": "Sales", "agent_version": "2.3.0"}


def test_the_profile_page_shows_registered_and_pending_counts(client, session, sales, login):
    first, second = make_device(session, sales), make_device(session, sales)
    assert (
        _enroll(
            client, {"imei": first.imei, "token": sales.token, "agent_version": "1"}
        ).status_code
        == 200
    )
    login("viewer")
    page = client.get(f"/profiles/{sales.id}").get_data(as_text=True)
    assert 'data-testid="fact-registered">1<' in page
    assert 'data-testid="fact-pending">1<' in page
    assert second.imei in page


def test_repeating_an_enrollment_is_harmless(client, session, sales):
    device = make_device(session, sales)
    body = {"imei": device.imei, "token": sales.token, "agent_version": "1.0"}
    assert _enroll(client, body).get_json()["first_registration"] is True
    session.expire_all()
    first_at = session.get(Device, device.id).registered_at

    again = _enroll(client, body)
    assert again.status_code == 200 and again.get_json()["first_registration"] is False
    session.expire_all()
    assert session.get(Device, device.id).registered_at == first_at
    assert count_rows(session, AuditEvent, AuditEvent.action.like("device.%")) == 1

    # a newer agent: the version changes, the first registration time stays, one audit event
    newer = _enroll(client, {**body, "agent_version": "1.1"})
    assert newer.status_code == 200
    session.expire_all()
    assert session.get(Device, device.id).agent_version == "1.1"
    assert session.get(Device, device.id).registered_at == first_at
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.agent_version") == 1
    assert profile_services.profile_counts(session, [sales.id])[sales.id] == (1, 1, 0)


def test_registration_without_token(client, session):
    open_profile = make_profile(session, name="Kiosk", without_token=True)
    device = make_device(session, open_profile, serial="R58M315CL4T", imei=None)
    response = _enroll(client, {"serial": "r58m315cl4t ", "agent_version": "1"})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert "enrollment_token" not in answer["config"]
    assert answer["profile"] == {"name": "Kiosk", "type": "kme", "token_required": False}
    session.expire_all()
    assert session.get(Device, device.id).registered_at is not None


def _refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == code, body
    # a refusal names nothing: no profile, user, token or configuration
    assert set(body) <= {"error", "message", "field"}


def test_each_refusal_has_its_code_and_registers_nothing(client, session, sales):
    other = make_profile(session, name="Other")
    in_sales = make_device(session, sales)
    in_other = make_device(session, other)
    pending = make_device(session, None)
    default = make_profile(session, kind="kme_default")
    in_default = make_device(session, default)
    unsynced_profile = make_profile(session, name="New", kme_profile_id=None, without_token=True)
    in_unsynced = make_device(session, unsynced_profile)
    moving = make_device(session, sales, sync_state="pending")
    v = {"agent_version": "1"}

    _refused(_enroll(client, {"imei": "490154203237518", **v}), 404, "unknown_device")
    _refused(_enroll(client, {"imei": pending.imei, **v}), 403, "not_approved")
    _refused(_enroll(client, {"imei": in_default.imei, **v}), 403, "no_profile")
    _refused(_enroll(client, {"imei": in_sales.imei, **v}), 401, "token_required")
    _refused(
        _enroll(client, {"imei": in_sales.imei, "token": sales.token + "x", **v}),
        401,
        "token_invalid",
    )
    # another profile's token: the device is unknown to it (its data is never shown)
    _refused(
        _enroll(client, {"imei": in_sales.imei, "token": other.token, **v}), 404, "unknown_device"
    )
    _refused(
        _enroll(client, {"imei": in_other.imei, "token": sales.token, **v}), 404, "unknown_device"
    )
    _refused(_enroll(client, {"imei": in_unsynced.imei, **v}), 409, "profile_not_synced")
    _refused(
        _enroll(client, {"imei": in_unsynced.imei, "token": unsynced_profile.token, **v}),
        409,
        "profile_not_synced",
    )
    # moved into Sales but KME has not been told: it cannot hold Sales' token yet
    _refused(_enroll(client, {"imei": moving.imei, **v}), 409, "profile_not_synced")

    session.expire_all()
    assert count_rows(session, Device, Device.registered_at.is_not(None)) == 0
    assert count_rows(session, AuditEvent) == 0


def test_an_expired_token_is_refused_until_it_is_extended(client, session, sales, admin):
    device = make_device(session, sales)
    sales.token_expires_at = utcnow() - timedelta(minutes=1)
    session.commit()
    body = {"imei": device.imei, "token": sales.token, "agent_version": "1"}
    _refused(_enroll(client, body), 401, "token_expired")
    assert profile_services.token_status(sales) == "expired"

    profile_services.extend_token(session, sales.id, 7, admin)
    session.commit()
    assert _enroll(client, body).status_code == 200


def test_a_refreshed_token_invalidates_the_old_one(client, session, sales, admin):
    device = make_device(session, sales)
    old = sales.token
    profile_services.refresh_token(session, sales.id, 30, admin)
    session.commit()
    body = {"imei": device.imei, "agent_version": "1"}
    _refused(_enroll(client, {**body, "token": old}), 401, "token_invalid")
    assert _enroll(client, {**body, "token": sales.token}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent_version": "1"}, "imei"),
        ({"imei": "490154203237519", "agent_version": "1"}, "imei"),  # Luhn fails
        ({"serial": "AB", "agent_version": "1"}, "serial"),
        ({"imei": "490154203237518"}, "agent_version"),
        ({"imei": "490154203237518", "agent_version": "x" * 65}, "agent_version"),
        ({"imei": 490154203237518, "agent_version": "1"}, "imei"),
        ({"imei": "490154203237518", "agent_version": "1", "token": 7}, "token"),
    ],
)
def test_invalid_fields_are_400_with_the_field(client, body, field):
    response = _enroll(client, body)
    _refused(response, 400, "bad_request")
    assert response.get_json()["field"] == field


def test_transport_refusals_413_415_400(app, client):
    app.config["ENROLL_MAX_BYTES"] = 512
    big = {"imei": "490154203237518", "agent_version": "1", "pad": "x" * 600}
    _refused(client.post("/enroll", json=big), 413, "payload_too_large")
    form = {"imei": "490154203237518", "agent_version": "1"}
    _refused(client.post("/enroll", data=form), 415, "unsupported_media_type")
    _refused(client.post("/enroll", data="imei=1", content_type="text/plain"), 415,
             "unsupported_media_type")  # fmt: skip
    for raw in (b"{not json", b"\xff\xfe", b"[" * 400, b'["a list"]'):
        _refused(client.post("/enroll", data=raw, content_type="application/json"), 400,
                 "bad_request")  # fmt: skip
    response = client.get("/enroll")
    assert response.status_code == 405 and response.is_json


def _counters(redis_url: str) -> list[bytes]:
    return redis.Redis.from_url(redis_url).keys("*kmeweb-enroll*")


def test_rate_limited_per_device_and_per_ip(app, client, session, sales, redis_url):
    app.config["ENROLL_DEVICE_RATE_LIMIT"] = "3 per minute"
    device = make_device(session, sales)
    body = {"imei": device.imei, "token": sales.token, "agent_version": "1"}
    statuses = [_enroll(client, body).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert any(device.imei.encode() in key for key in _counters(redis_url))  # kept in Redis
    limited = _enroll(client, body)
    _refused(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # another device from the same address still gets through
    other = make_device(session, sales)
    assert _enroll(client, {**body, "imei": other.imei}).status_code == 200
    # a wrong guess counts against the device it names too (no free guessing)
    guesses = [_enroll(client, {**body, "imei": other.imei, "token": "x"}) for _ in range(3)]
    assert [r.status_code for r in guesses] == [401, 401, 429]

    app.config["ENROLL_IP_RATE_LIMIT"] = "2 per minute"
    statuses = [
        _enroll(client, body, environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code
        for _ in range(3)
    ]
    assert statuses[2] == 429
    # refused input counts against the address too: garbage is throttled
    response = client.post(
        "/enroll", data=b"{", content_type="application/json",
        environ_base={"REMOTE_ADDR": "10.1.1.1"},
    )  # fmt: skip
    _refused(response, 429, "rate_limited")
    assert _enroll(client, body, environ_base={"REMOTE_ADDR": "10.2.2.2"}).status_code == 429
    # ...that one was the device limit; a fresh device from a fresh address passes
    third = make_device(session, sales)
    fresh = _enroll(client, {**body, "imei": third.imei}, environ_base={"REMOTE_ADDR": "10.2.2.2"})
    assert fresh.status_code == 200


def test_rate_limits_go_on_in_memory_when_redis_is_down(app, client, session, sales, redis_url):
    app.config["ENROLL_DEVICE_RATE_LIMIT"] = "2 per minute"
    from kmeweb.enroll import ratelimit

    pool = ratelimit.limiters(app).client.connection_pool
    pool.connection_kwargs["port"] = 1  # nothing listens there: Redis is unreachable
    device = make_device(session, sales)
    body = {"imei": device.imei, "token": sales.token, "agent_version": "1"}
    statuses = [_enroll(client, body).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert _counters(redis_url) == []  # nothing reached Redis: the limits were kept in memory
