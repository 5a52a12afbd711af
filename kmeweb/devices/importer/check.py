"""Import devices, step 2: the database's rules. What each checked row does, given where its
device already is:

- nowhere: a new device of the profile ("new");
- in this profile: its user and password are updated ("updated") or nothing changes
  ("unchanged");
- in another Self-Maintained profile: it moves here ("moved from another profile"; both are
  local to kmeweb, so a move is only a change of profile);
- in a Knox profile (the Samsung KME Default Profile or a KME profile), or waiting for approval
  in a reseller upload: an error. Those devices belong to Knox; taking them into a local
  profile would leave KME handing them another profile's data. Unassign and Delete them there
  first.

The username column (when the file has one) sets each device's user: an empty cell leaves the
device without a user (and without a password). An enrollment password needs a username on its
row; a row without one keeps the password stored, unless its user is cleared.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, any_, bindparam, func, select, text
from sqlalchemy import column as column_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from kmeweb.csvimport import RowError, shown
from kmeweb.devices.importer.parse import ParsedRow
from kmeweb.devices.models import Approval, Device
from kmeweb.directory.models import EndUser
from kmeweb.errors import Conflict, NotFound
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sqlutil import chunks

CHUNK = 900  # values per IN (...) list, below SQLite's variable limit
PROGRESS_EVERY = 5000  # rows per lookup batch
NEW, MOVED, UPDATED, UNCHANGED = "new", "moved", "updated", "unchanged"
ACTIONS = (NEW, MOVED, UPDATED, UNCHANGED)


@dataclass(slots=True)
class _Known:
    id: int
    imei: str | None
    serial: str | None
    profile_id: int | None
    approval: str
    version: int
    end_user_id: int | None
    has_password: bool


@dataclass
class Plan:
    """What each row does to the database, and the errors the database state causes."""

    new: list[tuple[ParsedRow, int | None]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    moved_from: Counter = field(default_factory=Counter)
    # The row numbers of the rows that name a device the database holds.
    found: list[int] = field(default_factory=list)


def get_profile(session: Session, profile_id: int) -> Profile:
    """The Self-Maintained profile devices are imported into. Raises NotFound or Conflict."""
    profile = session.get(Profile, profile_id)
    if profile is None:
        raise NotFound("No such profile.")
    if profile.kind != ProfileKind.SELF_MAINTAINED:
        raise Conflict("Devices are imported into Self-Maintained profiles only.")
    return profile


def _user_ids(session: Session, names: set[str]) -> dict[str, int]:
    """{lower-cased username: id} of the users named (all users read at once when many)."""
    found: dict[str, int] = {}
    stmt = select(EndUser.id, EndUser.username)
    if len(names) > 5000:
        rows: Iterable[Any] = session.execute(stmt)
    else:
        lowered = sorted(names)
        rows = (
            r
            for chunk in chunks(lowered, CHUNK)
            for r in session.execute(stmt.where(func.lower(EndUser.username).in_(chunk)))
        )
    for user_id, username in rows:
        key = username.lower()
        if key in names and key not in found:
            found[key] = user_id
    return found


def _in_list(session: Session, column: Any, values: Sequence[str]) -> Any:
    """`column IN values` as one bound parameter, whatever the number of values: a JSON array
    read by json_each on SQLite, an array with = ANY on PostgreSQL (one cached statement
    instead of an IN list per chunk)."""
    dialect = session.get_bind(mapper=Device).dialect.name
    if dialect == "postgresql":
        return column == any_(bindparam("values", list(values), type_=ARRAY(String)))
    each = select(column_("value")).select_from(
        text("json_each(:values)").bindparams(values=json.dumps(list(values)))
    )
    return column.in_(each.scalar_subquery())


def _known(session: Session, column: Any, values: list[str]) -> dict[str, _Known]:
    out: dict[str, _Known] = {}
    stmt = select(
        Device.id,
        Device.imei,
        Device.serial,
        Device.profile_id,
        Device.approval,
        Device.version,
        Device.end_user_id,
        Device.enrollment_password_enc.is_not(None),
    )
    if not values:
        return out
    for r in session.execute(stmt.where(_in_list(session, column, values))):
        known = _Known(*r)
        out[getattr(known, column.key)] = known
    return out


def plan_import(
    session: Session,
    profile: Profile,
    rows: Sequence[ParsedRow],
    has_user: bool,
    progress: Callable[[int], None] | None = None,
    look_up: Collection[int] | None = None,
) -> Plan:
    """Decide what each row does given the database now (see the module docstring), reading
    only the devices and users the rows name, PROGRESS_EVERY rows at a time.

    `look_up` (row numbers) limits the device reads to those rows; the others are
    planned as new devices (their users are still looked up). It is for the import job, which
    looks up again only the rows its preview found in the database: a device that appeared
    since for any other row makes the unique IMEI or serial refuse the insert (IntegrityError),
    and the job then plans every row again."""
    plan = Plan()
    profiles = {
        pid: (kind, name)
        for pid, kind, name in session.execute(select(Profile.id, Profile.kind, Profile.name))
    }
    spelled = {r.username for r in rows if r.username}  # as written: few, repeated
    users = _user_ids(session, {name.lower() for name in spelled})
    user_of = {name: users.get(name.lower()) for name in spelled}
    new = plan.new
    found = plan.found
    for start in range(0, len(rows), PROGRESS_EVERY):
        batch = rows[start : start + PROGRESS_EVERY]
        asked = batch
        if look_up is not None:
            asked = [r for r in batch if r.row in look_up] if look_up else []
        by_imei = _known(session, Device.imei, [r.imei for r in asked if r.imei])
        by_serial = _known(session, Device.serial, [r.serial for r in asked if r.serial])
        for r in batch:
            number, imei, serial, username, _ = r
            if (imei is None or imei not in by_imei) and (
                serial is None or serial not in by_serial
            ):  # the common case, quickly: a device kmeweb does not know yet
                if username is None:
                    new.append((r, None))
                    continue
                user_id = user_of[username]
                if user_id is not None:
                    new.append((r, user_id))
                    continue
            else:
                found.append(number)
            _plan_row(plan, profile, profiles, users, has_user, r, by_imei, by_serial)
        if progress is not None:
            progress(len(batch))
    plan.counts[NEW] = len(plan.new)
    return plan


def _plan_row(
    plan: Plan,
    profile: Profile,
    profiles: dict[int, tuple[str, str]],
    users: dict[str, int],
    has_user: bool,
    r: ParsedRow,
    by_imei: dict[str, _Known],
    by_serial: dict[str, _Known],
) -> None:
    def bad(column: str, value: str | None, reason: str) -> None:
        plan.errors.append(RowError(r.row, column, shown(value or ""), reason))

    user_id = None
    if r.username:
        user_id = users.get(r.username.lower())
        if user_id is None:
            bad("username", r.username, "No such user: add it in Admin › Users first.")
            return
    a = by_imei.get(r.imei) if r.imei else None
    b = by_serial.get(r.serial) if r.serial else None
    if a is not None and b is not None and a.id != b.id:
        bad("serial", r.serial, f"Another device has this serial number (not IMEI {r.imei}).")
        return
    known = a or b
    if known is None:
        plan.new.append((r, user_id))
        return
    column, value = ("imei", r.imei) if a is not None else ("serial", r.serial)
    if r.imei and known.imei and known.imei != r.imei:
        bad("imei", r.imei, f"The device with serial number {r.serial} has IMEI {known.imei}.")
        return
    if r.serial and known.serial and known.serial != r.serial:
        bad("serial", r.serial, f"The device with IMEI {r.imei} has serial {known.serial}.")
        return
    if known.approval != Approval.APPROVED or known.profile_id is None:
        bad(
            column,
            value,
            "Waiting for approval in a reseller upload: this device belongs to Knox.",
        )
        return
    kind, name = profiles.get(known.profile_id, ("", ""))
    if kind != ProfileKind.SELF_MAINTAINED:
        bad(
            column,
            value,
            f"In the Knox profile “{name}”: a Knox device cannot join a self-maintained "
            "profile (Unassign and Delete it there first).",
        )
        return
    target_user = user_id if has_user else known.end_user_id
    clear_password = target_user is None and known.has_password
    change = {
        "b_id": known.id,
        "b_version": known.version,
        "profile_id": profile.id,
        "imei": known.imei or r.imei,
        "serial": known.serial or r.serial,
        "end_user_id": target_user,
        "password": r.password,
        "clear_password": clear_password,
        # What it was before (its history's from → to; not written to the device).
        "was_profile_id": known.profile_id,
        "was_user_id": known.end_user_id,
    }
    if known.profile_id != profile.id:
        plan.counts[MOVED] += 1
        plan.moved_from[known.profile_id] += 1
    elif (
        target_user != known.end_user_id
        or r.password
        or clear_password
        or change["imei"] != known.imei
        or change["serial"] != known.serial
    ):
        plan.counts[UPDATED] += 1
    else:
        plan.counts[UNCHANGED] += 1
        return
    plan.changes.append(change)
