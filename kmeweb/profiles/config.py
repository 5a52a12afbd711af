"""Profile.config: its layout, validation and normalization (pure, no database).

Layout (only set values are stored; booleans keep an explicit False)::

    {
      "agent": {                       # keys our MDM agent reads from the admin-extras bundle
        "server_url": "https://mdm.example.com",
        "user": "jdoe",
        "support_email": "help@example.com",
        "support_phone": "+1 555 0100",
        "skip_setup_wizard": true,     # KME skipSetupWizard
        "allow_user_cancel": false     # KME allowUserCancel
      },
      "kme": {                         # KME profile fields (kind "kme" only)
        "supported_mdm": "Other",
        "mdm_apk_url": "https://mdm.example.com/agent.apk",
        "mdm_admin_component": "com.example.agent/.AdminReceiver",
        "mdm_signature_checksum": "base64...",
        "mdm_server_uri": "https://mdm.example.com",   # delivered to the agent as kmeUri
        "company_name": "Example Corp",
        "do_enabled": true,            # Device Owner
        "ae_enabled": false            # work profile out of the box
      },
      "system_extras": {               # Pre-Defined Android System Extras (design 6.3)
        "skip_encryption": true, "leave_all_system_apps_enabled": false,
        "skip_education_screens": true, "locale": "en_US", "time_zone": "Europe/Berlin",
        "use_mobile_data": false, "wifi_ssid": "corp", "wifi_security_type": "WPA",
        "wifi_password": "...", "wifi_hidden": false
      },
      "custom_keys": [                 # Custom Android System Keys
        {"key": "site", "type": "string", "value": "berlin"},
        {"key": "max_apps", "type": "integer", "value": 12},
        {"key": "kiosk", "type": "boolean", "value": true}
      ]
    }

Validation errors carry dotted field names that follow the layout: "agent.support_email",
"kme.supported_mdm", "system_extras.time_zone", "custom_keys.2.value".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kmeweb.errors import ErrorCollector, ValidationError
from kmeweb.profiles.models import ProfileKind

CUSTOM_KEY_TYPES = ("string", "integer", "boolean")
WIFI_SECURITY_TYPES = ("NONE", "WPA", "WEP", "EAP")
MAX_CUSTOM_KEYS = 50

# Keys of the admin-extras bundle that kmeweb fills itself (kme-api.md section 5); custom keys
# may not shadow them.
RESERVED_BUNDLE_KEYS = frozenset(
    {
        "enrollment_token",
        "server_url",
        "user",
        "username",
        "password",
        "kmeUri",
        "support_email",
        "support_phone",
        "skip_setup_wizard",
        "allow_user_cancel",
    }
)

# Android's names for the Pre-Defined System Extras (DevicePolicyManager EXTRA_PROVISIONING_*).
SYSTEM_EXTRA_NAMES: dict[str, str] = {
    "skip_encryption": "android.app.extra.PROVISIONING_SKIP_ENCRYPTION",
    "leave_all_system_apps_enabled": "android.app.extra.PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED",
    "skip_education_screens": "android.app.extra.PROVISIONING_SKIP_EDUCATION_SCREENS",
    "locale": "android.app.extra.PROVISIONING_LOCALE",
    "time_zone": "android.app.extra.PROVISIONING_TIME_ZONE",
    "use_mobile_data": "android.app.extra.PROVISIONING_USE_MOBILE_DATA",
    "wifi_ssid": "android.app.extra.PROVISIONING_WIFI_SSID",
    "wifi_security_type": "android.app.extra.PROVISIONING_WIFI_SECURITY_TYPE",
    "wifi_password": "android.app.extra.PROVISIONING_WIFI_PASSWORD",
    "wifi_hidden": "android.app.extra.PROVISIONING_WIFI_HIDDEN",
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{2,31}$")
_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
_COMPONENT = re.compile(r"^[A-Za-z][\w.]*/[\w.$]+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_CUSTOM_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse_bool(value: Any, field: str) -> bool | None:
    """A bool from a bool or a form string ("true"/"on"/"1"...); None when unset.

    Raises ValidationError(field) for anything else.
    """
    if _unset(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError("Choose yes or no.", field=field)


def parse_int(value: Any, field: str) -> int | None:
    """An int from an int or a digit string; None when unset. Raises ValidationError(field)."""
    if _unset(value):
        return None
    if isinstance(value, bool):
        raise ValidationError("Enter a whole number.", field=field)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValidationError("Enter a whole number.", field=field) from None


def _text(max_len: int, pattern: re.Pattern[str] | None = None, message: str = "") -> Callable:
    def check(value: Any, field: str) -> str | None:
        if _unset(value):
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValidationError("Enter text.", field=field)
        text = str(value).strip()
        if len(text) > max_len:
            raise ValidationError(f"At most {max_len} characters.", field=field)
        if pattern is not None and not pattern.match(text):
            raise ValidationError(message, field=field)
        return text

    return check


def _url(value: Any, field: str) -> str | None:
    text = _text(500)(value, field)
    if text is not None and not re.match(r"^https?://[^\s/]+\S*$", text):
        raise ValidationError("Enter a URL starting with https:// or http://.", field=field)
    return text


def _time_zone(value: Any, field: str) -> str | None:
    text = _text(64)(value, field)
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "Unknown time zone (use a name like Europe/Berlin).", field=field
        ) from None
    return text


def _wifi_security(value: Any, field: str) -> str | None:
    text = _text(8)(value, field)
    if text is None:
        return None
    text = text.upper()
    if text not in WIFI_SECURITY_TYPES:
        raise ValidationError(f"Choose one of {', '.join(WIFI_SECURITY_TYPES)}.", field=field)
    return text


AGENT_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "server_url": _url,
    "user": _text(254),
    "support_email": _text(254, _EMAIL, "Enter a valid email address."),
    "support_phone": _text(32, _PHONE, "Enter a phone number (digits, spaces, + - ( ) . /)."),
    "skip_setup_wizard": parse_bool,
    "allow_user_cancel": parse_bool,
}
KME_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "supported_mdm": _text(100),
    "mdm_apk_url": _url,
    "mdm_admin_component": _text(255, _COMPONENT, "Enter the admin component as package/class."),
    "mdm_signature_checksum": _text(128, _BASE64, "Enter the checksum in base64."),
    "mdm_server_uri": _url,
    "company_name": _text(100),
    "do_enabled": parse_bool,
    "ae_enabled": parse_bool,
}
SYSTEM_EXTRA_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "skip_encryption": parse_bool,
    "leave_all_system_apps_enabled": parse_bool,
    "skip_education_screens": parse_bool,
    "locale": _text(16, _LOCALE, "Enter a locale like en_US."),
    "time_zone": _time_zone,
    "use_mobile_data": parse_bool,
    "wifi_ssid": _text(32),
    "wifi_security_type": _wifi_security,
    "wifi_password": _text(63),
    "wifi_hidden": parse_bool,
}


def _section(
    raw: Any, fields: Mapping[str, Callable], name: str, errors: ErrorCollector
) -> dict[str, Any]:
    """The section's valid values; each refused one goes to `errors`."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValidationError("Invalid configuration section.", field=name)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValidationError(f"Unknown setting {unknown[0]!r}.", field=f"{name}.{unknown[0]}")
    out: dict[str, Any] = {}
    for key, check in fields.items():
        value = errors.check(check, raw.get(key), f"{name}.{key}")
        if value is not None:
            out[key] = value
    return out


