"""Device enrollment (design.md section 1 step 7): a booted device's agent presents its IDs and
the token KME handed it; kmeweb answers with what the agent needs and counts it registered.

What the answers reveal, decided on purpose (the endpoint is the only one without sign-in):

- **With a token** the token is checked first, before any device is looked at: a token that
  matches no profile is `token_invalid` whatever the IDs, and the device is then looked up
  only *inside the token's profile*. A device elsewhere (another profile, pending approval, or
  not in the inventory at all) is `unknown_device`, one answer for all three, so a token of
  profile A tells nothing about devices outside A, and nothing about any other profile's data.
  `token_expired` only answers a token that did match (its holder had it in a bundle). The
  token is found by its unique index and then compared with hmac.compare_digest
  (profiles.services.profile_for_token).
- **Without a token** only a profile with "Device registration without token" can answer
  with data. The codes (`unknown_device`, `not_approved`, `no_profile`, `token_required`) are
  what an agent needs to tell its user what is wrong; they do reveal whether an IMEI/serial is
  in this inventory. IMEIs and serials are printed on the box and the device, membership is
  all that leaks (no profile name, user or configuration), and the per-IP and per-device rate
  limits bound enumeration. No code ever names another device or profile.
- Answers for refused requests carry only the code and a fixed message.

Registration is idempotent: the first success sets `registered_at` (kept on repeats) and the
agent version; a repeat with the same version writes nothing. Audit: one "device.register"
event for the first registration and one "device.agent_version" event when a registered
device comes back with another agent version; repeats are not audited (a retrying agent must
not flood the log, and nothing changed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class

from kmeweb import crypto
from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.devices import history
from kmeweb.devices.models import Approval, Device
from kmeweb.directory.models import EndUser
from kmeweb.extensions import utcnow
from kmeweb.identifiers import is_meid, is_valid_imei, is_valid_serial, normalize_serial
from kmeweb.outbox.models import SyncState
from kmeweb.profiles import bundle as profile_bundle
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import profile_for_token, token_expired, token_matches
from kmeweb.redact import redact_details
from kmeweb.sqlutil import DriverStatement

AGENT_VERSION_MAX = 64
TOKEN_MAX = 256  # tokens are 32 characters (192 bits, URL-safe); room for other generators

# code -> (HTTP status, message). Stable: agents switch on the code, never on the message.
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "The request is not valid."),
    "unsupported_media_type": (415, "Send the request as application/json."),
    "payload_too_large": (413, "The request is too large."),
    "unknown_device": (404, "This device is not known to this server."),
    "not_approved": (403, "This device has not been approved yet; ask your administrator."),
    "no_profile": (403, "This device is not in an enrollment profile yet."),
    "token_required": (401, "This device's profile requires an enrollment token."),
    "token_invalid": (401, "The enrollment token is not valid."),
    "token_expired": (401, "The enrollment token has expired; ask for a new one."),
    "profile_not_synced": (
        409,
        "This device's profile is not yet in Knox Mobile Enrollment; try again later.",
    ),
}


class EnrollError(Exception):
    """A refused enrollment: `code` is one of ERRORS (or bad_request with a `field`)."""

    def __init__(
        self,
        code: str,
        field: str | None = None,
        message: str | None = None,
        device_id: int | None = None,
    ) -> None:
        self.status, default = ERRORS[code]
        self.code = code
        #: The device the request named, when it is known (its history records the refusal).
        self.device_id = device_id
        self.field = field
        self.message = message or default
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    """A parsed, validated enrollment request (`parse_request`)."""

    imei: str | None
    serial: str | None
    token: str | None
    agent_version: str

    @property
    def device_key(self) -> str:
        """What the per-device rate limit counts (the IDs as given, normalized)."""
        return self.imei or self.serial or ""


# What no column may hold: a NUL (PostgreSQL refuses it in text) and lone UTF-16 surrogates
# (JSON's "\ud800" escape decodes to one; no database driver can encode it as UTF-8).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def _text(data: dict[str, Any], key: str, max_len: int) -> str | None:
    """The string the device sent under `key`, stripped; None when absent or blank.

    Every string a request carries goes through here before any use (a query, a log line, a
    Redis key). Raises EnrollError("bad_request", key) for a non-string, a string too long, or
    one holding a NUL or a lone surrogate.
    """
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EnrollError("bad_request", key, f"{key} must be a string.")
    value = value.strip()
    if len(value) > max_len or _NOT_TEXT.search(value):
        raise EnrollError("bad_request", key, f"{key} is too long or not text.")
    return value or None


def parse_request(data: Any) -> EnrollRequest:
    """Validate the JSON body {"imei" or "serial", "token" (optional), "agent_version"}.

    Unknown keys are ignored (newer agents may send more). Raises EnrollError("bad_request").
    """
    if not isinstance(data, dict):
        raise EnrollError("bad_request", None, "The body must be a JSON object.")
    imei = _text(data, "imei", 16)
    serial = _text(data, "serial", 32)
    if imei is not None:
        imei = imei.upper()
        if not (is_valid_imei(imei) or is_meid(imei)):
            raise EnrollError("bad_request", "imei", "imei must be a valid IMEI or MEID.")
    if serial is not None:
        serial = normalize_serial(serial)
        if not is_valid_serial(serial):
            raise EnrollError("bad_request", "serial", "serial must be 8 to 16 letters/digits.")
    if imei is None and serial is None:
        raise EnrollError("bad_request", "imei", "Send the device's imei or serial.")
    agent_version = _text(data, "agent_version", AGENT_VERSION_MAX)
    if agent_version is None:
        raise EnrollError("bad_request", "agent_version", "Send the agent_version.")
    token = _text(data, "token", TOKEN_MAX)
    return EnrollRequest(imei, serial, token, agent_version)


def _find_device(session: Session, req: EnrollRequest, profile_id: int | None) -> Device | None:
    """The device by IMEI/MEID, else by serial (a dual-SIM device may be known by either);
    limited to one profile when `profile_id` is given."""
    for column, value in ((Device.imei, req.imei), (Device.serial, req.serial)):
        if value is None:
            continue
        stmt = select(Device).where(column == value)
        if profile_id is not None:
            stmt = stmt.where(Device.profile_id == profile_id)
        device = session.scalar(stmt)
        if device is not None:
            return device
    return None


@dataclass(frozen=True, slots=True)
class _User:
    """The device's own user, else the profile's associated user (what the answer names)."""

    username: str
    email: str | None
    display_name: str | None


def _user_answer(user: _User | None, configured: str | None) -> dict[str, Any] | None:
    if user is not None:
        return {"username": user.username, "email": user.email, "display_name": user.display_name}
    if configured:  # the profile's agent "user" key, typed in the configuration
        return {"username": configured, "email": None, "display_name": None}
    return None


def _not_in_kme(profile: Profile, device: Device) -> bool:
    """KME cannot have handed this device this profile yet: the profile was never created in
    KME, or the device's own move into it still waits for the push."""
    if profile.kind != ProfileKind.KME:
        return False  # self-maintained profiles never go through KME
    return profile.kme_profile_id is None or device.sync_state != SyncState.SYNCED


