"""POST /enroll with strings no database can store (a lone surrogate, a NUL): every field a
device sends is checked first and refused with a clean 400, never a 500, on SQLite and
PostgreSQL; nothing is registered or audited."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.extensions import utcnow
from tests.factories import count_rows, make_device, make_profile

NOT_TEXT = ["ab\ud800cd", "\udfff", "ab\x00cd"]
FIELDS = ["imei", "serial", "token", "agent_version"]


@pytest.fixture
def device(session):
    profile = make_profile(session, name="Sales", token_expires_at=utcnow() + timedelta(days=30))
    return make_device(session, profile, serial="RF8N1234ABC"), profile


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", NOT_TEXT, ids=["surrogate", "lone-low", "nul"])
def test_a_string_that_is_not_text_is_a_400(client, session, device, field, bad):
    found, profile = device
    body = {"imei": found.imei, "token": profile.token, "agent_version": "2.3.0", field: bad}
    # json.dumps writes a lone surrogate as the escape "\ud800", as a device's agent would.
    raw = json.dumps(body)
    assert "\\ud8" in raw or "\\udf" in raw or "\\u0000" in raw

    response = client.post("/enroll", data=raw, content_type="application/json")

    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "bad_request"
    assert response.get_json()["field"] == field
    session.expire_all()
    assert session.get(Device, found.id).registered_at is None
    assert count_rows(session, AuditEvent) == 0


def test_the_same_request_with_text_registers(client, session, device):
    found, profile = device
    body = {"imei": found.imei, "token": profile.token, "agent_version": "2.3.0-ü"}
    response = client.post("/enroll", json=body)
    assert response.status_code == 200, response.get_json()
    session.expire_all()
    assert session.get(Device, found.id).agent_version == "2.3.0-ü"