def parse_custom_value(type_: str, value: Any, field: str) -> str | int | bool:
    """A custom key's value parsed for its type (string, integer, boolean).

    Raises ValidationError(field) when it does not parse.
    """
    if type_ == "integer":
        parsed = parse_int(value, field)
        if parsed is None:
            raise ValidationError("Enter a whole number.", field=field)
        return parsed
    if type_ == "boolean":
        parsed_bool = parse_bool(value, field)
        if parsed_bool is None:
            raise ValidationError("Choose true or false.", field=field)
        return parsed_bool
    if value is None or isinstance(value, Mapping | list):
        raise ValidationError("Enter a value.", field=field)
    text = bundle_value(value)
    if len(text) > 1000:
        raise ValidationError("At most 1000 characters.", field=field)
    return text


def _custom_keys(raw: Any, errors: ErrorCollector) -> list[dict[str, Any]]:
    """The valid rows; each refused one goes to `errors`."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError("Invalid custom keys.", field="custom_keys")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, row in enumerate(raw):
        parsed = errors.check(_custom_key, row, i, seen)
        if parsed is not None:
            out.append(parsed)
    if len(out) > MAX_CUSTOM_KEYS:
        raise ValidationError(f"At most {MAX_CUSTOM_KEYS} custom keys.", field="custom_keys")
    return out


def _custom_key(row: Any, i: int, seen: set[str]) -> dict[str, Any] | None:
    """One Custom Android System Keys row (None for a blank one); adds its key to `seen`."""
    if not isinstance(row, Mapping):
        raise ValidationError("Invalid custom key row.", field=f"custom_keys.{i}")
    key = str(row.get("key") or "").strip()
    value = row.get("value")
    if not key and _unset(value):
        return None  # a blank form row
    if not _CUSTOM_KEY.match(key):
        raise ValidationError(
            "A key starts with a letter and has at most 100 letters, digits, _ . or -.",
            field=f"custom_keys.{i}.key",
        )
    if key in RESERVED_BUNDLE_KEYS or key in SYSTEM_EXTRA_NAMES.values():
        raise ValidationError(
            f"{key!r} is set by kmeweb; choose another key.", field=f"custom_keys.{i}.key"
        )
    if key in seen:
        raise ValidationError(f"{key!r} appears twice.", field=f"custom_keys.{i}.key")
    seen.add(key)
    type_ = str(row.get("type") or "string").strip().lower()
    if type_ not in CUSTOM_KEY_TYPES:
        raise ValidationError(
            f"Choose one of {', '.join(CUSTOM_KEY_TYPES)}.", field=f"custom_keys.{i}.type"
        )
    parsed = parse_custom_value(type_, value, f"custom_keys.{i}.value")
    return {"key": key, "type": type_, "value": parsed}


def normalize_config(raw: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """Validate a profile configuration and return it in the stored layout (module docstring).

    For kind "kme" the KME rules of kme-api.md 2.2 apply: with Device Owner (default on) or
    aeEnabled, skip setup wizard must be on (default on), supported MDM is required and allow
    user cancel must be off (default off); without Device Owner, support phone and email are
    required; MDM "Other" needs the agent APK URL. Other kinds keep no "kme" section.
    Raises ValidationError whose field is the dotted path of the offending value, or
    ValidationErrors naming every one (a form shows them all at once).
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ValidationError("Invalid configuration.", field="config")
    unknown = sorted(set(raw) - {"agent", "kme", "system_extras", "custom_keys"})
    if unknown:
        raise ValidationError(f"Unknown configuration section {unknown[0]!r}.", field=unknown[0])
    errors = ErrorCollector()
    agent = _section(raw.get("agent"), AGENT_FIELDS, "agent", errors)
    kme = _section(raw.get("kme"), KME_FIELDS, "kme", errors) if kind == ProfileKind.KME else {}
    extras = _section(raw.get("system_extras"), SYSTEM_EXTRA_FIELDS, "system_extras", errors)
    custom = _custom_keys(raw.get("custom_keys"), errors)

    if kind == ProfileKind.KME:
        _check_kme_rules(agent, kme, errors)
    _check_wifi(extras, errors)
    errors.raise_any()  # a value refused above and a rule about it: its first message only
    return {"agent": agent, "kme": kme, "system_extras": extras, "custom_keys": custom}


