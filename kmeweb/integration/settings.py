"""Knox Integration settings: check the Settings form's values and save them.

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses. Nothing here calls the Knox API (Test connection lives in
kmeweb.integration.connection); the Knox client's defaults are read, nothing else of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from kmeweb import crypto
from kmeweb.audit import services as audit
from kmeweb.errors import ValidationError
from kmeweb.integration.models import AuthMode, Integration, PortalPolicy, get_integration
from kmeweb.knox.config import DEFAULT_BASE_URL, keys_json_identifier

AUTH_MODES = ("oauth", "legacy")

#: Region choices of the Settings tab and the API base each stands for (kme-api.md 1a/1b).
REGIONS: dict[str, tuple[str, str | None]] = {
    "us": ("Americas (us-kcs-api.samsungknox.com)", "https://us-kcs-api.samsungknox.com"),
    "eu": ("Europe and Asia (eu-kcs-api.samsungknox.com)", "https://eu-kcs-api.samsungknox.com"),
    "global": ("Global (api.samsungknox.com)", "https://api.samsungknox.com"),
    "custom": ("Custom URL", None),
}


def region_of(base_url: str | None) -> str:
    """The region (a key of REGIONS) a saved Knox API URL stands for."""
    for key, (_label, url) in REGIONS.items():
        if url and base_url and base_url.rstrip("/") == url:
            return key
    return "custom" if base_url else "global"


SYNC_INTERVAL_MIN, SYNC_INTERVAL_MAX, SYNC_INTERVAL_DEFAULT = 300, 86400, 900
DESCRIPTION_MAX = 200
_URL = re.compile(r"^https?://[^\s/]+\S*$")


def _text(data: Mapping[str, Any], key: str, max_len: int, label: str) -> str:
    value = str(data.get(key) or "").strip()
    if len(value) > max_len:
        raise ValidationError(f"{label} can have at most {max_len} characters.", field=key)
    return value


def _url(data: Mapping[str, Any], key: str, label: str, required: bool) -> str | None:
    value = _text(data, key, 500, label)
    if not value:
        if required:
            raise ValidationError(f"Enter the {label}.", field=key)
        return None
    if not _URL.match(value):
        raise ValidationError(f"The {label} must start with https:// or http://.", field=key)
    return value.rstrip("/") if key == "base_url" else value


def _keys_json(text: str) -> dict[str, Any]:
    """The keys.json content as a mapping with Public and Private. Raises ValidationError
    (field "secret") when it is not JSON or lacks either key."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValidationError(
            "keys.json is not valid JSON: download it again from the Knox API portal.",
            field="secret",
        ) from None
    if not isinstance(data, dict):
        raise ValidationError("keys.json must hold a JSON object.", field="secret")
    missing = [k for k in ("Public", "Private") if not (data.get(k) or data.get(k.lower()))]
    if missing:
        raise ValidationError(
            f"keys.json lacks {' and '.join(missing)}: use the file the Knox API portal gave you.",
            field="secret",
        )
    return data


def _interval(data: Mapping[str, Any], integration: Integration | None) -> int:
    """The sync interval in seconds from `sync_interval_min` (the form) or `sync_interval_s`."""
    if "sync_interval_min" in data:
        raw, unit, field = data.get("sync_interval_min"), 60, "sync_interval_min"
    else:
        raw, unit, field = data.get("sync_interval_s"), 1, "sync_interval_s"
    if raw is None or str(raw).strip() == "":
        if integration is not None:
            return integration.sync_interval_s
        if field == "sync_interval_min":
            raise ValidationError("Enter the sync interval in minutes.", field=field)
        return SYNC_INTERVAL_DEFAULT
    try:
        value = int(str(raw).strip()) * unit
    except ValueError:
        what = "whole minutes" if unit == 60 else "seconds"
        raise ValidationError(f"Enter the sync interval in {what}.", field) from None
    if not SYNC_INTERVAL_MIN <= value <= SYNC_INTERVAL_MAX:
        raise ValidationError(
            f"The sync interval is {SYNC_INTERVAL_MIN // 60} to {SYNC_INTERVAL_MAX // 60} minutes.",
            field=field,
        )
    return value


#: One sentence for each portal policy, under its choice on the Settings tab.
PORTAL_POLICY_HELP = {
    PortalPolicy.ADOPT.value: "A device moved, approved or given another user in the Samsung "
    "portal takes that value in kmeweb at the next sync, and is listed as changed in the "
    "Samsung portal until an admin settles it.",
    PortalPolicy.OURS.value: "kmeweb keeps its own value and sends it to Samsung again at the "
    "next sync, so a change made in the portal is undone; the device is listed as changed in "
    "the Samsung portal all the same.",
}


