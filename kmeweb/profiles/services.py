"""Bulk enrollment profiles: create, edit, delete, tokens, associated user, lists and counts.

Every function takes the session and the acting admin, flushes but never commits, and raises
kmeweb.errors DomainError subclasses (ValidationError with the form field, NotFound, Conflict).
Changes to "kme" profiles also go to the outbox (kmeweb.outbox.services) in the same transaction;
"self_maintained" profiles are local only, and the Samsung KME Default Profile ("kme_default")
stands for "no KME profile": moving a device there unassigns it in KME.

Profile.config JSON layout (validated by kmeweb.profiles.config.normalize_config)::

    {"agent": {"server_url", "user", "support_email", "support_phone",
               "skip_setup_wizard", "allow_user_cancel"},
     "kme": {"supported_mdm", "mdm_apk_url", "mdm_admin_component", "mdm_signature_checksum",
             "mdm_server_uri", "company_name", "do_enabled", "ae_enabled"},
     "system_extras": {"skip_encryption", "leave_all_system_apps_enabled",
                       "skip_education_screens", "locale", "time_zone", "use_mobile_data",
                       "wifi_ssid", "wifi_security_type", "wifi_password", "wifi_hidden"},
     "custom_keys": [{"key": str, "type": "string" | "integer" | "boolean", "value": ...}]}

Only set values are stored. Validation errors name dotted fields ("kme.supported_mdm",
"custom_keys.0.value"); top-level fields are "name", "description", "token_expiry_days",
"end_user_id", "kind".

The `data` mapping of create_profile/update_profile takes: name, description, kind,
without_token, end_user_id, token_expiry_days (7..999, or None / "never" for never expires;
default 30 on create) and config (the layout above; on update it replaces the stored config).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from kmeweb import crypto
from kmeweb.audit import services as audit
from kmeweb.devices.models import Device, DeviceEvent, DeviceEventKind
from kmeweb.directory.models import EndUser
from kmeweb.errors import Conflict, ErrorCollector, NotFound, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.ids import optional_id
from kmeweb.operations import services as operations
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import ChangeKind, SyncState
from kmeweb.profiles import bundle as device_bundle
from kmeweb.profiles import counts
from kmeweb.profiles.config import normalize_config, parse_bool, parse_int
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sqlutil import chunks, id_filters
from kmeweb.text import count

DEFAULT_PROFILE_NAME = "Samsung KME Default Profile"
DEFAULT_KIND = ProfileKind.KME_DEFAULT
KME_KINDS = (ProfileKind.KME, ProfileKind.KME_DEFAULT)
CREATABLE_KINDS = (ProfileKind.KME, ProfileKind.SELF_MAINTAINED)
NAME_MAX = 100
DESCRIPTION_MAX = 200
NAME_REFUSED = "\\#/$*%^&()+?{}[]"  # characters KME refuses in a profile name
FORBIDDEN_NAME_CHARS = set(NAME_REFUSED)
# The name rule as the form shows it before Done.
NAME_RULE = f"Up to {NAME_MAX} characters; it cannot contain {' '.join(NAME_REFUSED)}"
# A new token lasts 30 days: longer than the 14 days ahead that alerts and the Overview warn
# (kmeweb.alerts, kmeweb.overview), so a new profile does not start with a warning.
TOKEN_DAYS_MIN, TOKEN_DAYS_MAX, TOKEN_DAYS_DEFAULT = 7, 999, 7
TOKEN_BYTES = 24  # 192 bits, 32 URL-safe characters
TOKEN_MASK = "••••••••"
TOKEN_SHOWN = 4  # last characters of a masked token, to tell a refreshed token from the old
STALE_MESSAGE = "This profile was changed by someone else; reload it and try again."


def get_profile_or_404(session: Session, profile_id: int) -> Profile:
    """The profile with this id. Raises NotFound."""
    profile = session.get(Profile, profile_id)
    if profile is None:
        raise NotFound("No such profile.")
    return profile


def default_profile(session: Session) -> Profile | None:
    """The Samsung KME Default Profile, if it exists."""
    return session.scalar(
        select(Profile).where(Profile.kind == DEFAULT_KIND).order_by(Profile.id).limit(1)
    )


def ensure_default_profile(session: Session) -> Profile:
    """The Samsung KME Default Profile, created (local only, no token) when missing. Flushes.

    Raises Conflict when another profile already uses its name.
    """
    profile = default_profile(session)
    if profile is not None:
        return profile
    if _name_taken(session, DEFAULT_PROFILE_NAME):
        raise Conflict(
            f"A profile named {DEFAULT_PROFILE_NAME!r} already exists; rename it first.",
            field="name",
        )
    profile = Profile(
        name=DEFAULT_PROFILE_NAME,
        description="Approved devices without a KME profile",
        kind=DEFAULT_KIND,
        token=None,
        token_expires_at=None,
        without_token=False,
        config={},
        sync_state=SyncState.SYNCED,
    )
    session.add(profile)
    session.flush()
    return profile


PROFILE_SORTS = ("name", "modified", "type")


def list_profiles_query(search: str | None = None, sort: str | None = None) -> Select:
    """Profiles for the Bulk Enrollment list: the Default Profile first, then by `sort`
    ("name", the default; "modified", newest first; "type").

    `search` matches name or description (case-insensitive). Counts come from
    `profile_counts` for the page shown, never from loading devices.
    """
    order: list[Any] = [case((Profile.kind == DEFAULT_KIND, 0), else_=1)]
    if sort == "modified":
        order.append(Profile.updated_at.desc())
    elif sort == "type":
        order.append(Profile.kind)
    order += [func.lower(Profile.name), Profile.id]
    stmt = select(Profile).order_by(*order)
    search = (search or "").strip()
    if search:
        stmt = stmt.where(
            or_(
                Profile.name.icontains(search, autoescape=True),
                Profile.description.icontains(search, autoescape=True),
            )
        )
    return stmt


def kme_targets(session: Session, exclude_id: int | None = None) -> list[Profile]:
    """The profiles devices can be moved to (Default Profile first, then KME by name),
    without `exclude_id`."""
    stmt = list_profiles_query().where(Profile.kind.in_(KME_KINDS))
    if exclude_id is not None:
        stmt = stmt.where(Profile.id != exclude_id)
    return list(session.scalars(stmt))


def move_targets(session: Session, from_profile_id: int) -> list[Profile]:
    """What Move Devices offers from a profile: the KME profiles by name, without that one and
    without the Default Profile (devices go back there with Unassign)."""
    return [p for p in kme_targets(session, exclude_id=from_profile_id) if p.kind != DEFAULT_KIND]


EDIT_LABELS = {
    "name": "Profile Name",
    "description": "Description",
    "without_token": "Device registration without token",
    "end_user_id": "Associated User",
    "config": "Configuration",
    "token": "Enrollment Token",
    "token_expires_at": "Token Expiry",
}


def edit_snapshot(profile: Profile) -> dict[str, Any]:
    """What an edit form was loaded with, to say later what someone else changed meanwhile."""
    return {
        "name": profile.name,
        "description": profile.description or "",
        "without_token": bool(profile.without_token),
        "end_user_id": profile.end_user_id,
        "config": profile.config or {},
        "token": hashlib.sha256((profile.token or "").encode()).hexdigest()[:16],
        "token_expires_at": (
            profile.token_expires_at.isoformat() if profile.token_expires_at else None
        ),
    }


def changed_since(snapshot: Mapping[str, Any] | None, profile: Profile) -> list[str]:
    """Labels of what differs between an edit snapshot and the profile now (all of them
    when the snapshot is missing or unreadable)."""
    now = json.loads(json.dumps(edit_snapshot(profile), default=str))
    if not isinstance(snapshot, Mapping):
        return list(EDIT_LABELS.values())
    return [label for key, label in EDIT_LABELS.items() if snapshot.get(key) != now.get(key)]


def stale_edit_message(snapshot: Mapping[str, Any] | None, profile: Profile) -> str:
    """The 409 message for a save of an edit that someone else overtook."""
    changed = changed_since(snapshot, profile)
    what = ", ".join(changed) if changed else "nothing you can see"
    return (
        f"Someone else saved this profile while you were editing it (changed: {what}). "
        "Your values are still below: click Done again to save them over theirs, or reload "
        "to see theirs."
    )


def profile_counts(session: Session, profile_ids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """{profile id: (devices, registered, pending registration)}: the profiles' kept counts
    (kmeweb.profiles.counts), read from their rows, never by counting devices.

    Unknown ids map to (0, 0, 0).
    """
    ids = list(dict.fromkeys(profile_ids))
    kept = {pid: (0, 0, 0) for pid in ids}
    for chunk in chunks(ids, 900):
        rows = session.execute(
            select(Profile.id, Profile.device_count, Profile.registered_count).where(
                Profile.id.in_(chunk)
            )
        )
        for pid, total, registered in rows:
            kept[pid] = (total, registered, total - registered)
    return kept


def generate_token(session: Session) -> str:
    """A new random URL-safe token (192 bits) that no profile uses."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if session.scalar(select(Profile.id).where(Profile.token == token)) is None:
            return token