# Built once: the hot path runs the same statements for every device (bound values only), and
# reads plain columns (no ORM objects to load: most of what a lookup cost).
_DEVICE_COLUMNS = (
    "id", "imei", "serial", "model", "approval", "end_user_id", "enrollment_password_enc",
    "registered_at", "agent_version",
)  # fmt: skip
_PROFILE_COLUMNS = (
    "id", "name", "kind", "token", "token_expires_at", "without_token", "config", "secrets_enc",
    "kme_profile_id", "end_user_id",
)  # fmt: skip
_USER_COLUMNS = ("username", "email", "display_name")
_D, _P, _U = Device.__table__, Profile.__table__, EndUser.__table__
# On the driver's cursor (kmeweb.sqlutil.DriverStatement): SQLAlchemy's execution layer cost
# more than the database for these one-row statements, which run for every booted device.
_WITH_PROFILE = {
    key: DriverStatement(
        select(
            *(_D.c[name].label(f"d_{name}") for name in _DEVICE_COLUMNS),
            *(_P.c[name].label(f"p_{name}") for name in _PROFILE_COLUMNS),
            *(_U.c[name].label(f"u_{name}") for name in _USER_COLUMNS),
        )
        .select_from(
            _D.join(_P, _D.c.profile_id == _P.c.id).outerjoin(
                _U, _U.c.id == func.coalesce(_D.c.end_user_id, _P.c.end_user_id)
            )
        )
        .where(_D.c[key] == bindparam("ident"))
        .limit(1)
    )
    for key in ("imei", "serial")
}
_ROW = {
    name: i
    for i, name in enumerate(
        [f"d_{n}" for n in _DEVICE_COLUMNS]
        + [f"p_{n}" for n in _PROFILE_COLUMNS]
        + [f"u_{n}" for n in _USER_COLUMNS]
    )
}
_TABLE = Device.__table__
# updated_at is set as the column's onupdate would (DriverStatement runs no Python defaults).
_FIRST_REGISTRATION = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("device_id"), _TABLE.c.registered_at.is_(None))
    .values(
        registered_at=bindparam("at"),
        agent_version=bindparam("b_agent_version"),
        updated_at=bindparam("at"),
    )
)
_AGENT_VERSION = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("device_id"))
    .values(agent_version=bindparam("b_agent_version"), updated_at=bindparam("at"))
)
_AUDIT = AuditEvent.__table__


