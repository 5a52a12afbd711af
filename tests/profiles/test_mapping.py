"""kmeweb.sync.mapping: local profile <-> Knox profile, pure functions."""

from __future__ import annotations

import copy
import json

from kmeweb.knox import types as knox
from kmeweb.profiles import bundle
from kmeweb.profiles.models import Profile
from kmeweb.sync import mapping
from tests.factories import KME_CONFIG


def _profile(**over) -> Profile:
    config = copy.deepcopy(KME_CONFIG)
    config["agent"].update(user="fallback", support_email="help@example.com")
    config["system_extras"] = {"skip_encryption": True, "time_zone": "Europe/Berlin"}
    config["custom_keys"] = [
        {"key": "site", "type": "string", "value": "berlin"},
        {"key": "max_apps", "type": "integer", "value": 12},
        {"key": "kiosk", "type": "boolean", "value": False},
    ]
    values = {
        "name": "Sales",
        "description": "Sales phones",
        "kind": "kme",
        "kme_profile_id": "kp-1",
        "token": "tok-abc",
        "without_token": False,
        "config": config,
    }
    values.update(over)
    return Profile(**values)


def test_to_knox_profile_carries_kme_fields_and_bundle():
    kp = mapping.to_knox_profile(_profile(), "jdoe")
    assert kp.name == "Sales" and kp.id == "kp-1" and kp.description == "Sales phones"
    assert kp.supported_mdm == "Other" and kp.mdm_apk_url == "https://mdm.example.com/agent.apk"
    assert kp.mdm_server_uri == "https://mdm.example.com" and kp.company_name == "Example Corp"
    assert kp.do_enabled is True and kp.ae_enabled is False
    assert kp.skip_setup_wizard is True and kp.allow_user_cancel is False
    assert kp.support_email_address == "help@example.com" and kp.support_phone_number is None
    bundle = json.loads(kp.custom_json)
    assert all(isinstance(v, str) for v in bundle.values())
    assert bundle["enrollment_token"] == "tok-abc"
    assert bundle["server_url"] == "https://mdm.example.com"
    assert bundle["user"] == "jdoe"
    assert bundle["skip_setup_wizard"] == "true" and bundle["allow_user_cancel"] == "false"
    assert bundle["site"] == "berlin" and bundle["max_apps"] == "12" and bundle["kiosk"] == "false"
    assert bundle["android.app.extra.PROVISIONING_SKIP_ENCRYPTION"] == "true"
    assert bundle["android.app.extra.PROVISIONING_TIME_ZONE"] == "Europe/Berlin"


def test_bundle_without_token_and_user_fallback():
    extras = json.loads(bundle.custom_json(_profile(without_token=True), None))
    assert "enrollment_token" not in extras
    assert extras["user"] == "fallback"


def test_bundle_is_deterministic():
    assert bundle.custom_json(_profile(), "u") == bundle.custom_json(_profile(), "u")


def test_changes_from_knox_and_apply():
    profile = _profile()
    kp = knox.Profile(
        name="Sales",
        description="Changed in portal",
        supported_mdm="Other",
        company_name="",
        allow_user_cancel=None,  # not reported: not a change
        support_phone_number="+1 555 0199",
        mdm_server_uri="https://mdm.example.com",
        do_enabled=False,
    )
    changes = mapping.profile_changes_from_knox(profile, kp)
    assert changes == {
        "description": ("Sales phones", "Changed in portal"),
        "company_name": ("Example Corp", ""),
        "support_phone_number": (None, "+1 555 0199"),
        "do_enabled": (True, False),
    }
    mapping.apply_profile_changes(profile, changes)
    assert profile.description == "Changed in portal"
    assert "company_name" not in profile.config["kme"]
    assert profile.config["agent"]["support_phone"] == "+1 555 0199"
    assert profile.config["kme"]["do_enabled"] is False
    assert mapping.profile_changes_from_knox(profile, kp) == {}