def mask_token(token: str | None) -> str:
    """What pages show of a token: its last four characters. With a token and one IMEI anyone
    can fetch the profile's bundle from /enroll, so the token itself shows only on Reveal."""
    if not token:
        return ""
    return TOKEN_MASK + token[-TOKEN_SHOWN:]


def reveal_token(session: Session, profile_id: int, actor: Any) -> str:
    """The profile's token, for an admin who asked to see it. Records audit
    "profile.token_reveal" (never the token). Flushes. Raises NotFound (no such profile or
    one without a token)."""
    profile = get_profile_or_404(session, profile_id)
    if not profile.token:
        raise NotFound("This profile has no enrollment token.")
    audit.record(
        session, actor, "profile.token_reveal", "profile", profile.id, {"name": profile.name}
    )
    session.flush()
    return profile.token


def token_needed() -> ColumnElement[bool]:
    """SQL condition: devices still need this profile's token. It has one, devices enroll
    with it (not "without token"), and at least one of its devices has not registered yet.
    Alerts and the Overview warn about an expiring token only then."""
    return and_(
        Profile.kind != ProfileKind.KME_DEFAULT,
        Profile.token.is_not(None),
        Profile.without_token.is_(False),
        exists().where(Device.profile_id == Profile.id, Device.registered_at.is_(None)),
    )


