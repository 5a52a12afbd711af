"""Bulk Enrollment pages: the list, Add, the profile forms, Edit, Delete, the live preview."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.outbox.models import Change
from kmeweb.profiles import services
from kmeweb.profiles.models import Profile
from tests.factories import (
    bulk_devices,
    count_rows,
    make_default_profile,
    make_end_user,
    make_profile,
)

KME_FORM = {
    "kind": "kme",
    "name": "Sales phones",
    "description": "Phones of the sales team",
    "expiry_days": "30",
    "kme_supported_mdm": "Other",
    "kme_mdm_apk_url": "https://mdm.example.com/agent.apk",
    "kme_mdm_server_uri": "https://mdm.example.com",
    "kme_do_enabled": "y",
    "agent_server_url": "https://mdm.example.com",
    "agent_skip_setup_wizard": "y",
    "extra_time_zone": "Europe/Berlin",
    "extra_skip_encryption": "true",
    "custom_keys-0-key": "site",
    "custom_keys-0-type": "string",
    "custom_keys-0-value": "berlin",
    "custom_keys-1-key": "max_apps",
    "custom_keys-1-type": "integer",
    "custom_keys-1-value": "12",
}


def _kme_form(**over) -> dict:
    data = dict(KME_FORM)
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


def test_list_shows_default_first_with_grouped_counts(client, login, session):
    login("admin")
    default = make_default_profile(session)
    alpha = make_profile(session, name="Alpha", description="first")
    make_profile(session, name="Zulu", kind="self_maintained", config={})
    bulk_devices(session, 3, default)
    bulk_devices(session, 2, alpha)
    body = client.get("/profiles/").get_data(as_text=True)
    assert body.index(services.DEFAULT_PROFILE_NAME) < body.index("Alpha") < body.index("Zulu")
    for label in (
        "Profile Name",
        "Description",
        "Last modified",
        "Type",
        "No of Devices",
        "Associated User",
        "Sync Status",
        "Actions",
    ):
        assert label in body
    assert "Download Existing Inventory" in body and "Self-Maintained" in body
    # the Default Profile has no Delete; the others do, stating their device count
    assert body.count(">Delete</button>") == 2
    assert "Its 2 devices return to the Samsung KME Default Profile." in body


def test_list_search_sort_and_paging(client, login, session, app):
    login("viewer")
    make_default_profile(session)
    for i in range(12):
        make_profile(session, name=f"Team {i:02d}")
    make_profile(session, name="Warehouse")
    app.config["PAGE_SIZE"] = 5
    found = client.get("/profiles/?q=wareh").get_data(as_text=True)
    assert "Warehouse" in found and "Team 01" not in found
    # the Default Profile stays first whatever the search shows
    page = client.get("/profiles/?page=2").get_data(as_text=True)
    assert "Page 2 of 3" in page and "Team 04" in page
    fragment = client.get("/profiles/?q=team", headers={"HX-Request": "true"})
    assert "<html" not in fragment.get_data(as_text=True)
    assert "Team 00" in fragment.get_data(as_text=True)
    bad = client.get("/profiles/?sort=evil")
    assert bad.status_code == 422 and "Not a valid choice" in bad.get_data(as_text=True)


def test_add_offers_both_kinds_then_next(client, login, session):
    login("admin")
    body = client.get("/profiles/new").get_data(as_text=True)
    assert "Self-Maintained" in body and "Samsung Knox Mobile Enrollment" in body
    assert "Next" in body
    kme = client.get("/profiles/new?kind=kme").get_data(as_text=True)
    for label in (
        "Device registration without token",
        "Select User",
        "Token Expiry",
        "Extend Upto",
        "Never expires",
        "Agent keys",
        "Pre-Defined Android System Extras",
        "Custom Android System Keys",
        "What the device receives",
        "Done",
    ):
        assert label in kme, label
    assert (
        'name="without_token"' in kme and "checked" not in kme.split('name="without_token"')[1][:40]
    )
    own = client.get("/profiles/new?kind=self_maintained").get_data(as_text=True)
    assert "Select User" in own and "Agent keys" not in own
    assert client.get("/profiles/new?kind=other").status_code == 422


def test_create_kme_profile_with_user_extras_and_custom_keys(client, login, actions, session):
    login("admin")
    user = make_end_user(session, username="jane@example.com")
    response = actions.post("/profiles/new", _kme_form(end_user_id=str(user.id)))
    assert response.status_code == 303 and response.headers["Location"].endswith("/profiles/")
    profile = session.scalar(select(Profile).where(Profile.name == "Sales phones"))
    assert profile.kind == "kme" and profile.end_user_id == user.id
    assert profile.sync_state == "pending" and profile.without_token is False
    assert profile.config["system_extras"] == {
        "skip_encryption": True,
        "time_zone": "Europe/Berlin",
    }
    assert profile.config["custom_keys"] == [
        {"key": "site", "type": "string", "value": "berlin"},
        {"key": "max_apps", "type": "integer", "value": 12},
    ]
    assert 29 <= (profile.token_expires_at - profile.created_at).days <= 30
    assert count_rows(session, Change, Change.kind == "profile.create") == 1
    listing = client.get("/profiles/").get_data(as_text=True)
    assert "Profile “Sales phones” was created." in listing and "jane@example.com" in listing


def test_create_never_expires_and_self_maintained(client, login, actions, session):
    login("admin")
    actions.post("/profiles/new", _kme_form(never_expires="y"))
    assert (
        session.scalar(select(Profile.token_expires_at).where(Profile.name == "Sales phones"))
        is None
    )
    response = actions.post(
        "/profiles/new", {"kind": "self_maintained", "name": "Lab", "description": "bench"}
    )
    assert response.status_code == 303
    lab = session.scalar(select(Profile).where(Profile.name == "Lab"))
    assert lab.kind == "self_maintained" and lab.sync_state == "synced"
    assert count_rows(session, Change) == 1  # only the KME profile went to the outbox


@pytest.mark.parametrize(
    ("over", "field_id", "message"),
    [
        ({"name": ""}, "name", "Enter a profile name."),
        ({"name": "x" * 101}, "name", "At most 100 characters."),
        ({"name": "Sales/EU"}, "name", "cannot contain /"),
        ({"name": "taken"}, "name", "Another profile already has this name."),
        ({"expiry_days": "3"}, "expiry_days", "Choose 7 to 999 days"),
        ({"expiry_days": "1000"}, "expiry_days", "Choose 7 to 999 days"),
        ({"end_user_id": "999999"}, "end_user_id", "No such user."),
        ({"custom_keys-1-key": "server_url"}, "custom_keys-1-key", "is set by kmeweb"),
        ({"custom_keys-1-key": "site"}, "custom_keys-1-key", "appears twice"),
        ({"custom_keys-1-key": "9bad key"}, "custom_keys-1-key", "starts with a letter"),
        ({"custom_keys-1-value": "twelve"}, "custom_keys-1-value", "Enter a whole number."),
        ({"extra_time_zone": "Mars/Olympus"}, "extra_time_zone", "Unknown time zone"),
        ({"kme_supported_mdm": ""}, "kme_supported_mdm", "Choose the MDM"),
        ({"agent_support_email": "nope"}, "agent_support_email", "valid email"),
    ],
)
def test_create_errors_next_to_field_with_values_kept(
    client, login, actions, session, over, field_id, message
):
    login("admin")
    make_profile(session, name="Taken")
    response = actions.post("/profiles/new", _kme_form(**over))
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert (
        f'id="{field_id}-error"' in body
        and message in body.split(f'id="{field_id}-error"')[1][:200]
    )
    assert 'value="https://mdm.example.com/agent.apk"' in body  # typed values kept
    assert count_rows(session, Profile) == 1 and count_rows(session, Change) == 0


def test_htmx_create_error_answers_the_form_partial(client, login, actions, session):
    login("admin")
    response = actions.post("/profiles/new", _kme_form(name=""), headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in body and 'id="profile-form"' in body


def test_preview_shows_the_bundle_with_secrets_masked(client, login, actions, session):
    login("admin")
    user = make_end_user(session, username="jane@example.com")
    form = _kme_form(
        end_user_id=str(user.id),
        extra_wifi_ssid="corp",
        extra_wifi_security_type="WPA",
        extra_wifi_password="hunter2hunter2",
    )
    response = actions.post("/profiles/preview", form, headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert "hunter2hunter2" not in body and "••••••••" in body
    assert "&#34;user&#34;: &#34;jane@example.com&#34;" in body
    assert "android.app.extra.PROVISIONING_TIME_ZONE" in body and "Europe/Berlin" in body
    assert "&#34;max_apps&#34;: &#34;12&#34;" in body and "generated when you click Done" in body
    invalid = actions.post("/profiles/preview", _kme_form(extra_time_zone="Mars/Olympus"))
    assert "Not valid yet: Unknown time zone" in invalid.get_data(as_text=True)
    assert count_rows(session, Profile) == 0  # the preview saves nothing


def test_wifi_password_is_encrypted_and_write_only(client, login, actions, session, app):
    login("admin")
    form = _kme_form(
        extra_wifi_ssid="corp", extra_wifi_security_type="WPA", extra_wifi_password="hunter2hunter2"
    )
    actions.post("/profiles/new", form)
    profile = session.scalar(select(Profile).where(Profile.name == "Sales phones"))
    assert "wifi_password" not in json.dumps(profile.config)
    assert "hunter2" not in (profile.secrets_enc or "")
    assert profile.secrets() == {"wifi_password": "hunter2hunter2"}
    from kmeweb.profiles import bundle

    bundle = bundle.admin_extras(profile, None)
    assert bundle["android.app.extra.PROVISIONING_WIFI_PASSWORD"] == "hunter2hunter2"
    edit = client.get(f"/profiles/{profile.id}/edit").get_data(as_text=True)
    assert "hunter2" not in edit and "A password is stored; leave blank to keep it." in edit
    # Done with the password left blank keeps it; Remove clears it
    page = client.get(f"/profiles/{profile.id}/edit").get_data(as_text=True)
    data = _edit_post_data(page, profile)
    data["description"] = "changed"
    assert actions.post(f"/profiles/{profile.id}/edit", data).status_code == 303
    session.expire_all()
    assert profile.secrets() == {"wifi_password": "hunter2hunter2"}
    page = client.get(f"/profiles/{profile.id}/edit").get_data(as_text=True)
    data = _edit_post_data(page, profile)
    data["extra_wifi_password_clear"] = "y"
    assert actions.post(f"/profiles/{profile.id}/edit", data).status_code == 303
    session.expire_all()
    assert profile.secrets() == {} and profile.secrets_enc is None


def _edit_post_data(page: str, profile: Profile) -> dict:
    """What the browser would post back from the edit page (the form's current values)."""
    import re

    from kmeweb.profiles.forms import form_data_from_config

    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    original = re.search(r'name="original" type="hidden" value="([^"]*)"', page).group(1)
    import html as htmlmod

    data = {
        "kind": profile.kind,
        "name": profile.name,
        "description": profile.description,
        "version": version,
        "original": htmlmod.unescape(original),
        "end_user_id": str(profile.end_user_id or ""),
    }
    if profile.without_token:
        data["without_token"] = "y"
    values = form_data_from_config(profile.config or {})
    for i, row in enumerate(values.pop("custom_keys")):
        for key, value in row.items():
            data[f"custom_keys-{i}-{key}"] = value
    for key, value in values.items():
        if value is True:
            data[key] = "y"
        elif value is not False:
            data[key] = str(value)
    return data


def test_edit_saves_and_the_default_profile_keeps_its_name(client, login, actions, session):
    login("admin")
    default = make_default_profile(session)
    profile = make_profile(session, name="Sales")
    page = client.get(f"/profiles/{profile.id}/edit").get_data(as_text=True)
    assert 'value="Sales"' in page and "Refresh Token" in page
    data = _edit_post_data(page, profile)
    data["name"] = "Sales EU"
    response = actions.post(f"/profiles/{profile.id}/edit", data)
    assert response.status_code == 303
    session.expire_all()
    assert profile.name == "Sales EU" and profile.sync_state == "pending"
    assert count_rows(session, Change, Change.kind == "profile.update") == 1
    page = client.get(f"/profiles/{default.id}/edit").get_data(as_text=True)
    assert "readonly" in page and "keeps its name" in page
    data = _edit_post_data(page, default)
    data["description"] = "Unassigned devices"
    assert actions.post(f"/profiles/{default.id}/edit", data).status_code == 303
    session.expire_all()
    assert default.description == "Unassigned devices"
    assert default.name == services.DEFAULT_PROFILE_NAME


def test_second_save_of_the_same_profile_gets_409_naming_what_changed(
    client, login, actions, session, admin
):
    login("admin")
    profile = make_profile(session, name="Sales")
    page = client.get(f"/profiles/{profile.id}/edit").get_data(as_text=True)
    mine = _edit_post_data(page, profile)
    # another admin saves first
    services.update_profile(session, profile.id, {"description": "theirs"}, profile.version, admin)
    session.commit()
    mine["name"] = "Sales mine"
    response = actions.post(f"/profiles/{profile.id}/edit", mine)
    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Someone else saved this profile" in body and "changed: Description" in body
    assert 'value="Sales mine"' in body  # what I typed is still there
    session.expire_all()
    assert profile.name == "Sales" and profile.description == "theirs"
    # Done again saves over theirs, deliberately
    import re

    mine["version"] = re.search(r'name="version" type="hidden" value="(\d+)"', body).group(1)
    assert actions.post(f"/profiles/{profile.id}/edit", mine).status_code == 303
    session.expire_all()
    assert profile.name == "Sales mine"


def test_delete_moves_devices_to_default_and_says_so(client, login, actions, session):
    login("admin")
    default = make_default_profile(session)
    profile = make_profile(session, name="Sales")
    bulk_devices(session, 4, profile)
    response = actions.post(f"/profiles/{profile.id}/delete")
    assert response.status_code == 303
    assert session.get(Profile, profile.id) is None
    assert count_rows(session, Device, Device.profile_id == default.id) == 4
    listing = client.get("/profiles/").get_data(as_text=True)
    assert "4 devices went back to the Samsung KME Default Profile." in listing
    refused = actions.post(f"/profiles/{default.id}/delete")
    assert refused.status_code == 409 and "cannot be deleted" in refused.get_data(as_text=True)
    assert session.scalar(select(AuditEvent.action).where(AuditEvent.action == "profile.delete"))