def _in_one_statement(change: Any, action: str) -> DriverStatement:
    """PostgreSQL: `change` (a device UPDATE) with everything written with it, as ONE statement
    (a data-modifying WITH) that returns the device's id when the UPDATE matched it: its audit
    event, its history row (`history.accepted_enrollments`) and, for a first registration,
    its profile's registered count (`kept_counts.REGISTERED`), each only when the UPDATE
    matched. Atomic on its own, so it runs autocommitted: one round trip, no BEGIN or COMMIT.
    The profile row is written last, after the device row (kmeweb.profiles.counts' lock
    order)."""
    changed = change.returning(_TABLE.c.id).cte("changed")
    audit_rows = select(
        bindparam("at", type_=_AUDIT.c.at.type),
        literal("device"),
        literal(action),
        literal("device"),
        cast(changed.c.id, String),
        bindparam("audit_details", type_=_AUDIT.c.details.type),
        bindparam("ip", type_=_AUDIT.c.ip.type),
    ).select_from(changed)
    columns = ["at", "actor", "action", "target_type", "target_id", "details", "ip"]
    ctes = [
        insert(_AUDIT).from_select(columns, audit_rows).cte("audited"),
        history.accepted_enrollments(changed).cte("recorded"),
    ]
    if action == "device.register":
        counted = kept_counts.REGISTERED.where(exists(select(changed.c.id)))
        ctes.append(counted.cte("counted"))
    return DriverStatement(select(changed.c.id).add_cte(*ctes))


# action: (the UPDATE alone, the UPDATE with all it writes as one PostgreSQL statement)
_CHANGES = {
    "device.register": (
        DriverStatement(_FIRST_REGISTRATION),
        _in_one_statement(_FIRST_REGISTRATION, "device.register"),
    ),
    "device.agent_version": (
        DriverStatement(_AGENT_VERSION),
        _in_one_statement(_AGENT_VERSION, "device.agent_version"),
    ),
}
_REGISTERED_AT = select(_TABLE.c.registered_at).where(_TABLE.c.id == bindparam("device_id"))
_USER = DriverStatement(
    select(*(_U.c[name] for name in _USER_COLUMNS)).where(_U.c.id == bindparam("user_id"))
)


@dataclass(slots=True)
class _Found:
    """The columns of the device that enrollment reads and writes."""

    id: int
    imei: str | None
    serial: str | None
    model: str | None
    end_user_id: int | None
    enrollment_password_enc: str | None
    registered_at: datetime | None
    agent_version: str | None

    @classmethod
    def of(cls, device: Device) -> _Found:
        return cls(*(getattr(device, name) for name in _FOUND_FIELDS))


_FOUND_FIELDS = tuple(n for n in _DEVICE_COLUMNS if n != "approval")


