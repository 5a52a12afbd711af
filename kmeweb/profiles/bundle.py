"""What a device receives: the admin-extras bundle of a profile; pure functions, no database.

The profile's **Custom JSON data** (`custom_json`) is the admin-extras bundle the agent
receives (kme-api.md section 5): one flat JSON object with string values only, sorted keys:

- agent keys: "server_url" (agent server URL, else the MDM server URI), "user" (the associated
  user's username, else the agent "user" key), "support_email", "support_phone",
  "skip_setup_wizard", "allow_user_cancel" ("true"/"false");
- "enrollment_token": the profile token (left out when registration without token is on);
- the Pre-Defined Android System Extras that are set, under Android's
  `android.app.extra.PROVISIONING_*` names;
- the custom keys ("true"/"false" for booleans, decimal for integers).

KME itself delivers the MDM server URI to the agent as `kmeUri`. The enrollment endpoint hands
the same bundle to the agent; the sync push sends it to KME as the profile's custom JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kmeweb.profiles.config import SYSTEM_EXTRA_NAMES, bundle_value
from kmeweb.profiles.models import Profile

AGENT_BUNDLE_KEYS = (
    "support_email",
    "support_phone",
    "skip_setup_wizard",
    "allow_user_cancel",
)


def config_section(profile: Profile, name: str) -> dict[str, Any]:
    """One section of the profile's configuration (agent, kme, system_extras), {} if unset."""
    value = (profile.config or {}).get(name)
    return value if isinstance(value, dict) else {}


def admin_extras(
    profile: Profile, end_user_username: str | None, secrets: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The admin-extras bundle of a profile (module docstring), every value a string.

    Secret values (the Wi-Fi password) come from `secrets`, else from the profile's
    encrypted column (decrypting needs the app's KMEWEB_ENCRYPTION_KEY).
    """
    agent = config_section(profile, "agent")
    kme = config_section(profile, "kme")
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
    for key, value in config_section(profile, "system_extras").items():
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
