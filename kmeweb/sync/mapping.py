"""Translate between local profiles and Knox profiles; pure functions, no database access.

Local layout: kmeweb.profiles.config; the bundle a device receives: kmeweb.profiles.bundle.
Knox side: kmeweb.knox.types.Profile.
"""

from __future__ import annotations

import copy
from typing import Any

from kmeweb.knox import types as knox
from kmeweb.profiles.bundle import config_section, custom_json
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


def to_knox_profile(profile: Profile, end_user_username: str | None) -> knox.Profile:
    """The Knox profile to create or update for a local "kme" profile.

    `end_user_username` is the associated user's username (the caller resolves
    profile.end_user_id), or None.
    """
    agent = config_section(profile, "agent")
    kme = config_section(profile, "kme")
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
    name, key = KME_FIELD_MAP[field]
    return config_section(profile, name).get(key)


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
