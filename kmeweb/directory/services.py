"""End users that profiles and devices can be associated with."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from kmeweb import csvimport
from kmeweb.audit import services as audit
from kmeweb.csvimport import ImportRejected, RowError, shown  # noqa: F401  (ImportRejected: re-exported)
from kmeweb.devices.models import Device
from kmeweb.directory.models import EndUser
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.operations import services as operations
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import ChangeKind, SyncState
from kmeweb.profiles.models import Profile, ProfileKind

USERNAME_MAX = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def get_user_or_404(session: Session, end_user_id: int) -> EndUser:
    """Raises NotFound."""
    user = session.get(EndUser, end_user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def find_user(session: Session, username: str) -> EndUser | None:
    """The user with this username, compared case-insensitively."""
    name = (username or "").strip()
    if not name:
        return None
    return session.scalar(
        select(EndUser)
        .where(func.lower(EndUser.username) == name.lower())
        .order_by(EndUser.id)
        .limit(1)
    )


def get_or_create_user(
    session: Session,
    username: str,
    email: str | None = None,
    display_name: str | None = None,
) -> EndUser:
    """The user named `username` (case-insensitive), created if missing.

    A given email or display name replaces the stored one. Flushes; raises ValidationError
    (field "username", "email" or "display_name") for an empty or over-long value.
    """
    name = (username or "").strip()
    if not name:
        raise ValidationError("A username is required.", field="username")
    if len(name) > USERNAME_MAX:
        raise ValidationError(
            f"The username can have at most {USERNAME_MAX} characters.", field="username"
        )
    email = (email or "").strip() or None
    if email is not None and (len(email) > 254 or "@" not in email):
        raise ValidationError("Enter a valid email address.", field="email")
    display_name = (display_name or "").strip() or None
    if display_name is not None and len(display_name) > 200:
        raise ValidationError(
            "The display name can have at most 200 characters.", field="display_name"
        )
    user = find_user(session, name)
    if user is None:
        user = EndUser(username=name, email=email, display_name=display_name)
        session.add(user)
    else:
        if email is not None:
            user.email = email
        if display_name is not None:
            user.display_name = display_name
    session.flush()
    return user


def user_matches(q: str) -> Any:
    """Username, email or display name contains `q` (case-insensitive, wildcards literal)."""
    return or_(
        EndUser.username.icontains(q, autoescape=True),
        EndUser.email.icontains(q, autoescape=True),
        EndUser.display_name.icontains(q, autoescape=True),
    )


def search_users(session: Session, q: str, limit: int = 20) -> list[EndUser]:
    """Users whose username, email or display name contains `q` (case-insensitive), by name.

    An empty query returns the first `limit` users.
    """
    stmt = select(EndUser).order_by(EndUser.username).limit(max(1, min(limit, 200)))
    q = (q or "").strip()
    if q:
        stmt = stmt.where(user_matches(q))
    return list(session.scalars(stmt))


EMAIL_MAX = 254
DISPLAY_MAX = 200
CSV_COLUMNS = ("username", "email", "display_name")
# Header spellings of admins' spreadsheets (compared as csvimport.column_key has them).
CSV_ALIASES = {
    "user": "username",
    "user_name": "username",
    "e_mail": "email",
    "email_address": "email",
    "e_mail_address": "email",
    "mail": "email",
    "name": "display_name",
    "full_name": "display_name",
    "displayname": "display_name",
}
CSV_MAX_ROWS = 200_000


def usernames(session: Session, end_user_ids: Iterable[int | None]) -> dict[int, str]:
    """{end user id: username} for the ids given (one query)."""
    ids = sorted({i for i in end_user_ids if i is not None})
    if not ids:
        return {}
    rows = session.execute(select(EndUser.id, EndUser.username).where(EndUser.id.in_(ids)))
    return {user_id: username for user_id, username in rows}


def display_names(session: Session, end_user_ids: Iterable[int | None]) -> dict[int, str]:
    """{end user id: name} for the ids given, the username where a user has no name (one
    query): what a person reads, as on Bulk Enrollment's Associated User."""
    ids = sorted({i for i in end_user_ids if i is not None})
    if not ids:
        return {}
    rows = session.execute(
        select(EndUser.id, EndUser.display_name, EndUser.username).where(EndUser.id.in_(ids))
    )
    return {user_id: name or username for user_id, name, username in rows}


def users_query(search: str | None = None) -> Select:
    """End users for the Admin › Users list, by username; `search` as in search_users."""
    stmt = select(EndUser).order_by(func.lower(EndUser.username), EndUser.id)
    q = (search or "").strip()
    if q:
        stmt = stmt.where(user_matches(q))
    return stmt


