"""The device side of the simulator: what KME hands a booting device's MDM agent, and the
agent's first call home (`kme-sim boot-device`).

kme-api.md section 5, read on its own (no code shared with kmeweb): KME gathers the profile's
**Custom JSON data** and the device record into the admin-extras bundle
(`android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE`), every value a string, with the reserved
keys `username` / `password` (the per-device user ID and password set by assignProfile) and
`kmeUri` (the profile's EMM server URI).
"""

from __future__ import annotations

import json
from typing import Any

import requests

from kmeweb.knox.simulator import errors as codes
from kmeweb.knox.simulator.errors import SimError
from kmeweb.knox.simulator.state import SimDevice, Tenant

BUNDLE_KEY = "android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"
# The names a profile's custom JSON may be stored under (the simulator keeps bodies as sent).
CUSTOM_JSON_KEYS = ("customJson", "customData", "mdmProfileCustomData")
SERVER_URI_KEYS = ("mdmServerUri", "kmeUri", "emmServerUri")


def _as_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _custom_data(profile: dict[str, Any]) -> dict[str, Any]:
    for key in CUSTOM_JSON_KEYS:
        raw = profile.get(key)
        if raw in (None, ""):
            continue
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                return {}  # KME would refuse such a profile; the agent gets no custom data
        return raw if isinstance(raw, dict) else {}
    return {}


def provisioning(t: Tenant, d: SimDevice) -> dict[str, Any]:
    """What a booting device receives from KME: its IDs, its profile and the admin-extras bundle.

    Raises SimError when KME would provision nothing: the upload is not approved, or no
    profile is assigned (the device boots as an ordinary phone).
    """
    if not d.approved:
        raise SimError(409, codes.BULK_ENROLL_DEVICE_INVALID, "DEVICE_NOT_APPROVED", d.id)
    profile = t.profiles.get(d.profile_id) if d.profile_id else None
    if profile is None:
        raise SimError(
            404, codes.BULK_ENROLL_PROFILE_NOT_FOUND, "NO_PROFILE_ASSIGNED", d.mei or d.serial
        )
    bundle = {str(k): _as_string(v) for k, v in _custom_data(profile).items() if v is not None}
    server_uri = next((profile[k] for k in SERVER_URI_KEYS if profile.get(k)), None)
    if server_uri:
        bundle["kmeUri"] = str(server_uri)
    if d.user_name:
        bundle["username"] = d.user_name
    if d.user_token:
        bundle["password"] = d.user_token
    return {
        "deviceId": d.id,
        "imei": d.mei,
        "serialNumber": d.serial,
        "profileId": profile["id"],
        "profileName": profile.get("name"),
        BUNDLE_KEY: dict(sorted(bundle.items())),
    }


def agent_request(boot: dict[str, Any], agent_version: str) -> dict[str, Any]:
    """The body our MDM agent sends to /enroll: its IDs, the token from the bundle, its version."""
    bundle = boot.get(BUNDLE_KEY) or {}
    body: dict[str, Any] = {"agent_version": agent_version}
    if boot.get("imei"):
        body["imei"] = boot["imei"]
    if boot.get("serialNumber"):
        body["serial"] = boot["serialNumber"]
    if bundle.get("enrollment_token"):
        body["token"] = bundle["enrollment_token"]
    return body


def enroll_url(boot: dict[str, Any], mdm_url: str | None) -> str:
    """The agent's enrollment URL: `mdm_url` if given, else the bundle's server URL or kmeUri."""
    bundle = boot.get(BUNDLE_KEY) or {}
    base = mdm_url or bundle.get("server_url") or bundle.get("kmeUri")
    if not base:
        raise ValueError("the profile carries no server URL; pass --mdm-url")
    return base.rstrip("/") + "/enroll"


def call_enroll(url: str, body: dict[str, Any], timeout: float = 30) -> tuple[int, Any]:
    """POST the agent's request; returns (HTTP status, parsed JSON or the raw text)."""
    resp = requests.post(url, json=body, timeout=timeout)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text[:500]
