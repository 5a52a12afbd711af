"""One device's page (kmeweb.devices.device_views): its sections for an approved, a pending and
a registered device, the console-wide search, its actions, and what a viewer may do."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from kmeweb.devices.models import Device, DeviceEvent, DeviceEventKind
from kmeweb.operations.models import Operation
from kmeweb.profiles.models import Profile
from kmeweb.rules.models import RoutingRule
from tests.factories import (
    make_default_profile,
    make_device,
    make_end_user,
    make_profile,
    make_upload,
)

HX = {"HX-Request": "true"}


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


@pytest.fixture
def placed(session):
    """An approved device in a KME profile: user, upload with order number, rule, attributes,
    approved by an admin."""
    profile = make_profile(session, name="Sales")
    user = make_end_user(session, username="ana", email="ana@example.com", display_name="Ana")
    upload = make_upload(session, order_number="PO-778")
    rule = RoutingRule(name="Sales phones", version=3, position=1)
    session.add(rule)
    session.commit()
    device = make_device(
        session,
        profile,
        serial="RF8N12345AB",
        end_user_id=user.id,
        upload_id=upload.id,
        rule_id=rule.id,
        rule_version=3,
        attributes={"site": "Oslo"},
    )
    session.add(
        DeviceEvent(device_id=device.id, kind=DeviceEventKind.APPROVED, actor="boss@example.com")
    )
    session.commit()
    return device


def test_an_approved_device_shows_who_it_is_where_and_why(client, login, session, placed):
    login("admin")
    html = _text(client.get(f"/devices/{placed.id}"))
    assert placed.imei in html and "RF8N12345AB" in html and "SM-G991B" in html
    assert "PO-778" in html and "Reseller " in html  # the upload's reseller, linked
    assert "/integration/uploads/" in html
    assert ">Sales</a>" in html and "Ana" in html and "ana@example.com" in html
    assert "Approved by" in html and "boss@example.com" in html
    assert "Sales phones" in html and "(version 3)" in html
    assert "site: Oslo" in html
    assert "not registered" in html
    for action in ("Move", "Unassign", "Change Associated User", "Edit attributes"):
        assert f"</svg> {action}</a>" in html
    assert "Check with Samsung" in html


def test_a_pending_device_waits_for_approval_and_offers_no_profile_action(client, login, session):
    login("admin")
    upload = make_upload(session, order_number="PO-9")
    device = make_device(session, None, upload_id=upload.id)
    html = _text(client.get(f"/devices/{device.id}"))
    assert "waiting for approval" in html and "PO-9" in html
    assert 'data-testid="device-actions"' not in html
    assert "Check with Samsung" in html


def test_a_registered_device_shows_its_enrollment_and_last_refusal(client, login, session):
    login("admin")
    profile = make_profile(session)
    when = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
    device = make_device(
        session,
        profile,
        registered_at=when,
        agent_version="2.4.1",
        last_refusal_code="TOKEN_EXPIRED",
        last_refusal_at=when,
        sync_state="error",
        sync_error="KME refused it (4001 bad)",
    )
    html = _text(client.get(f"/devices/{device.id}"))
    assert "2025-03-04 10:30 UTC" in html and "2.4.1" in html
    assert "TOKEN_EXPIRED" in html
    assert "KME refused it (4001 bad)" in html
    assert "Order number" in html and "—" in html  # no upload: unknown


def test_last_pull_values_and_not_found_in_kme(client, login, session):
    login("admin")
    sales, ops = make_profile(session, name="Sales"), make_profile(session, name="Ops")
    seen = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    device = make_device(
        session,
        sales,
        kme_seen_approval="approved",
        kme_seen_profile_id=ops.id,
        kme_seen_user="bob",
        kme_seen_at=seen,
        portal_changed_at=seen,
    )
    html = _text(client.get(f"/devices/{device.id}"))
    assert 'data-testid="seen-profile"><span class="fw-semibold text-warning-emphasis">Ops' in html
    assert "bob" in html and "Changed in the Samsung portal" in html
    assert "Send ours again" in html and "Take Samsung's</button>" in html
    assert "a pull that finds another value in Samsung takes Samsung" in html
    device.kme_missing_at = seen
    session.commit()
    assert "not found in KME" in _text(client.get(f"/devices/{device.id}"))


def test_header_search_finds_by_imei_serial_and_user(client, login, session, placed):
    login("admin")
    assert 'data-testid="header-search"' in _text(client.get("/"))
    for q in (placed.imei, placed.imei[:8], "rf8n12345ab"):
        response = client.get("/devices/search", query_string={"q": q})
        assert response.status_code == 303 and response.location == f"/devices/{placed.id}"
    other = make_device(
        session, session.get(Profile, placed.profile_id), end_user_id=placed.end_user_id
    )
    html = _text(client.get("/devices/search", query_string={"q": "ana@exa"}))
    assert html.count('data-testid="search-row"') == 2
    assert f'href="/devices/{placed.id}"' in html and f'href="/devices/{other.id}"' in html
    none = _text(client.get("/devices/search", query_string={"q": "nothing-like-it"}))
    assert "No device matches “nothing-like-it”." in none


def test_identifiers_in_the_profile_table_and_audit_link_to_the_page(
    client, login, session, placed
):
    login("admin")
    html = _text(client.get(f"/profiles/{placed.profile_id}"))
    assert f'href="/devices/{placed.id}">{placed.imei}</a>' in html


def test_move_from_the_device_page_comes_back_to_it(client, login, actions, session):
    login("admin")
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    device = make_device(session, default)
    dialog = _text(
        client.get(f"/profiles/{default.id}/move?device_ids={device.id}&back={device.id}")
    )
    assert f'name="back" type="hidden" value="{device.id}"' in dialog
    assert f'href="/devices/{device.id}">Cancel</a>' in dialog
    data = {"device_ids": [device.id], "profile_id": str(sales.id), "back": str(device.id)}
    response = actions.post(f"/profiles/{default.id}/move", data)
    assert response.status_code == 303 and response.location == f"/devices/{device.id}"
    session.expire_all()
    assert session.get(Device, device.id).profile_id == sales.id


def test_change_associated_user_of_one_device(client, login, actions, session):
    login("admin")
    profile = make_profile(session)
    user = make_end_user(session, username="carla")
    device = make_device(session, profile)
    assert "carla" in _text(client.get(f"/devices/{device.id}/user", headers=HX))
    data = {"end_user_id": str(user.id), "password": ""}
    response = actions.post(f"/devices/{device.id}/user", data)
    assert response.status_code == 303 and response.location == f"/devices/{device.id}"
    session.expire_all()
    assert session.get(Device, device.id).end_user_id == user.id
    assert "carla" in _text(client.get(f"/devices/{device.id}"))


def test_a_viewer_sees_everything_and_no_action(client, login, actions, session, placed):
    login("viewer")
    html = _text(client.get(f"/devices/{placed.id}"))
    assert placed.imei in html and "Sales phones" in html
    assert 'data-testid="device-actions"' not in html
    assert (
        "Check with Samsung</button>" not in html and 'method="post" action="/devices/' not in html
    )
    assert client.get(f"/devices/{placed.id}/user").status_code == 403
    for path in ("check", "send-ours", "take-samsungs", "user"):
        assert actions.post(f"/devices/{placed.id}/{path}", {}).status_code == 403
    assert session.scalar(select(Operation.id)) is None


def test_an_unknown_device_is_404(client, login):
    login("admin")
    assert client.get("/devices/987654").status_code == 404