def token_matches(given: str | None, stored: str | None) -> bool:
    """Compare two tokens in constant time; None never matches."""
    if not given or not stored:
        return False
    return hmac.compare_digest(given.encode(), stored.encode())


def profile_for_token(session: Session, token: str | None) -> Profile | None:
    """The profile whose token is `token` (expiry not checked), or None."""
    if not token or len(token) > 64:
        return None
    profile = session.scalar(select(Profile).where(Profile.token == token))
    if profile is None or not token_matches(token, profile.token):
        return None
    return profile


def token_expired(profile: Profile, now: datetime | None = None) -> bool:
    """True when the profile's token has an expiry that has passed."""
    expires = profile.token_expires_at
    return expires is not None and expires <= (now or utcnow())


def token_status(profile: Profile, now: datetime | None = None) -> str:
    """ "never expires", "expired" or "expires YYYY-MM-DD" for the profile's token."""
    if profile.token_expires_at is None:
        return "never expires"
    if token_expired(profile, now):
        return "expired"
    return f"expires {profile.token_expires_at:%Y-%m-%d}"


def parse_expiry_days(value: Any, field: str = "token_expiry_days") -> int | None:
    """Token validity in days (7..999), or None for never expires (None or "never").

    Raises ValidationError(field).
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
        return None
    days = parse_int(value, field)
    if days is None or not TOKEN_DAYS_MIN <= days <= TOKEN_DAYS_MAX:
        raise ValidationError(
            f"Choose {TOKEN_DAYS_MIN} to {TOKEN_DAYS_MAX} days, or never expires.", field=field
        )
    return days


def _expiry(days: int | None) -> datetime | None:
    return None if days is None else utcnow() + timedelta(days=days)


def _name_taken(session: Session, name: str, exclude_id: int | None = None) -> bool:
    stmt = select(Profile.id).where(func.lower(Profile.name) == name.lower())
    if exclude_id is not None:
        stmt = stmt.where(Profile.id != exclude_id)
    return session.scalar(stmt.limit(1)) is not None


def validate_name(session: Session, value: Any, exclude_id: int | None = None) -> str:
    """A trimmed, allowed, unused (case-insensitive) profile name. Raises ValidationError."""
    name = str(value or "").strip()
    if not name:
        raise ValidationError("Enter a profile name.", field="name")
    if len(name) > NAME_MAX:
        raise ValidationError(f"At most {NAME_MAX} characters.", field="name")
    bad = sorted(FORBIDDEN_NAME_CHARS & set(name))
    if bad:
        raise ValidationError("A profile name cannot contain " + " ".join(bad) + ".", field="name")
    if name.lower() == DEFAULT_PROFILE_NAME.lower():
        raise ValidationError("This name is reserved for the default profile.", field="name")
    if _name_taken(session, name, exclude_id):
        raise ValidationError("Another profile already has this name.", field="name")
    return name


def _description(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) > DESCRIPTION_MAX:
        raise ValidationError(f"At most {DESCRIPTION_MAX} characters.", field="description")
    return text


def _end_user_id(session: Session, value: Any) -> int | None:
    user_id = optional_id(value, "end_user_id", "No such user.")
    if user_id is None:
        return None
    if session.get(EndUser, user_id) is None:
        raise ValidationError("No such user.", field="end_user_id")
    return user_id


def _flush(session: Session) -> None:
    try:
        session.flush()
    except StaleDataError as exc:
        raise Conflict(STALE_MESSAGE) from exc
    except IntegrityError as exc:
        raise Conflict("Another profile already has this name or token; reload.") from exc


def _mark_pending(profile: Profile) -> None:
    # Set before the flush so the profile row is written (and its version bumped) once;
    # record_profile_change then finds nothing left to change.
    if profile.kind == ProfileKind.KME:
        profile.sync_state = SyncState.PENDING
        profile.sync_error = None


def _push_profile(session: Session, kind: str, profile: Profile, label: str, actor: Any) -> None:
    operation = operations.start_operation(session, kind, label, 1, actor)
    outbox.record_profile_change(session, kind, profile, operation, actor)


SECRET_KEYS = ("wifi_password",)
SECRET_MASK = "••••••••"
TOKEN_PLACEHOLDER = "(generated when you click Done)"


def _config_and_secrets(
    raw: Any, kind: str, secrets_in: Mapping[str, Any] | None, stored: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a configuration and split its secrets (the Wi-Fi password) off.

    The password is write-only in the form: `secrets_in["wifi_password"]` replaces it, a
    blank keeps the `stored` one unless `secrets_in["wifi_password_clear"]`, and a network
    without an SSID keeps none. A password inside `raw` (the older layout) counts as typed.
    Raises ValidationError (dotted field).
    """
    if raw is not None and not isinstance(raw, Mapping):
        return normalize_config(raw, kind), {}  # raises
    raw = copy.deepcopy(dict(raw or {}))
    extras = raw.get("system_extras")
    extras = dict(extras) if isinstance(extras, Mapping) else extras
    secrets_in = secrets_in or {}
    if isinstance(extras, dict):
        typed = extras.get("wifi_password") or secrets_in.get("wifi_password")
        password = typed
        if not typed and not secrets_in.get("wifi_password_clear") and extras.get("wifi_ssid"):
            password = stored.get("wifi_password")
        extras.pop("wifi_password", None)
        if password:
            extras["wifi_password"] = password
        raw["system_extras"] = extras
    config = normalize_config(raw, kind)
    found = {}
    password = config["system_extras"].pop("wifi_password", None)
    if password:
        found["wifi_password"] = password
    return config, found


