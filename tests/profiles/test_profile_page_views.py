"""The profile page (View): details, the device table, and every action's dialog."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event

from kmeweb.extensions import db, utcnow
from kmeweb.outbox.models import Change
from kmeweb.profiles.models import Profile
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_device,
    make_end_user,
    make_profile,
)

HX = {"HX-Request": "true"}


@pytest.fixture
def default(session):
    return make_default_profile(session)


def test_profile_page_shows_details_and_devices(client, login, session, default):
    login("viewer")
    user = make_end_user(session, username="jane@example.com")
    profile = make_profile(session, name="Sales", end_user_id=user.id)
    make_device(
        session,
        profile,
        imei=None,
        serial="R58N12ABCDE",
        model="SM-S911B",
        registered_at=utcnow(),
        attributes={"site": "berlin"},
        end_user_id=user.id,
    )
    bulk_devices(session, 2, profile)
    body = client.get(f"/profiles/{profile.id}").get_data(as_text=True)
    for label in (
        "Name",
        "Number of devices",
        "Enrollment Token",
        "Registered devices",
        "Token Expiry",
        "Pending Registration Devices",
        "Profile Type",
        "Sync Status",
    ):
        assert label in body, label
    facts = body.split('data-testid="profile-facts"')[1]
    assert 'data-testid="fact-devices">3<' in facts and 'data-testid="fact-registered">1<' in facts
    assert 'data-testid="fact-pending">2<' in facts
    assert profile.token[-4:] in facts and profile.token not in facts  # masked until Reveal
    assert "R58N12ABCDE" in body and "site: berlin" in body and "jane@example.com" in body
    # a viewer sees the page without any action
    for action in (
        "Move Devices",
        "Modify Configuration",
        "Refresh Token",
        "Unassign",
        "Change Associate User",
        'name="device_ids"',
    ):
        assert action not in body


def test_expired_token_says_expired(client, login, session, default):
    login("admin")
    profile = make_profile(session, token_expires_at=utcnow() - timedelta(days=1))
    body = client.get(f"/profiles/{profile.id}").get_data(as_text=True)
    assert 'data-testid="fact-expiry">expired' in body


def test_device_table_search_filter_sort_and_paging(client, login, session, default, app):
    login("admin")
    app.config["PAGE_SIZE"] = 2
    profile = make_profile(session, name="Sales")
    user = make_end_user(session, username="bob@example.com")
    a = make_device(session, profile, imei="356938035643809", model="SM-A546B")
    b = make_device(session, profile, model="SM-S911B", end_user_id=user.id, registered_at=utcnow())
    c = make_device(session, profile, model="SM-S911B", sync_state="error", sync_error="not found")

    def ids(query: str) -> list[str]:
        response = client.get(f"/profiles/{profile.id}?{query}", headers=HX)
        assert response.status_code == 200, query
        html = response.get_data(as_text=True)
        return re.findall(r'name="device_ids" value="(\d+)"', html)

    assert ids("q=3569380356") == [str(a.id)]
    assert ids("q=BOB@") == [str(b.id)]
    assert ids("q=s911b") == [str(b.id), str(c.id)]
    assert ids("registration=registered") == [str(b.id)]
    assert ids("sync=error") == [str(c.id)]
    assert ids("sort=model&order=desc") == [str(c.id), str(b.id)]  # ties newest first
    assert ids("sort=model&order=desc&page=2") == [str(a.id)]
    page = client.get(f"/profiles/{profile.id}?q=s911b").get_data(as_text=True)
    assert "Select all 2 matching devices" in page
    assert client.get(f"/profiles/{profile.id}?sync=bogus").status_code == 422


def test_the_sync_filter_and_sort_read_every_device_of_the_profile(client, login, session, default):
    """Synced devices are those without a sync row and those whose row says synced (what KME
    held of them is kept there); the filter and the sort count both."""
    login("admin")
    profile = make_profile(session, name="Sales")
    never_seen = make_device(session, profile)
    seen = make_device(session, profile, kme_seen_approval="approved", kme_seen_at=utcnow())
    pending = make_device(session, profile, sync_state="pending")
    failed = make_device(session, profile, sync_state="error", sync_error="not found")

    def ids(query: str) -> list[str]:
        response = client.get(f"/profiles/{profile.id}?{query}", headers=HX)
        assert response.status_code == 200, query
        return re.findall(r'name="device_ids" value="(\d+)"', response.get_data(as_text=True))

    assert sorted(ids("sync=synced"), key=int) == [str(never_seen.id), str(seen.id)]
    assert ids("sync=pending") == [str(pending.id)]
    assert ids("sync=error") == [str(failed.id)]
    # error < pending < synced; ties by id
    assert ids("sort=sync") == [str(failed.id), str(pending.id), str(never_seen.id), str(seen.id)]
    assert ids("sort=sync&order=desc")[:2] == [str(seen.id), str(never_seen.id)]


def test_the_device_table_reads_the_same_statements_for_2_devices_as_for_20(
    client, login, session, default
):
    """Each row shows its sync state: the page reads them with its rows, not one by one."""
    login("admin")
    profile = make_profile(session, name="Sales")
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def page_statements() -> int:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert client.get(f"/profiles/{profile.id}", headers=HX).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return len(statements)

    for _ in range(2):
        make_device(session, profile, sync_state="pending")
    few = page_statements()
    for _ in range(18):
        make_device(session, profile, sync_state="error", sync_error="not found")
    assert page_statements() == few


def _csrf(client, path):
    from tests.conftest import csrf_token_from

    return csrf_token_from(client.get(path).get_data(as_text=True))


def test_refresh_and_extend_token(client, login, actions, session, default):
    login("admin")
    sales = make_profile(session, name="Sales")
    old = sales.token
    dialog = client.get(f"/profiles/{sales.id}/token", headers=HX).get_data(as_text=True)
    assert "Never expires" in dialog and "Extend" in dialog and "Refresh" in dialog
    version = re.search(r'name="version" type="hidden" value="(\d+)"', dialog).group(1)
    data = {"action": "refresh", "never_expires": "y", "version": version}
    asked = actions.post(f"/profiles/{sales.id}/token", data, headers=HX)
    assert asked.status_code == 200 and "Issue a new token for “Sales”?" in asked.get_data(
        as_text=True
    )
    response = actions.post(f"/profiles/{sales.id}/token", {**data, "confirmed": "yes"}, headers=HX)
    assert response.status_code == 204
    session.expire_all()
    assert sales.token != old and sales.token_expires_at is None
    assert count_rows(session, Change, Change.kind == "profile.update") == 1
    bad = actions.post(
        f"/profiles/{sales.id}/token",
        {"action": "extend", "expiry_days": "2000", "version": str(sales.version)},
        headers=HX,
    )
    body = bad.get_data(as_text=True)
    assert bad.status_code == 422 and 'id="expiry_days-error"' in body and "7 to 999" in body
    # Extend never shortens "never expires"; Set expiry date is the explicit way to a date.
    shorter = actions.post(
        f"/profiles/{sales.id}/token",
        {"action": "extend", "expiry_days": "30", "version": str(sales.version)},
    )
    assert shorter.status_code == 422 and "Set expiry date" in shorter.get_data(as_text=True)
    ok = actions.post(
        f"/profiles/{sales.id}/token",
        {"action": "set_expiry", "expiry_days": "30", "version": str(sales.version)},
    )
    assert ok.status_code == 303
    session.expire_all()
    assert 29 <= (sales.token_expires_at - utcnow()).days <= 30
    stale = actions.post(
        f"/profiles/{sales.id}/token",
        {"action": "refresh", "expiry_days": "7", "version": "1", "confirmed": "yes"},
    )
    assert stale.status_code == 409 and "changed by someone else" in stale.get_data(as_text=True)


def test_change_associate_user_search_apply_and_clear(client, login, actions, session, default):
    login("admin")
    sales = make_profile(session, name="Sales")
    make_end_user(session, username="alice@example.com", display_name="Alice Doe")
    bob = make_end_user(session, username="bob@example.com")
    options = client.get("/profiles/users?user_search=bob", headers=HX).get_data(as_text=True)
    assert "bob@example.com" in options and "alice" not in options and "No user" in options
    dialog = client.get(f"/profiles/{sales.id}/user", headers=HX).get_data(as_text=True)
    assert "Change Associate User" in dialog and "Apply" in dialog
    assert (
        actions.post(f"/profiles/{sales.id}/user", {"end_user_id": str(bob.id)}).status_code == 303
    )
    session.expire_all()
    assert sales.end_user_id == bob.id and sales.sync_state == "pending"
    unknown = actions.post(f"/profiles/{sales.id}/user", {"end_user_id": "424242"}, headers=HX)
    assert unknown.status_code == 422 and "No such user." in unknown.get_data(as_text=True)
    assert actions.post(f"/profiles/{sales.id}/user", {"end_user_id": ""}).status_code == 303
    session.expire_all()
    assert sales.end_user_id is None


def test_modify_configuration_update(client, login, actions, session, default):
    login("admin")
    sales = make_profile(session, name="Sales")
    dialog = client.get(f"/profiles/{sales.id}/configuration", headers=HX).get_data(as_text=True)
    for label in (
        "Agent keys",
        "Pre-Defined Android System Extras",
        "Custom Android System Keys",
        "Update",
    ):
        assert label in dialog
    data = {
        "version": str(sales.version),
        "kme_supported_mdm": "Other",
        "kme_mdm_apk_url": "https://mdm.example.com/agent.apk",
        "kme_do_enabled": "y",
        "agent_skip_setup_wizard": "y",
        "extra_locale": "de_DE",
        "custom_keys-0-key": "kiosk",
        "custom_keys-0-type": "boolean",
        "custom_keys-0-value": "yes",
    }
    assert actions.post(f"/profiles/{sales.id}/configuration", data).status_code == 303
    session.expire_all()
    assert sales.config["system_extras"] == {"locale": "de_DE"}
    assert sales.config["custom_keys"] == [{"key": "kiosk", "type": "boolean", "value": True}]
    bad = dict(data, version=str(sales.version), **{"custom_keys-0-value": "maybe"})
    response = actions.post(f"/profiles/{sales.id}/configuration", bad, headers=HX)
    assert response.status_code == 422
    assert 'id="custom_keys-0-value-error"' in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/profiles/new",
        "/profiles/{id}/edit",
        "/profiles/{id}/delete",
        "/profiles/{id}/move",
        "/profiles/{id}/unassign",
        "/profiles/{id}/delete-devices",
        "/profiles/{id}/attributes",
        "/profiles/{id}/token",
        "/profiles/{id}/user",
        "/profiles/{id}/configuration",
        "/profiles/preview",
    ],
)
def test_viewer_posts_are_refused(client, login, actions, session, default, path):
    login("viewer")
    sales = make_profile(session, name="Sales")
    ids = bulk_devices(session, 1, sales)
    response = actions.post(path.format(id=sales.id), {"device_ids": ids, "name": "x"})
    assert response.status_code == 403
    session.expire_all()
    assert session.get(Profile, sales.id).name == "Sales"
    assert count_rows(session, Change) == 0


def test_viewer_list_has_no_controls(client, login, session, default):
    login("viewer")
    make_profile(session, name="Sales")
    body = client.get("/profiles/").get_data(as_text=True)
    assert "Download Existing Inventory" in body
    assert ">Edit<" not in body and ">Delete</button>" not in body and "plus-lg" not in body