def _fast_path(conn: Connection, req: EnrollRequest) -> _Checked | None:
    """The usual case in one query: the device with its profile and its user, and the token
    it sent is that profile's, valid and synced. None for anything else (`_check` then finds
    the answer). The profile is a transient object (never in a session) for admin_extras."""
    if req.token is None:
        return None
    for key, value in (("imei", req.imei), ("serial", req.serial)):
        if value is None:
            continue
        rows = _WITH_PROFILE[key].rows(conn, {"ident": value})
        if not rows:
            continue
        row = rows[0]
        profile = _transient_profile(row)
        if (
            token_matches(req.token, profile.token)
            and not token_expired(profile)
            and row[_ROW["d_approval"]] == Approval.APPROVED
            and not (profile.kind == ProfileKind.KME and profile.kme_profile_id is None)
        ):
            device = _Found(*(row[_ROW[f"d_{name}"]] for name in _FOUND_FIELDS))
            username = row[_ROW["u_username"]]
            user = None
            if username is not None:
                user = _User(username, row[_ROW["u_email"]], row[_ROW["u_display_name"]])
            return device, profile, user
        return None
    return None


_Checked = tuple[_Found, Profile, _User | None]
_PROFILE_CLASS = manager_of_class(Profile)
_PROFILE_MAPPER = Profile.__mapper__
_PROFILE_ROW = tuple((name, _ROW[f"p_{name}"]) for name in _PROFILE_COLUMNS)


def _transient_profile(row: tuple[Any, ...]) -> Profile:
    """The profile columns of a `_WITH_PROFILE` row as a Profile in no session, made as the
    ORM makes the objects it loads (no __init__, no attribute events: a third of the lane's
    cost of building it), for `admin_extras` and the token checks to read."""
    if not _PROFILE_MAPPER.configured:  # as Profile() would: the ORM's setup, done once
        configure_mappers()
    profile = _PROFILE_CLASS.new_instance()
    profile.__dict__.update((name, row[i]) for name, i in _PROFILE_ROW)
    return profile


def _check(conn: Connection, req: EnrollRequest) -> _Checked:
    """The device, profile and user of a request that may enroll; else the EnrollError saying
    why (the module docstring gives the order and what each answer reveals). Anything but
    the usual case is read through the ORM, on a Session over `conn`."""
    found = _fast_path(conn, req)
    if found is not None:
        return found
    with Session(bind=conn) as session:
        device, profile = _check_slowly(session, req)
    user_id = device.end_user_id or profile.end_user_id
    rows = _USER.rows(conn, {"user_id": user_id}) if user_id else []
    return device, profile, _User(*rows[0]) if rows else None


def _check_slowly(session: Session, req: EnrollRequest) -> tuple[_Found, Profile]:
    """`_check` for every case but the usual one."""
    if req.token is not None:
        profile = profile_for_token(session, req.token)
        if profile is None:
            raise EnrollError("token_invalid")
        device = _find_device(session, req, profile.id)
        known = device.id if device is not None else None
        if token_expired(profile):
            raise EnrollError("token_expired", device_id=known)
        if device is None:
            raise EnrollError("unknown_device")
        if profile.kind == ProfileKind.KME and profile.kme_profile_id is None:
            raise EnrollError("profile_not_synced", device_id=known)
        return _Found.of(device), profile

    device = _find_device(session, req, None)
    if device is None:
        raise EnrollError("unknown_device")
    if device.approval != Approval.APPROVED or device.profile_id is None:
        raise EnrollError("not_approved", device_id=device.id)
    profile = session.get(Profile, device.profile_id)
    if profile is None or profile.kind == ProfileKind.KME_DEFAULT:
        raise EnrollError("no_profile", device_id=device.id)
    if not profile.without_token:
        # The agent of a device whose profile move KME has not received yet holds no token or
        # an old profile's: ask it to retry rather than call its setup wrong.
        if _not_in_kme(profile, device):
            raise EnrollError("profile_not_synced", device_id=device.id)
        raise EnrollError("token_required", device_id=device.id)
    if _not_in_kme(profile, device):
        raise EnrollError("profile_not_synced", device_id=device.id)
    return _Found.of(device), profile