def _encrypt_secrets(values: Mapping[str, str]) -> str | None:
    return crypto.encrypt(json.dumps(dict(values), sort_keys=True)) if values else None


def has_secret(profile: Profile, key: str) -> bool:
    """True when the profile stores this secret configuration value."""
    return bool(profile.secrets_enc) and bool(profile.secrets().get(key))


def preview_bundle(
    raw_config: Mapping[str, Any],
    kind: str,
    token: str | None,
    without_token: bool,
    username: str | None,
    has_wifi_password: bool,
) -> dict[str, Any]:
    """The admin-extras bundle KME hands the agent for these (unsaved) values, with secrets
    masked: {"bundle": {key: value}, "error": the first validation message or None}.
    Reads nothing and writes nothing."""
    raw = copy.deepcopy(dict(raw_config or {}))
    if isinstance(raw.get("system_extras"), dict):
        raw["system_extras"].pop("wifi_password", None)
    error = None
    try:
        config = normalize_config(raw, kind)
    except ValidationError as err:
        config, error = raw, err.message
    draft = Profile(
        kind=kind, token=token or TOKEN_PLACEHOLDER, without_token=without_token, config=config
    )
    masked = {"wifi_password": SECRET_MASK} if has_wifi_password else {}
    try:
        bundle = device_bundle.admin_extras(draft, username, secrets=masked)
    except (TypeError, ValueError, AttributeError):
        bundle = {}
    bundle = dict(sorted(bundle.items()))
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    return {"bundle": bundle, "error": error, "json": text}


