"""Translate between local profiles and Knox profiles; pure functions, no database access.

Local layout: kmeweb.profiles.config. Knox side: kmeweb.knox.types.Profile.

The profile's **Custom JSON data** (`custom_json`) is the admin-extras bundle the agent
receives (kme-api.md section 5): one flat JSON object with string values only, sorted keys:

- agent keys: "server_url" (agent server URL, else the MDM server URI), "user" (the associated
  user's username, else the agent "user" key), "support_email", "support_phone",
  "skip_setup_wizard", "allow_user_cancel" ("true"/"false");
- "enrollment_token": the profile token (left out when registration without token is on);
- the Pre-Defined Android System Extras that are set, under Android's
  `android.app.extra.PROVISIONING_*` names;
- the custom keys ("true"/"false" for booleans, decimal for integers).

KME itself delivers the MDM server URI to the agent as `kmeUri`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from kmeweb.knox import types as knox
from kmeweb.profiles.config import SYSTEM_EXTRA_NAMES, bundle_value
from kmeweb.profiles.models import Profile

# Knox profile attribute -> (config section, key); "name"/"description" are Profile columns.
KME_FIELD_MAP: dict[str, tuple[str, str]] = {
    "company_name": ("kme", "company_name"),
    "supported_mdm": ("kme", "supported_mdm"),
    "mdm_apk_url": ("kme", "mdm_apk_url"),
    "mdm_admin_component": ("kme", "mdm_admin_component"),
    "mdm_signature_checksum": ("kme", "mdm_signature_checksum"),
    "mdm_server_uri": ("kme", "mdm_server_uri"),
    "do_enabled": ("kme", "do_enabled"),
    "ae_enabled": ("kme", "ae_enabled"),
    "skip_setup_wizard": ("agent", "skip_setup_wizard"),
    "allow_user_cancel": ("agent", "allow_user_cancel"),
    "support_phone_number": ("agent", "support_phone"),
    "support_email_address": ("agent", "support_email"),
}
COLUMN_FIELDS = ("name", "description")
AGENT_BUNDLE_KEYS = (
    "support_email",
    "support_phone",
    "skip_setup_wizard",
    "allow_user_cancel",
)


def _section(profile: Profile, name: str) -> dict[str, Any]:
    value = (profile.config or {}).get(name)
    return value if isinstance(value, dict) else {}


def admin_extras(
    profile: Profile, end_user_username: str | None, secrets: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The admin-extras bundle of a profile (module docstring), every value a string.

    Secret values (the Wi-Fi password) come from `secrets`, else from the profile's
    encrypted column (decrypting needs the app's KMEWEB_ENCRYPTION_KEY).
    """
    agent = _section(profile, "agent")
    kme = _section(profile, "kme")
    bundle: dict[str, str] = {}
    server_url = agent.get("server_url") or kme.get("mdm_server_uri")
    if server_url:
        bundle["server_url"] = str(server_url)
    user = end_user_username or agent.get("user")
    if user:
        bundle["user"] = str(user)
    for key in AGENT_BUNDLE_KEYS:
        if agent.get(key) is not None:
            bundle[key] = bundle_value(agent[key])
    if profile.token and not profile.without_token:
        bundle["enrollment_token"] = profile.token
    for key, value in _section(profile, "system_extras").items():
        if key in SYSTEM_EXTRA_NAMES and value is not None:
            bundle[SYSTEM_EXTRA_NAMES[key]] = bundle_value(value)
    for key, value in (profile.secrets() if secrets is None else secrets).items():
        if key in SYSTEM_EXTRA_NAMES and value:
            bundle[SYSTEM_EXTRA_NAMES[key]] = str(value)
    for row in (profile.config or {}).get("custom_keys") or []:
        if isinstance(row, dict) and row.get("key"):
            bundle[str(row["key"])] = bundle_value(row.get("value"))
    return bundle


def custom_json(profile: Profile, end_user_username: str | None) -> str:
    """The admin-extras bundle as the compact, key-sorted JSON string sent as custom JSON."""
    return json.dumps(
        admin_extras(profile, end_user_username), sort_keys=True, separators=(",", ":")
    )


def to_knox_profile(profile: Profile, end_user_username: str | None) -> knox.Profile:
    """The Knox profile to create or update for a local "kme" profile.

    `end_user_username` is the associated user's username (the caller resolves
    profile.end_user_id), or None.
    """
    agent = _section(profile, "agent")
    kme = _section(profile, "kme")
    return knox.Profile(
        name=profile.name,
        id=profile.kme_profile_id,
        description=profile.description or "",
        company_name=kme.get("company_name"),
        supported_mdm=kme.get("supported_mdm"),
        mdm_apk_url=kme.get("mdm_apk_url"),
        mdm_admin_component=kme.get("mdm_admin_component"),
        mdm_signature_checksum=kme.get("mdm_signature_checksum"),
        mdm_server_uri=kme.get("mdm_server_uri"),
        custom_json=custom_json(profile, end_user_username),
        skip_setup_wizard=agent.get("skip_setup_wizard"),
        allow_user_cancel=agent.get("allow_user_cancel"),
        do_enabled=kme.get("do_enabled"),
        ae_enabled=kme.get("ae_enabled"),
        support_phone_number=agent.get("support_phone"),
        support_email_address=agent.get("support_email"),
    )


def local_value(profile: Profile, field: str) -> Any:
    """The local value of a Knox profile attribute (see KME_FIELD_MAP)."""
    if field in COLUMN_FIELDS:
        return getattr(profile, field)
    section, key = KME_FIELD_MAP[field]
    return _section(profile, section).get(key)


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def profile_changes_from_knox(profile: Profile, kp: knox.Profile) -> dict[str, tuple[Any, Any]]:
    """{attribute: (local value, Knox value)} for name, description and the KME fields where
    Knox differs. A field Knox did not report (None) is not a change; blank equals unset.
    The custom JSON is ours (rebuilt on every push) and is not compared.
    """
    changes: dict[str, tuple[Any, Any]] = {}
    for field in (*COLUMN_FIELDS, *KME_FIELD_MAP):
        remote = getattr(kp, field)
        if remote is None:
            continue
        old = local_value(profile, field)
        if _norm(old) != _norm(remote):
            changes[field] = (old, remote)
    return changes


def apply_profile_changes(profile: Profile, changes: dict[str, tuple[Any, Any]]) -> None:
    """Write the new values of `changes` (from profile_changes_from_knox) onto the profile.

    Config is replaced by an updated copy so the JSON column sees the change; a blank value
    removes the config key. Does not flush, audit or touch sync state.
    """
    config = copy.deepcopy(profile.config or {})
    for field, (_old, new) in changes.items():
        if field in COLUMN_FIELDS:
            setattr(profile, field, "" if new is None else str(new))
            continue
        section, key = KME_FIELD_MAP[field]
        target = config.get(section)
        if not isinstance(target, dict):
            target = config[section] = {}
        value = _norm(new)
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    profile.config = config