def _check_kme_rules(agent: dict[str, Any], kme: dict[str, Any], errors: ErrorCollector) -> None:
    kme.setdefault("do_enabled", True)
    kme.setdefault("ae_enabled", False)
    owner = kme["do_enabled"] or kme["ae_enabled"]
    if owner:
        agent.setdefault("skip_setup_wizard", True)
        agent.setdefault("allow_user_cancel", False)
        if not agent["skip_setup_wizard"]:
            errors.add(
                "With Device Owner or work profile enrollment, Skip setup wizard must be on.",
                field="agent.skip_setup_wizard",
            )
        if agent["allow_user_cancel"]:
            errors.add(
                "With Device Owner or work profile enrollment, the user may not cancel.",
                field="agent.allow_user_cancel",
            )
        if not kme.get("supported_mdm"):
            errors.add("Choose the MDM (EMM).", field="kme.supported_mdm")
    if not kme["do_enabled"]:
        if not agent.get("support_phone"):
            errors.add(
                "A support phone number is required without Device Owner.",
                field="agent.support_phone",
            )
        if not agent.get("support_email"):
            errors.add(
                "A support email address is required without Device Owner.",
                field="agent.support_email",
            )
    if (kme.get("supported_mdm") or "").lower() == "other" and not kme.get("mdm_apk_url"):
        errors.add("With MDM Other, enter the agent APK URL.", field="kme.mdm_apk_url")


def _check_wifi(extras: dict[str, Any], errors: ErrorCollector) -> None:
    has_other = any(k in extras for k in ("wifi_security_type", "wifi_password", "wifi_hidden"))
    if has_other and "wifi_ssid" not in extras:
        errors.add(
            "Enter the Wi-Fi SSID for the other Wi-Fi settings.", field="system_extras.wifi_ssid"
        )
    if extras.get("wifi_password") and extras.get("wifi_security_type") == "NONE":
        errors.add("An open network (NONE) takes no password.", field="system_extras.wifi_password")


def bundle_value(value: Any) -> str:
    """A config value as the string the admin-extras bundle carries (kme-api.md section 5)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