def create_profile(session: Session, data: Mapping[str, Any], actor: Any) -> Profile:
    """Create a "kme" or "self_maintained" profile with a fresh token.

    A KME profile also gets a profile.create outbox row (and its operation); a self-maintained
    one is local only. Records audit "profile.create". Flushes.
    Raises ValidationError (field set) for an invalid value, ValidationErrors for several.
    """
    kind = str(data.get("kind") or ProfileKind.KME)
    if kind not in CREATABLE_KINDS:
        raise ValidationError("Choose Samsung Knox Mobile Enrollment or Self-Maintained.", "kind")
    errors = ErrorCollector()  # every field's refusal in one answer
    name = errors.check(validate_name, session, data.get("name"))
    description = errors.check(_description, data.get("description"))
    days = errors.check(parse_expiry_days, data.get("token_expiry_days", TOKEN_DAYS_DEFAULT))
    without_token = bool(errors.check(parse_bool, data.get("without_token"), "without_token"))
    end_user_id = errors.check(_end_user_id, session, data.get("end_user_id"))
    checked = errors.check(_config_and_secrets, data.get("config"), kind, data.get("secrets"), {})
    errors.raise_any()
    config, profile_secrets = checked  # type: ignore[misc]  # set: raise_any raised otherwise

    profile = Profile(
        name=name,
        description=description,
        kind=kind,
        token=generate_token(session),
        token_expires_at=_expiry(days),
        without_token=without_token,
        end_user_id=end_user_id,
        config=config,
        secrets_enc=_encrypt_secrets(profile_secrets),
        sync_state=SyncState.PENDING if kind == ProfileKind.KME else SyncState.SYNCED,
    )
    session.add(profile)
    _flush(session)
    if kind == ProfileKind.KME:
        _push_profile(session, ChangeKind.PROFILE_CREATE, profile, f"Create profile {name}", actor)
    audit.record(
        session,
        actor,
        "profile.create",
        "profile",
        profile.id,
        {"name": name, "kind": kind, "token_expiry_days": days, "without_token": without_token},
    )
    return profile


def _check_version(profile: Profile, expected_version: Any) -> None:
    try:
        expected = int(expected_version)
    except (TypeError, ValueError):
        raise Conflict(STALE_MESSAGE) from None
    if profile.version != expected:
        raise Conflict(STALE_MESSAGE)


# What update_profile refuses to set on the Default Profile (it keeps only a description).
DEFAULT_REFUSES = ("without_token", "end_user_id", "config", "token_expiry_days")