def _portal_policy(data: Mapping[str, Any], integration: Integration | None) -> str:
    """The portal policy chosen, else the saved one (ADOPT for a new integration)."""
    raw = str(data.get("portal_policy") or "").strip().lower()
    if not raw:
        return integration.portal_policy if integration is not None else PortalPolicy.ADOPT
    if raw not in PortalPolicy.labels():
        raise ValidationError(
            "Choose what kmeweb does with changes made in the Samsung portal.",
            field="portal_policy",
        )
    return raw


def validate_settings(session: Session, data: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The integration columns the Settings form asks for, checked, and the new secret ("" to
    keep the stored one). Writes nothing. Raises ValidationError (field set); see
    save_settings for the keys of `data`."""
    integration = get_integration(session)
    name = _text(data, "name", 100, "The Integration Name")
    if not name:
        raise ValidationError("Enter the Integration Name.", field="name")
    description = _text(data, "description", DESCRIPTION_MAX, "The description")
    auth_mode = str(data.get("auth_mode") or "oauth").strip().lower()
    if auth_mode not in AUTH_MODES:
        raise ValidationError("Choose OAuth or Legacy authentication.", field="auth_mode")
    custom = data.get("region") == "custom"
    base_url = _url(data, "base_url", "Knox API URL", required=custom) or DEFAULT_BASE_URL
    token_url = _url(data, "token_url", "token URL", required=False)
    client_id = _text(data, "client_id", 500, "The client id") or None
    customer_id = _text(data, "customer_id", 64, "The customer id") or None
    public_key = str(data.get("encryption_public_key") or "").strip() or None
    if public_key is not None and len(public_key) > 10_000:
        raise ValidationError("The public key is too long.", field="encryption_public_key")
    interval = _interval(data, integration)
    policy = _portal_policy(data, integration)
    secret = str(data.get("secret") or "").strip()
    if len(secret) > 20_000:
        raise ValidationError("The secret is too long.", field="secret")
    mode_changed = integration is not None and integration.auth_mode != auth_mode
    has_stored = integration is not None and integration.secret_enc is not None
    if not secret and (not has_stored or mode_changed):
        what = "client secret" if auth_mode == AuthMode.OAUTH else "keys.json file"
        raise ValidationError(f"Enter the {what}.", field="secret")
    if auth_mode == AuthMode.OAUTH and not client_id:
        raise ValidationError("Enter the client id.", field="client_id")
    if auth_mode == AuthMode.LEGACY:
        if not customer_id:
            raise ValidationError("Legacy authentication needs the customer id.", "customer_id")
        if secret:
            _keys_json(secret)
        if not client_id and not mode_changed and integration is not None and not secret:
            client_id = integration.client_id  # "leave blank to keep"
        keys = secret or (crypto.decrypt(integration.secret_enc) if has_stored else "")
        if not client_id and not keys_json_identifier(keys):
            raise ValidationError(
                "This keys.json holds no Identifier: enter the client identifier.", "client_id"
            )
    values = {
        "name": name,
        "description": description,
        "auth_mode": auth_mode,
        "base_url": base_url,
        "token_url": token_url if auth_mode == AuthMode.OAUTH else None,
        "client_id": client_id,
        "customer_id": customer_id,
        "encryption_public_key": public_key,
        "sync_interval_s": interval,
        "portal_policy": policy,
    }
    return values, secret


def save_settings(session: Session, data: Mapping[str, Any], actor: Any) -> Integration:
    """Create or update the integration from the Settings form.

    `data`: name (1..100), description (..200), auth_mode (oauth | legacy), base_url (default
    Samsung's global one), token_url (OAuth only; empty = Samsung's default), client_id (the
    OAuth client id, or the legacy client identifier: empty reads it from keys.json, or keeps
    the stored one), secret (the OAuth client secret or the keys.json content, plaintext;
    stored encrypted; empty keeps the stored one unless the auth mode changes), customer_id,
    encryption_public_key, and the sync interval as sync_interval_min (5..1440) or
    sync_interval_s, and portal_policy (PortalPolicy: what a pull does with a device changed
    in the Samsung portal; empty keeps the saved one, ADOPT at first). Legacy needs a keys.json
    with Public and Private, and the customer id. Records audit "integration.settings" (names
    of changed fields, never secrets; the portal policy's old and new values). Flushes.
    Raises ValidationError (field set).
    """
    values, secret = validate_settings(session, data)
    integration = get_integration(session)
    created = integration is None
    if integration is None:
        integration = Integration(active=False, settings={})
        session.add(integration)
    changed = [k for k, v in values.items() if created or getattr(integration, k) != v]
    details: dict[str, Any] = {"created": created, "changed": changed}
    if "portal_policy" in changed:
        details["portal_policy"] = [
            None if created else integration.portal_policy,
            values["portal_policy"],
        ]
    for key, value in values.items():
        setattr(integration, key, value)
    if secret:
        integration.secret_enc = crypto.encrypt(secret)
        changed.append("secret")
    session.flush()
    audit.record(
        session,
        actor,
        "integration.settings",
        "integration",
        integration.id,
        details,
    )
    return integration
