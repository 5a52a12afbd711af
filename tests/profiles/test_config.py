"""Profile configuration: KME rules (kme-api.md 2.2), typed extras and custom keys."""

from __future__ import annotations

import copy

import pytest

from kmeweb.errors import ValidationError
from kmeweb.profiles.config import normalize_config
from tests.factories import KME_CONFIG


def _config(**sections):
    config = copy.deepcopy(KME_CONFIG)
    for name, values in sections.items():
        if isinstance(values, dict):
            config[name].update(values)
        else:
            config[name] = values
    return config


def _field(config, kind: str = "kme") -> str | None:
    with pytest.raises(ValidationError) as err:
        normalize_config(config, kind)
    return err.value.field


def test_defaults_for_device_owner():
    config = normalize_config({"kme": {"supported_mdm": "kmeweb"}}, "kme")
    assert config["kme"] == {"supported_mdm": "kmeweb", "do_enabled": True, "ae_enabled": False}
    assert config["agent"] == {"skip_setup_wizard": True, "allow_user_cancel": False}
    assert config["system_extras"] == {} and config["custom_keys"] == []


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"agent": {"skip_setup_wizard": False}}, "agent.skip_setup_wizard"),
        ({"agent": {"allow_user_cancel": "on"}}, "agent.allow_user_cancel"),
        ({"kme": {"supported_mdm": ""}}, "kme.supported_mdm"),
        ({"kme": {"mdm_apk_url": None}}, "kme.mdm_apk_url"),
        ({"kme": {"mdm_apk_url": "ftp://x"}}, "kme.mdm_apk_url"),
        ({"kme": {"do_enabled": "false"}}, "agent.support_phone"),
        (
            {"kme": {"do_enabled": False}, "agent": {"support_phone": "+1 555 0100"}},
            "agent.support_email",
        ),
        ({"kme": {"do_enabled": "maybe"}}, "kme.do_enabled"),
        ({"agent": {"support_email": "not-an-email"}}, "agent.support_email"),
        ({"agent": {"colour": "red"}}, "agent.colour"),
        ({"system_extras": {"time_zone": "Mars/Olympus"}}, "system_extras.time_zone"),
        ({"system_extras": {"locale": "english"}}, "system_extras.locale"),
        ({"system_extras": {"wifi_password": "secret123"}}, "system_extras.wifi_ssid"),
        (
            {"system_extras": {"wifi_ssid": "corp", "wifi_security_type": "WPA3X"}},
            "system_extras.wifi_security_type",
        ),
        ({"custom_keys": [{"key": "n", "type": "integer", "value": "abc"}]}, "custom_keys.0.value"),
        (
            {"custom_keys": [{"key": "b", "type": "boolean", "value": "perhaps"}]},
            "custom_keys.0.value",
        ),
        ({"custom_keys": [{"key": "x", "type": "float", "value": "1"}]}, "custom_keys.0.type"),
        ({"custom_keys": [{"key": "enrollment_token", "value": "x"}]}, "custom_keys.0.key"),
        (
            {"custom_keys": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]},
            "custom_keys.1.key",
        ),
        ({"custom_keys": [{"key": "bad key!", "value": "1"}]}, "custom_keys.0.key"),
    ],
)
def test_invalid_values_name_their_field(sections, field):
    assert _field(_config(**sections)) == field


def test_without_device_owner_needs_support_contacts_only():
    config = _config(
        kme={"do_enabled": False, "ae_enabled": False},
        agent={
            "support_phone": "+1 555 0100",
            "support_email": "help@example.com",
            "skip_setup_wizard": False,
            "allow_user_cancel": True,
        },
    )
    out = normalize_config(config, "kme")
    assert out["agent"]["allow_user_cancel"] is True


def test_work_profile_applies_the_owner_rules():
    config = _config(
        kme={"do_enabled": False, "ae_enabled": True},
        agent={"support_phone": "1234", "support_email": "a@b.co", "allow_user_cancel": True},
    )
    assert _field(config) == "agent.allow_user_cancel"


def test_extras_and_custom_keys_are_typed_and_only_set_values_kept():
    config = _config(
        system_extras={
            "skip_encryption": "on",
            "leave_all_system_apps_enabled": None,
            "locale": "de_DE",
            "time_zone": "Europe/Berlin",
            "wifi_ssid": "corp",
            "wifi_security_type": "wpa",
            "wifi_password": "",
            "wifi_hidden": False,
        },
        custom_keys=[
            {"key": "site", "type": "string", "value": "berlin"},
            {"key": "max_apps", "type": "integer", "value": "12"},
            {"key": "kiosk", "type": "boolean", "value": "true"},
            {"key": "", "type": "string", "value": ""},
        ],
    )
    out = normalize_config(config, "kme")
    assert out["system_extras"] == {
        "skip_encryption": True,
        "locale": "de_DE",
        "time_zone": "Europe/Berlin",
        "wifi_ssid": "corp",
        "wifi_security_type": "WPA",
        "wifi_hidden": False,
    }
    assert out["custom_keys"] == [
        {"key": "site", "type": "string", "value": "berlin"},
        {"key": "max_apps", "type": "integer", "value": 12},
        {"key": "kiosk", "type": "boolean", "value": True},
    ]


def test_self_maintained_keeps_no_kme_section_and_skips_kme_rules():
    out = normalize_config({"kme": {"do_enabled": False}, "agent": {}}, "self_maintained")
    assert out["kme"] == {} and out["agent"] == {}