def update_profile(
    session: Session,
    profile_id: int,
    data: Mapping[str, Any],
    expected_version: int,
    actor: Any,
) -> Profile:
    """Change the keys present in `data` (name, description, without_token, end_user_id,
    token_expiry_days, config) of a profile last seen at `expected_version`.

    The Default Profile keeps its name and takes only a description (a token expiry, user,
    configuration or without-token for it is refused with its field). A changed KME profile
    gets a profile.update outbox row (a token expiry alone stays local, KME does not see it).
    Records audit "profile.update". Flushes.
    Raises NotFound, Conflict (stale version), ValidationError (field set) or
    ValidationErrors (every refused field at once; nothing flushed then).
    """
    profile = get_profile_or_404(session, profile_id)
    _check_version(profile, expected_version)
    changed: dict[str, Any] = {}
    # Every field is checked before anything is flushed; the caller rolls back on a refusal.
    errors = ErrorCollector()

    if "name" in data:
        if profile.kind == DEFAULT_KIND:
            if str(data["name"] or "").strip() != profile.name:
                errors.add(f"The {DEFAULT_PROFILE_NAME} cannot be renamed.", "name")
        else:
            name = errors.check(validate_name, session, data["name"], exclude_id=profile.id)
            if name is not None and name != profile.name:
                changed["name"] = (profile.name, name)
                profile.name = name
    if "description" in data:
        description = errors.check(_description, data["description"])
        if description is not None and description != profile.description:
            changed["description"] = (profile.description, description)
            profile.description = description

    if profile.kind == DEFAULT_KIND:
        # It has no token, user or configuration: a value for one is refused, not dropped.
        for key in DEFAULT_REFUSES:
            if data.get(key):
                errors.add(f"The {DEFAULT_PROFILE_NAME} takes a description only.", key)
    else:
        if "without_token" in data:
            without = bool(errors.check(parse_bool, data["without_token"], "without_token"))
            if without != profile.without_token:
                changed["without_token"] = (profile.without_token, without)
                profile.without_token = without
        if "end_user_id" in data:
            user_id = errors.check(_end_user_id, session, data["end_user_id"])
            if user_id != profile.end_user_id:
                changed["end_user_id"] = (profile.end_user_id, user_id)
                profile.end_user_id = user_id
        if "config" in data:
            stored = profile.secrets()
            checked = errors.check(
                _config_and_secrets, data["config"], profile.kind, data.get("secrets"), stored
            )
            config, new_secrets = checked or (profile.config or {}, stored)
            if config != (profile.config or {}) or new_secrets != stored:
                changed["config"] = None
                profile.config = config
                if new_secrets != stored:
                    profile.secrets_enc = _encrypt_secrets(new_secrets)
        if "token_expiry_days" in data:
            days = errors.check(parse_expiry_days, data["token_expiry_days"])
            profile.token_expires_at = _expiry(days)
            changed["token_expiry_days"] = (None, days)

    errors.raise_any()
    if not changed:
        return profile
    kme_visible = bool(set(changed) - {"token_expiry_days"})
    if kme_visible:
        _mark_pending(profile)
    _flush(session)
    if profile.kind == ProfileKind.KME and kme_visible:
        _push_profile(
            session, ChangeKind.PROFILE_UPDATE, profile, f"Update profile {profile.name}", actor
        )
    audit.record(
        session,
        actor,
        "profile.update",
        "profile",
        profile.id,
        {
            "name": profile.name,
            "changed": sorted(changed),
            "values": {k: list(v) for k, v in changed.items() if v is not None},
        },
    )
    _flush(session)
    return profile


def delete_profile(session: Session, profile_id: int, actor: Any) -> int:
    """Delete a profile; its devices go back to the Default Profile first.

    For a KME profile the devices are marked pending with device.unassign outbox rows and a
    profile.delete row follows (one operation). Devices of a self-maintained profile move
    locally. Records audit "profile.delete". Flushes. Returns the number of devices moved.
    Raises NotFound, or Conflict for the Default Profile.
    """
    profile = get_profile_or_404(session, profile_id)
    if profile.kind == DEFAULT_KIND:
        raise Conflict(f"The {DEFAULT_PROFILE_NAME} cannot be deleted.")
    default = ensure_default_profile(session)
    device_ids = list(
        session.scalars(
            select(Device.id).where(Device.profile_id == profile.id).order_by(Device.id)
        )
    )
    n = len(device_ids)
    name = profile.name
    shift = counts.Shift()
    if n:
        _history_to_default(session, profile, default.id, actor)
        shift.add(default.id, *counts.fresh_counts(session, [profile.id]).get(profile.id, (0, 0)))

    if profile.kind == ProfileKind.KME:
        label = f"Delete profile {name}"
        if n:
            label += f" ({count(n, 'device')} to the Default Profile)"
        operation = operations.start_operation(
            session, ChangeKind.PROFILE_DELETE, label, n + 1, actor
        )
        if device_ids:
            outbox.mark_devices_pending(session, device_ids, profile_id=default.id)
            outbox.record_device_change(
                session,
                ChangeKind.DEVICE_UNASSIGN,
                device_ids,
                operation,
                actor,
                profile_id=default.id,
            )
        outbox.record_profile_change(session, ChangeKind.PROFILE_DELETE, profile, operation, actor)
    elif device_ids:
        _move_locally(session, device_ids, default.id)
    counts.apply(session, shift)

    audit.record(
        session,
        actor,
        "profile.delete",
        "profile",
        profile.id,
        {"name": name, "kind": profile.kind, "devices_moved_to_default": n},
    )
    session.delete(profile)
    _flush(session)
    return n