def usage_counts(session: Session, user_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """{user id: (profiles, devices)} associated with each user, from two grouped queries."""
    ids = list(dict.fromkeys(user_ids))
    counts = {uid: [0, 0] for uid in ids}
    if ids:
        for uid, n in session.execute(
            select(Profile.end_user_id, func.count())
            .where(Profile.end_user_id.in_(ids))
            .group_by(Profile.end_user_id)
        ):
            counts[uid][0] = n
        for uid, n in session.execute(
            select(Device.end_user_id, func.count())
            .where(Device.end_user_id.in_(ids))
            .group_by(Device.end_user_id)
        ):
            counts[uid][1] = n
    return {uid: (p, d) for uid, (p, d) in counts.items()}


def _clean(data: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(username, email, display name) trimmed and checked. Raises ValidationError(field)."""
    username = str(data.get("username") or "").strip()
    if not username:
        raise ValidationError("A username is required.", field="username")
    if len(username) > USERNAME_MAX:
        raise ValidationError(f"At most {USERNAME_MAX} characters.", field="username")
    if any(ch.isspace() for ch in username):
        raise ValidationError("A username has no spaces.", field="username")
    email = str(data.get("email") or "").strip() or None
    if email is not None and (len(email) > EMAIL_MAX or not _EMAIL.match(email)):
        raise ValidationError("Enter a valid email address.", field="email")
    display = str(data.get("display_name") or "").strip() or None
    if display is not None and len(display) > DISPLAY_MAX:
        raise ValidationError(f"At most {DISPLAY_MAX} characters.", field="display_name")
    return username, email, display


def _taken(session: Session, username: str, exclude_id: int | None = None) -> bool:
    stmt = select(EndUser.id).where(func.lower(EndUser.username) == username.lower())
    if exclude_id is not None:
        stmt = stmt.where(EndUser.id != exclude_id)
    return session.scalar(stmt.limit(1)) is not None


def create_user(session: Session, data: Mapping[str, Any], actor: Any) -> EndUser:
    """Add an end user. Records audit "end_user.create". Flushes.
    Raises ValidationError (field "username", "email" or "display_name")."""
    username, email, display = _clean(data)
    if _taken(session, username):
        raise ValidationError("A user with this username exists.", field="username")
    user = EndUser(username=username, email=email, display_name=display)
    session.add(user)
    session.flush()
    audit.record(session, actor, "end_user.create", "end_user", user.id, {"username": username})
    return user


def update_user(session: Session, user_id: int, data: Mapping[str, Any], actor: Any) -> EndUser:
    """Change an end user. A new username reaches KME: the user's KME profiles get a
    profile.update and its devices in KME profiles a device.user change (one operation).
    Records audit "end_user.update". Flushes.
    Raises NotFound or ValidationError (field)."""
    user = get_user_or_404(session, user_id)
    username, email, display = _clean(data)
    if _taken(session, username, exclude_id=user.id):
        raise ValidationError("A user with this username exists.", field="username")
    changed = [
        name
        for name, old, new in (
            ("username", user.username, username),
            ("email", user.email, email),
            ("display_name", user.display_name, display),
        )
        if old != new
    ]
    if not changed:
        return user
    renamed = user.username != username
    user.username, user.email, user.display_name = username, email, display
    session.flush()
    if renamed:
        _push_rename(session, user, actor)
    audit.record(
        session,
        actor,
        "end_user.update",
        "end_user",
        user.id,
        {"username": username, "changed": changed},
    )
    return user


def patch_user(session: Session, user_id: int, changes: Mapping[str, Any], actor: Any) -> EndUser:
    """update_user with only the fields in `changes` (username, email, display_name; None
    clears email or display name); the others keep their value. Raises what update_user
    raises."""
    user = get_user_or_404(session, user_id)
    current = {"username": user.username, "email": user.email, "display_name": user.display_name}
    return update_user(session, user.id, {**current, **changes}, actor)


def _push_rename(session: Session, user: EndUser, actor: Any) -> None:
    profiles = list(
        session.scalars(
            select(Profile).where(Profile.end_user_id == user.id, Profile.kind == ProfileKind.KME)
        )
    )
    device_ids = list(
        session.scalars(
            select(Device.id)
            .join(Profile, Profile.id == Device.profile_id)
            .where(Device.end_user_id == user.id, Profile.kind == ProfileKind.KME)
            .order_by(Device.id)
        )
    )
    if not profiles and not device_ids:
        return
    label = f"Rename user {user.username} in KME"
    operation = operations.start_operation(
        session, ChangeKind.DEVICE_USER, label, len(profiles) + len(device_ids), actor
    )
    for profile in profiles:
        profile.sync_state = SyncState.PENDING
        session.flush()
        outbox.record_profile_change(session, ChangeKind.PROFILE_UPDATE, profile, operation, actor)
    if device_ids:
        outbox.mark_devices_pending(session, device_ids)
        outbox.record_device_change(session, ChangeKind.DEVICE_USER, device_ids, operation, actor)


def usage_words(session: Session, user: EndUser) -> str | None:
    """What still uses `user`, in words: 'profiles “Ops”, “Sales” and 1 device (3500…)';
    None when nothing does. Delete user says it before confirming and refuses with it."""
    names = list(
        session.scalars(
            select(Profile.name).where(Profile.end_user_id == user.id).order_by(Profile.name)
        )
    )
    devices = session.scalar(select(func.count()).where(Device.end_user_id == user.id)) or 0
    if not names and not devices:
        return None
    where = []
    if names:
        shown = ", ".join(f"“{n}”" for n in names[:5]) + (" …" if len(names) > 5 else "")
        where.append(f"profile{'s' if len(names) > 1 else ''} {shown}")
    if devices:
        sample = list(
            session.scalars(
                select(func.coalesce(Device.imei, Device.serial))
                .where(Device.end_user_id == user.id)
                .order_by(Device.id)
                .limit(3)
            )
        )
        more = " …" if devices > 3 else ""
        where.append(f"{devices:,} device{'s' if devices > 1 else ''} ({', '.join(sample)}{more})")
    return " and ".join(where)


def delete_user(session: Session, user_id: int, actor: Any) -> str:
    """Delete an end user no profile or device is associated with. Records audit
    "end_user.delete". Flushes. Returns the username.
    Raises NotFound, or Conflict saying where the user is still associated."""
    user = get_user_or_404(session, user_id)
    in_use = usage_words(session, user)
    if in_use:
        raise Conflict(f"{user.username} is still associated with {in_use}; change those first.")
    username = user.username
    audit.record(session, actor, "end_user.delete", "end_user", user.id, {"username": username})
    session.delete(user)
    session.flush()
    return username


def import_users(
    session: Session,
    raw: bytes | IO[bytes],
    actor: Any,
    max_bytes: int = 20 * 1024 * 1024,
    max_rows: int = CSV_MAX_ROWS,
) -> tuple[int, int]:
    """Import users from CSV (header row with username, email, display_name in any order and
    case; UTF-8 with or without BOM, or Latin-1), read as a stream by kmeweb.csvimport with
    the size and row limits. Existing usernames (case-insensitive) are updated.

    Every row is validated first; any bad row rejects the whole file (ImportRejected with a
    per-row report) and nothing is written. Records audit "end_user.import". Flushes.
    Returns (created, updated).
    """
    stream = io.BytesIO(raw) if isinstance(raw, bytes) else raw
    errors: list[RowError] = []
    rows: list[tuple[int, str, str | None, str | None]] = []
    seen: dict[str, int] = {}
    for row in csvimport.read_rows(
        stream, CSV_COLUMNS, ("username",), max_bytes, max_rows, aliases=CSV_ALIASES
    ):
        data = row.cells
        ragged = row.ragged_error()
        if ragged is not None:
            errors.append(ragged)
            continue
        try:
            username, email, display = _clean(data)
        except ValidationError as err:
            column = err.field or ""
            errors.append(
                RowError(row.number, column, shown(str(data.get(column, ""))), err.message)
            )
            continue
        key = username.lower()
        if key in seen:
            errors.append(
                RowError(
                    row.number,
                    "username",
                    username,
                    f"A duplicate of row {seen[key]} (the same username).",
                )
            )
            continue
        seen[key] = row.number
        rows.append((row.number, username, email, display))
    if errors:
        raise csvimport.rejected(errors[:500])

    existing: dict[str, EndUser] = {}
    keys = list(seen)
    for start in range(0, len(keys), 900):
        chunk = keys[start : start + 900]
        for user in session.scalars(select(EndUser).where(func.lower(EndUser.username).in_(chunk))):
            existing[user.username.lower()] = user
    created = updated = 0
    for _number, username, email, display in rows:
        user = existing.get(username.lower())
        if user is None:
            session.add(EndUser(username=username, email=email, display_name=display))
            created += 1
        elif (user.email, user.display_name) != (email or user.email, display or user.display_name):
            user.email = email or user.email
            user.display_name = display or user.display_name
            updated += 1
    session.flush()
    audit.record(
        session,
        actor,
        "end_user.import",
        "end_user",
        None,
        {"created": created, "updated": updated},
    )
    return created, updated
