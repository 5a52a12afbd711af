"""The profile services refuse every bad field of one submission together (issue 19, item 7),
and the profile form shows each message next to its field after one Done."""

from __future__ import annotations

import pytest

from kmeweb.errors import ValidationErrors
from kmeweb.profiles import services
from kmeweb.profiles.config import normalize_config
from kmeweb.profiles.models import Profile
from tests.factories import count_rows, make_profile


def test_normalize_config_names_every_refused_value():
    raw = {
        "agent": {"support_email": "nope"},
        "kme": {"supported_mdm": ""},
        "system_extras": {"time_zone": "Mars/Olympus"},
        "custom_keys": [
            {"key": "9bad", "value": "x"},
            {"key": "n", "type": "integer", "value": "x"},
        ],
    }
    with pytest.raises(ValidationErrors) as refused:
        normalize_config(raw, "kme")
    assert [e.field for e in refused.value.each()] == [
        "agent.support_email",
        "system_extras.time_zone",
        "custom_keys.0.key",
        "custom_keys.1.value",
        "kme.supported_mdm",
    ]


def test_a_refused_value_and_a_rule_about_it_give_one_message():
    # MDM Other without the APK URL, and the APK URL itself not a URL: its own message only.
    with pytest.raises(services.ValidationError) as refused:
        normalize_config({"kme": {"supported_mdm": "Other", "mdm_apk_url": "ftp://x"}}, "kme")
    assert [(e.field, e.message) for e in refused.value.each()] == [
        ("kme.mdm_apk_url", "Enter a URL starting with https:// or http://.")
    ]


def test_create_profile_refuses_name_days_and_configuration_together(session):
    make_profile(session, name="Taken")
    data = {
        "kind": "kme",
        "name": "taken",
        "token_expiry_days": 3,
        "config": {"kme": {"supported_mdm": "Other"}},
    }
    with pytest.raises(ValidationErrors) as refused:
        services.create_profile(session, data, "admin@example.com")
    assert {e.field: e.message for e in refused.value.each()} == {
        "name": "Another profile already has this name.",
        "token_expiry_days": "Choose 7 to 999 days, or never expires.",
        "kme.mdm_apk_url": "With MDM Other, enter the agent APK URL.",
    }
    session.rollback()
    assert count_rows(session, Profile) == 1


def test_update_profile_refuses_every_field_and_changes_nothing(session):
    profile = make_profile(session, name="Field Sales")
    session.commit()
    data = {"name": "Sales/EU", "description": "x" * 201, "config": {"kme": {}}}
    with pytest.raises(ValidationErrors) as refused:
        services.update_profile(session, profile.id, data, profile.version, "admin@example.com")
    assert [e.field for e in refused.value.each()] == ["name", "description", "kme.supported_mdm"]
    session.rollback()
    assert session.get(Profile, profile.id).name == "Field Sales"


def test_the_form_shows_each_error_next_to_its_field_after_one_done(login, actions, session):
    login("admin")
    form = {"kind": "kme", "name": "", "expiry_days": "3", "agent_support_email": "nope"}
    form |= {"kme_do_enabled": "y", "agent_skip_setup_wizard": "y"}  # as the form starts
    response = actions.post("/profiles/new", form)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    for field_id, message in [
        ("name", "Enter a profile name."),
        ("expiry_days", "Choose 7 to 999 days"),
        ("agent_support_email", "Enter a valid email address."),
        ("kme_supported_mdm", "Choose the MDM (EMM)."),
    ]:
        assert message in body.split(f'id="{field_id}-error"')[1][:200], field_id