def _history_to_default(session: Session, profile: Profile, default_id: int, actor: Any) -> None:
    """Each device of a profile being deleted gets an "Unassigned" entry in its history (one
    INSERT ... SELECT; the profile's name is written out, the profile will be gone)."""
    name = actor if isinstance(actor, str) else str(getattr(actor, "email", actor or "system"))
    details = {"from": f"{profile.name} (deleted)", "to": default_id, "note": "profile deleted"}
    rows = select(
        Device.id,
        literal(utcnow(), DeviceEvent.at.type),
        literal(DeviceEventKind.UNASSIGNED.value),
        literal(name[:254]),
        literal(details, DeviceEvent.details.type),
    ).where(Device.profile_id == profile.id)
    columns = ["device_id", "at", "kind", "actor", "details"]
    session.execute(insert(DeviceEvent).from_select(columns, rows))


def _move_locally(session: Session, device_ids: list[int], profile_id: int) -> None:
    for where in id_filters(session, Device.id, device_ids):
        session.execute(
            update(Device)
            .where(where)
            .values(profile_id=profile_id, version=Device.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def _token_profile(session: Session, profile_id: int, expected_version: Any = None) -> Profile:
    profile = get_profile_or_404(session, profile_id)
    if profile.kind == DEFAULT_KIND:
        raise Conflict(f"The {DEFAULT_PROFILE_NAME} has no enrollment token.")
    if expected_version is not None:
        _check_version(profile, expected_version)
    return profile


def refresh_token(
    session: Session,
    profile_id: int,
    days: int | None,
    actor: Any,
    expected_version: int | None = None,
) -> Profile:
    """Issue a new token valid for `days` (7..999, None = never expires); the old one stops
    working at once.

    KME profiles carry the token in their custom JSON, so they get a profile.update outbox row.
    Records audit "profile.token_refresh" (never the token). Flushes.
    Raises NotFound, ValidationError (field "token_expiry_days") or Conflict (Default Profile,
    stale version).
    """
    profile = _token_profile(session, profile_id, expected_version)
    days = parse_expiry_days(days)
    profile.token = generate_token(session)
    profile.token_expires_at = _expiry(days)
    _mark_pending(profile)
    _flush(session)
    if profile.kind == ProfileKind.KME:
        _push_profile(
            session, ChangeKind.PROFILE_UPDATE, profile, f"Refresh token of {profile.name}", actor
        )
    audit.record(
        session,
        actor,
        "profile.token_refresh",
        "profile",
        profile.id,
        {"name": profile.name, "days": days},
    )
    _flush(session)
    return profile


def extend_token(
    session: Session,
    profile_id: int,
    days: int | None,
    actor: Any,
    from_current: bool = False,
    expected_version: int | None = None,
) -> Profile:
    """Keep the token and let it expire `days` days from now (Extend Upto), or from its
    current expiry when `from_current` (Extend); None = never expires.

    Extend (`from_current`) never brings an expiry earlier: a token that never expires is
    refused (giving it a date is set_token_expiry, the admin's explicit choice).
    Local only: the expiry is checked by our enrollment endpoint, not KME. The new expiry may
    not lie more than 999 days ahead. Records audit "profile.token_extend". Flushes.
    Raises NotFound, ValidationError (field "token_expiry_days") or Conflict.
    """
    profile = _token_profile(session, profile_id, expected_version)
    days = parse_expiry_days(days)
    if from_current and days is not None and profile.token_expires_at is None:
        raise ValidationError(
            "This token never expires: Extend cannot bring its expiry earlier. "
            "Use Set expiry date to give it one.",
            field="token_expiry_days",
        )
    now = utcnow()
    start = now
    if from_current and profile.token_expires_at is not None:
        start = max(now, profile.token_expires_at)
    return _set_expiry(session, profile, days, start, actor, "profile.token_extend")


def set_token_expiry(
    session: Session,
    profile_id: int,
    days: int,
    actor: Any,
    expected_version: int | None = None,
) -> Profile:
    """Set expiry date: the token (kept) expires `days` (7..999) days from now, whatever its
    expiry was, "never expires" included. Records audit "profile.token_expiry". Flushes.
    Raises NotFound, ValidationError (field "token_expiry_days"; also for no days) or Conflict.
    """
    profile = _token_profile(session, profile_id, expected_version)
    days = parse_expiry_days(days)
    if days is None:
        raise ValidationError(
            f"Choose {TOKEN_DAYS_MIN} to {TOKEN_DAYS_MAX} days for the expiry date.",
            field="token_expiry_days",
        )
    return _set_expiry(session, profile, days, utcnow(), actor, "profile.token_expiry")


def _set_expiry(
    session: Session, profile: Profile, days: int | None, start: datetime, actor: Any, action: str
) -> Profile:
    """The token expires `days` after `start` (None: never); at most 999 days from now."""
    now = utcnow()
    expires = None if days is None else start + timedelta(days=days)
    if expires is not None and expires > now + timedelta(days=TOKEN_DAYS_MAX):
        raise ValidationError(
            f"A token can be valid for at most {TOKEN_DAYS_MAX} days from today.",
            field="token_expiry_days",
        )
    profile.token_expires_at = expires
    _flush(session)
    audit.record(
        session,
        actor,
        action,
        "profile",
        profile.id,
        {"name": profile.name, "expires_at": expires.isoformat() if expires else None},
    )
    return profile


def devices_awaiting_token(
    session: Session, profile_id: int, limit: int = 3
) -> tuple[int, list[str]]:
    """The profile's devices not registered yet (they enroll with its token): how many, and
    the IMEI (else serial) of the first `limit` by IMEI."""
    waiting = (Device.profile_id == profile_id, Device.registered_at.is_(None))
    count = session.scalar(select(func.count()).select_from(Device).where(*waiting)) or 0
    names = session.scalars(
        select(func.coalesce(Device.imei, Device.serial))
        .where(*waiting)
        .order_by(Device.imei, Device.id)
        .limit(limit)
    )
    return count, list(names)


def set_profile_user(
    session: Session, profile_id: int, end_user_id: int | None, actor: Any
) -> Profile:
    """Change Associate User: associate `end_user_id` (None clears it) with the profile.

    The user travels in a KME profile's custom JSON, so a KME profile gets a profile.update
    outbox row. Records audit "profile.user". Flushes.
    Raises NotFound, ValidationError (field "end_user_id") or Conflict (Default Profile).
    """
    profile = get_profile_or_404(session, profile_id)
    if profile.kind == DEFAULT_KIND:
        raise Conflict(f"The {DEFAULT_PROFILE_NAME} has no associated user.")
    user_id = _end_user_id(session, end_user_id)
    if user_id == profile.end_user_id:
        return profile
    old = profile.end_user_id
    profile.end_user_id = user_id
    _mark_pending(profile)
    _flush(session)
    if profile.kind == ProfileKind.KME:
        _push_profile(
            session,
            ChangeKind.PROFILE_UPDATE,
            profile,
            f"Change user of profile {profile.name}",
            actor,
        )
    username = session.scalar(select(EndUser.username).where(EndUser.id == user_id))
    audit.record(
        session,
        actor,
        "profile.user",
        "profile",
        profile.id,
        {"name": profile.name, "old_end_user_id": old, "end_user_id": user_id, "user": username},
    )
    _flush(session)
    return profile