def enroll_device(
    conn: Connection, req: EnrollRequest, ip: str | None, server_url: str | Callable[[], str]
) -> dict[str, Any]:
    """Check an enrollment request and register the device; returns the answer for the agent.

    Takes a Connection, not a Session: this is the device side's hot path, and a Session's
    bookkeeping cost more than the enrollment's SQL (the unusual cases get a Session over
    `conn`). Writes in `conn`'s transaction and never commits; on PostgreSQL `conn` may be
    autocommitted, each write being one statement (`_change`).

    The answer carries the server URL (the profile's, else `server_url`, which may be a function
    giving it: building this server's URL from the request costs), the device, its user
    (the device's, else the profile's associated user), the enrollment password and the
    profile's admin-extras bundle *with* its secrets (the only place secrets leave kmeweb).
    Marks the device registered (first time: registered_at and agent_version, audited
    "device.register"; a new agent version later: audited "device.agent_version"; each
    accepted enrollment: a history row). Raises EnrollError.
    """
    device, profile, user = _check(conn, req)
    username = user.username if user else None
    bundle = profile_bundle.admin_extras(profile, username)
    password = crypto.decrypt(device.enrollment_password_enc)
    first = _register(conn, device, profile, req, ip)
    return {
        "status": "registered",
        "first_registration": first,
        "registered_at": device.registered_at.isoformat().replace("+00:00", "Z")
        if device.registered_at
        else None,
        "server_url": bundle.get("server_url")
        or (server_url() if callable(server_url) else server_url),
        "device": {"imei": device.imei, "serial": device.serial, "model": device.model},
        "user": _user_answer(user, bundle.get("user")),
        "enrollment_password": password,
        "profile": {
            "name": profile.name,
            "type": profile.kind,
            "token_required": not profile.without_token,
        },
        "config": dict(sorted(bundle.items())),
    }


def _register(
    conn: Connection, device: _Found, profile: Profile, req: EnrollRequest, ip: str | None
) -> bool:
    """Record the registration; True the first time. Conditional UPDATEs (not the ORM's
    versioned one): two agents' retries at once both succeed and the first time is set once.
    The device's `version` is not bumped, so an admin editing the device meanwhile is not
    told it changed: enrollment writes only the registration columns.

    A first registration writes the device, its audit event, its history row and its
    profile's registered count together (`_change`); a new agent version the device, its
    audit event and its history row; a repeat only its history row."""
    now = utcnow()
    history_details: dict[str, Any] = {"agent_version": req.agent_version, "ip": ip}
    first = changed = False
    if device.registered_at is None:  # else a repeat: the UPDATE could only match nothing
        first = changed = _change(
            conn,
            "device.register",
            {"device_id": device.id, "at": now, "b_agent_version": req.agent_version},
            {"profile": profile.name, "agent_version": req.agent_version},
            {**history_details, "first": True},
            profile.id,
            ip,
        )
        if first:
            device.registered_at = now
        else:  # another request registered it a moment ago
            device.registered_at = conn.scalar(_REGISTERED_AT, {"device_id": device.id})
    if not first and device.agent_version != req.agent_version:
        changed = _change(
            conn,
            "device.agent_version",
            {"device_id": device.id, "at": now, "b_agent_version": req.agent_version},
            {"old": device.agent_version, "new": req.agent_version},
            history_details,
            profile.id,
            ip,
        )
    if not changed:
        history.record_enrollment(conn, device.id, True, history_details)
    device.agent_version = req.agent_version
    return first


def _change(
    conn: Connection,
    action: str,
    params: dict[str, Any],
    audit_details: dict[str, Any],
    history_details: dict[str, Any],
    profile_id: int,
    ip: str | None,
) -> bool:
    """Run the device UPDATE of `action` and, when it changed the row, its audit event, its
    history row and (a first registration) its profile's registered count: one statement on
    PostgreSQL, up to four elsewhere, in `conn`'s transaction. True when it changed the
    row."""
    alone, together = _CHANGES[action]
    if conn.dialect.name == "postgresql":
        audited = redact_details(audit_details)  # as audit.record_device_event does
        values = {"audit_details": audited, "details": history_details, "ip": ip}
        return bool(together.rows(conn, {**params, **values, "pid": profile_id}))
    if not alone.rowcount(conn, params):
        return False
    audit.record_device_event(conn, action, params["device_id"], audit_details, ip)
    history.record_enrollment(conn, params["device_id"], True, history_details)
    if action == "device.register":
        kept_counts.registered(conn, profile_id)
    return True


def record_refusal(conn: Connection | Session, err: EnrollError, ip: str | None) -> bool:
    """The refused attempt of a known device (`err.device_id`) in its history, with the code,
    and as the device's last refusal. False (nothing written) for a request that named no
    known device. Flushes nothing through the ORM; never commits."""
    if err.device_id is None:
        return False
    history.record_enrollment(
        conn, err.device_id, False, {"code": err.code, "message": err.message, "ip": ip}
    )
    return True
