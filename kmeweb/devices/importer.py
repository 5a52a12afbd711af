"""Import devices: a CSV file into a Self-Maintained profile, previewed first, then applied all
or nothing by a background job (design.md 1 step 6 and 6.4).

1. `preview_import` reads the upload as a stream (kmeweb.csvimport: size and row limits while
   reading, UTF-8 with or without BOM or Latin-1, the header), checks every row (IMEI Luhn,
   MEID, serial rules, duplicates inside the file, password rules) and then the database
   (unknown usernames; devices already somewhere). It keeps what it parsed in Redis under an
   unguessable token bound to the admin and the profile, encrypted, for CSV_PREVIEW_TTL_S, and
   returns the counts and every error. Nothing is written to the database.
2. `start_import` (Confirm import, only for a preview without errors) adds the operation whose
   job (`import_job`) checks the rows against the database again, with progress, and then
   writes every device in one transaction: a failure half way leaves the database as it was.

Where a device already is decides what its row does:
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
row; a row without one keeps the password stored, unless its user is cleared. Passwords are
stored encrypted (kmeweb.crypto) and never shown or exported again.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from flask import current_app
from sqlalchemy import Integer, String, any_, bindparam, func, literal, select, text, update
from sqlalchemy import column as column_
from sqlalchemy.exc import CompileError
from sqlalchemy.orm import Session

from kmeweb import crypto, csvimport, gcpause
from kmeweb.audit import services as audit
from kmeweb.csvimport import RowError, shown
from kmeweb.devices.models import Approval, Device
from kmeweb.directory.models import EndUser
from kmeweb.directory.services import USERNAME_MAX
from kmeweb.errors import Conflict, NotFound
from kmeweb.extensions import utcnow
from kmeweb.knox import ids
from kmeweb.operations import dispatch
from kmeweb.operations import queue as rq_queue
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation, OperationKind, OperationStatus
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sync.models import SyncState
from kmeweb.text import count

COLUMNS = ("imei", "serial", "username", "enrollment_password")
ID_COLUMNS = ("imei", "serial")
TEMPLATE_ROW = ("356938035643809", "R58M12ABCDE", "jane.doe", "Change-me-2026")
PASSWORD_MAX_BYTES = 245  # as kmeweb.devices.services: what Samsung's RSA encryption takes
CHUNK = 900  # values per IN (...) list, below SQLite's variable limit
PROGRESS_EVERY = 5000  # rows per lookup batch
PROGRESS_S = 0.5  # seconds between two progress commits
HIDDEN = "(hidden)"  # what a report shows instead of a password
KEY_PREFIX = "kmeweb:device-import:"
ERRORS_SHOWN = 500  # errors a preview page lists; the CSV report has every one
STALE = "The devices changed since the preview"

_SPACE = re.compile(r"\s")
_SERIAL_FAST = re.compile(r"[A-Za-z0-9]{8,16}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NEW, MOVED, UPDATED, UNCHANGED = "new", "moved", "updated", "unchanged"
ACTIONS = (NEW, MOVED, UPDATED, UNCHANGED)


@dataclass(slots=True)
class ParsedRow:
    """A row that passed the file's own rules (identifiers normalised)."""

    row: int
    imei: str | None
    serial: str | None
    username: str | None
    password: str | None


@dataclass
class Preview:
    """What Import devices found in a file; `token` names it for Confirm import."""

    token: str
    profile_id: int
    filename: str
    rows: int
    counts: dict[str, int]
    errors: list[RowError]
    message: str | None = None

    @property
    def error_count(self) -> int:
        return len(self.errors)

    @property
    def error_rows(self) -> int:
        return len({e.row for e in self.errors})

    @property
    def can_import(self) -> bool:
        return not self.errors and self.rows > 0


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


def template_rows() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Download template: the header and one example row."""
    return COLUMNS, [TEMPLATE_ROW]


def _looks_like_id(cell: str) -> bool:
    return ids.classify_id(cell).kind != "invalid" and any(ch.isdigit() for ch in cell)


def _id_error(column: str, raw: str) -> tuple[str | None, str]:
    """(why `raw` cannot stand in `column` or None, its normalised form)."""
    if column == "imei":
        if len(raw) == 15 and raw.isdigit() and raw.isascii():  # the common case, quickly
            if ids.luhn_check_digit(raw[:14]) == ord(raw[14]) - 48:
                return None, raw
    elif _SERIAL_FAST.fullmatch(raw) and not raw.isdigit():  # letters: never an IMEI
        return None, raw.upper()
    found = ids.classify_id(raw)
    if column == "imei":
        if found.kind in ("imei", "meid"):
            return None, found.value
        return _imei_error(raw, found), raw
    if found.kind == "imei":
        return "This is an IMEI: put it in the imei column.", raw
    serial = ids.normalize_serial(raw)
    if ids.is_valid_serial(serial):
        return None, serial
    return "A serial number has 8 to 16 letters and digits.", raw


def _imei_error(raw: str, found: ids.ClassifiedId) -> str:
    """Why `raw` is no IMEI or MEID, in the words an admin can act on."""
    if raw.isdigit() and len(raw) == 15:
        return "The IMEI check digit (Luhn) is wrong: check the number."
    if len(raw) == 14 and all(ch in "0123456789abcdefABCDEF" for ch in raw):
        return "An MEID's first two hexadecimal digits are A0 to FF."
    if found.kind == "serial" and not raw.isdigit():
        return "This looks like a serial number: put it in the serial column."
    return "An IMEI has 15 digits (an MEID 14 hexadecimal digits starting A0 to FF)."


def _unique_id(
    number: int, column: str, raw: str, seen: dict[tuple[str, str], int], problems: list
) -> str | None:
    """The row's checked identifier, or None with its problem recorded (invalid, or already on
    an earlier row of the file)."""
    reason, value = _id_error(column, raw)
    if reason:
        problems.append(RowError(number, column, shown(raw), reason))
        return None
    first = seen.get((column, value))
    if first is not None:
        problems.append(RowError(number, column, value, f"Also on row {first} of this file."))
        return None
    seen[column, value] = number
    return value


def _check_row(
    row: csvimport.Row, seen: dict[tuple[str, str], int]
) -> tuple[ParsedRow | None, list[RowError]]:
    """A row checked by the file's own rules; `seen` holds the identifiers of earlier rows.
    (Written for speed: 200,000 rows go through it.)"""
    cells = row.cells
    number = row.number
    problems: list[RowError] = []
    if row.extra:
        problems.append(
            RowError(number, "", shown(",".join(row.extra)), "More cells than the header has.")
        )
    imei_raw = (cells.get("imei") or "").strip()
    serial_raw = (cells.get("serial") or "").strip()
    imei = _unique_id(number, "imei", imei_raw, seen, problems) if imei_raw else None
    serial = _unique_id(number, "serial", serial_raw, seen, problems) if serial_raw else None
    if not imei_raw and not serial_raw:
        problems.append(RowError(number, "imei", "", "Each row needs an IMEI or a serial number."))
    username = cells.get("username") or None
    if username is not None:
        username = username.strip() or None
        if username is None:
            pass
        elif len(username) > USERNAME_MAX:
            problems.append(
                RowError(
                    number,
                    "username",
                    shown(username),
                    f"A username has at most {USERNAME_MAX} characters.",
                )
            )
        elif _SPACE.search(username):
            problems.append(RowError(number, "username", username, "A username has no spaces."))
    password = cells.get("enrollment_password") or None
    if password is not None:
        reason = _password_error(password, username)
        if reason == "":
            password = None
        elif reason:
            problems.append(RowError(number, "enrollment_password", HIDDEN, reason))
    if problems:
        return None, problems
    return ParsedRow(number, imei, serial, username, password), problems


def _password_error(password: str, username: str | None) -> str | None:
    """Why a password cannot be stored, None when it can, "" when the cell is only blanks."""
    if not password.strip():
        return ""
    if username is None:
        return "A password needs a username on its row."
    if len(password.encode()) > PASSWORD_MAX_BYTES:
        return f"A password has at most {PASSWORD_MAX_BYTES} bytes."
    if password != password.strip():
        return "A password cannot start or end with a space."
    if _CONTROL.search(password):
        return "A password cannot hold tabs or line breaks."
    return None


def check_file(
    stream: IO[bytes], max_bytes: int, max_rows: int
) -> tuple[list[ParsedRow], list[RowError], bool]:
    """The rows of an upload and the errors of the file's own rules (not the database's).

    Returns (rows, errors, has_username_column). Raises ImportRejected for a file that
    cannot be read at all (too large, too many rows, not text, bad header, no rows).
    """
    rows: list[ParsedRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str], int] = {}
    has_user = None
    for row in csvimport.read_rows(
        stream, COLUMNS, ID_COLUMNS, max_bytes, max_rows, _looks_like_id
    ):
        if has_user is None:
            has_user = "username" in row.cells
        parsed, problems = _check_row(row, seen)
        if problems:
            errors.extend(problems)
        else:
            rows.append(parsed)
    return rows, errors, bool(has_user)


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


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
            for chunk in _chunks(lowered)
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
        from sqlalchemy.dialects.postgresql import ARRAY

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
) -> Plan:
    """Decide what each row does given the database now (see the module docstring), reading
    only the devices and users the rows name, PROGRESS_EVERY rows at a time."""
    plan = Plan()
    profiles = {
        pid: (kind, name)
        for pid, kind, name in session.execute(select(Profile.id, Profile.kind, Profile.name))
    }
    names = {r.username.lower() for r in rows if r.username}
    users = _user_ids(session, names)
    for batch in _chunks(list(rows), PROGRESS_EVERY):
        by_imei = _known(session, Device.imei, [r.imei for r in batch if r.imei])
        by_serial = _known(session, Device.serial, [r.serial for r in batch if r.serial])
        new = plan.new
        for r in batch:
            if (r.imei is None or r.imei not in by_imei) and (
                r.serial is None or r.serial not in by_serial
            ):  # the common case, quickly: a device kmeweb does not know yet
                if r.username is None:
                    new.append((r, None))
                    continue
                user_id = users.get(r.username.lower())
                if user_id is not None:
                    new.append((r, user_id))
                    continue
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


# -- the preview, kept server side ----------------------------------------------------------


def _redis():
    return rq_queue.redis_connection()


def _key(token: str) -> str:
    return KEY_PREFIX + token


def _store(token: str, data: dict[str, Any]) -> None:
    blob = crypto.encrypt_bytes(zlib.compress(json.dumps(data).encode(), 1))
    ttl = max(1, int(current_app.config["CSV_PREVIEW_TTL_S"]))
    _redis().set(_key(token), blob, ex=ttl)


def _load(token: str) -> dict[str, Any] | None:
    if not token or len(token) > 64:
        return None
    blob = _redis().get(_key(token))
    if blob is None:
        return None
    try:
        with gcpause.paused():  # a preview of 100,000 rows is as many lists
            return json.loads(zlib.decompress(crypto.decrypt_bytes(blob)))
    except ValueError:
        return None


def load_preview(token: str, profile_id: int, actor: Any) -> dict[str, Any]:
    """The stored preview of this admin for this profile. Raises NotFound when it expired,
    never existed or belongs to someone else (all look the same)."""
    data = _load(token)
    if (
        data is None
        or data.get("admin_id") != operations.actor_id(actor)
        or data.get("profile_id") != profile_id
    ):
        raise NotFound("This preview has expired; upload the file again.")
    return data


def get_profile(session: Session, profile_id: int) -> Profile:
    """The Self-Maintained profile devices are imported into. Raises NotFound or Conflict."""
    profile = session.get(Profile, profile_id)
    if profile is None:
        raise NotFound("No such profile.")
    if profile.kind != ProfileKind.SELF_MAINTAINED:
        raise Conflict("Devices are imported into Self-Maintained profiles only.")
    return profile


def preview_import(
    session: Session, profile_id: int, stream: IO[bytes], filename: str, actor: Any
) -> Preview:
    """Check an upload for Import devices and keep what it holds for Confirm import.

    Returns the Preview (counts, every error). Writes nothing to the database. Raises
    NotFound/Conflict (profile) or ImportRejected for a file that cannot be read at all.
    """
    profile = get_profile(session, profile_id)
    with gcpause.paused():
        return _preview(session, profile, stream, filename, actor)


def _preview(
    session: Session, profile: Profile, stream: IO[bytes], filename: str, actor: Any
) -> Preview:
    config = current_app.config
    rows, errors, has_user = check_file(stream, config["CSV_MAX_BYTES"], config["CSV_MAX_ROWS"])
    plan = plan_import(session, profile, rows, has_user)
    session.rollback()  # end the read transaction; nothing was written
    total = len(rows) + len({e.row for e in errors})
    errors = sorted([*errors, *plan.errors], key=lambda e: (e.row, COLUMNS_ORDER.get(e.column, 9)))
    counts = {action: plan.counts.get(action, 0) for action in ACTIONS}
    token = secrets.token_urlsafe(24)
    name = (filename or "devices.csv")[:200]
    _store(
        token,
        {
            "admin_id": operations.actor_id(actor),
            "profile_id": profile.id,
            "filename": name,
            "counts": counts,
            "has_user": has_user,
            "total": total,
            "errors": [[e.row, e.column, e.value, e.reason] for e in errors],
            # The rows only when they can be imported: a file with errors is never applied.
            "rows": []
            if errors
            else [[r.row, r.imei, r.serial, r.username, r.password] for r in rows],
        },
    )
    return Preview(token, profile.id, name, total, counts, errors)


COLUMNS_ORDER = {name: i for i, name in enumerate(("", *COLUMNS))}


def preview_from(token: str, data: dict[str, Any]) -> Preview:
    errors = [RowError(*e) for e in data["errors"]]
    return Preview(
        token, data["profile_id"], data["filename"], data["total"], data["counts"], errors
    )


def error_report(data: dict[str, Any]) -> Iterable[tuple[Any, ...]]:
    """The rows of the downloadable error report (Row, Column, Value, Reason)."""
    for e in data["errors"]:
        yield tuple(e)


REPORT_HEADER = ("Row", "Column", "Value", "Reason")


def start_import(session: Session, profile_id: int, token: str, actor: Any) -> Operation:
    """Confirm import: the operation whose job applies the preview (enqueued after the commit).

    Confirming the same preview twice gives the same operation. Records audit
    "device.import.start". Raises NotFound (expired) or Conflict (the preview has errors).
    """
    profile = get_profile(session, profile_id)
    data = load_preview(token, profile.id, actor)
    if data["errors"] or not data["rows"]:
        raise Conflict("This file has errors; correct it and upload it again.")
    dedup = f"import:{token}"[:100]
    existing = session.scalar(select(Operation).where(Operation.dedup_key == dedup).limit(1))
    if existing is not None:
        return existing
    n = len(data["rows"])
    operation = operations.create_operation(
        session,
        OperationKind.DEVICE_IMPORT,
        f"Import {count(n, 'device')} into {profile.name}",
        n,
        actor,
        dedup_key=dedup,
    )
    audit.record(
        session,
        actor,
        "device.import.start",
        "profile",
        profile.id,
        {
            "file": data["filename"],
            "rows": n,
            "counts": data["counts"],
            "operation_id": operation.id,
        },
    )
    dispatch.after_commit(session, operation)
    return operation


# -- the job ---------------------------------------------------------------------------------


def apply_plan(session: Session, profile: Profile, plan: Plan) -> None:
    """Write every device of the plan (one executemany per statement shape). Flushes, never
    commits. Raises Conflict when a device changed since the plan was made."""
    now = utcnow()
    if plan.new:
        constants = {
            "model": None,
            "approval": str(Approval.APPROVED),
            "profile_id": profile.id,
            "attributes": {},
            "sync_state": str(SyncState.SYNCED),
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        insert_rows(
            session,
            Device.__table__,
            ("imei", "serial", "end_user_id", "enrollment_password_enc"),
            (
                (r.imei, r.serial, user_id, crypto.encrypt(r.password) if r.password else None)
                for r, user_id in plan.new
            ),
            constants,
        )
    table = Device.__table__
    with_password = []
    keep_password = []
    for c in plan.changes:
        values = {k: v for k, v in c.items() if k not in ("password", "clear_password")}
        if c["password"] or c["clear_password"]:
            values["b_password"] = crypto.encrypt(c["password"]) if c["password"] else None
            with_password.append(values)
        else:
            keep_password.append(values)
    changed = 0
    for params, extra in (
        (with_password, {"enrollment_password_enc": bindparam("b_password")}),
        (keep_password, {}),
    ):
        if not params:
            continue
        result = session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.version == bindparam("b_version"))
            .values(
                profile_id=bindparam("profile_id"),
                imei=bindparam("imei"),
                serial=bindparam("serial"),
                end_user_id=bindparam("end_user_id"),
                version=table.c.version + 1,
                updated_at=now,
                **extra,
            ),
            params,
        )
        changed += result.rowcount if result.rowcount is not None else 0
    if plan.changes and session.get_bind(mapper=Device).dialect.supports_sane_multi_rowcount:
        if changed != len(plan.changes):
            raise Conflict(f"{STALE}: {len(plan.changes) - changed:,} were changed meanwhile.")
    elif plan.changes:
        expected = {c["b_id"]: c["b_version"] + 1 for c in plan.changes}
        ok = 0
        for chunk in _chunks(list(expected)):
            for device_id, version in session.execute(
                select(Device.id, Device.version).where(Device.id.in_(chunk))
            ):
                ok += version == expected[device_id]
        if ok != len(expected):
            raise Conflict(f"{STALE}: {len(expected) - ok:,} were changed meanwhile.")
    session.flush()


def insert_rows(
    session: Session,
    table: Any,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    constants: dict[str, Any],
) -> None:
    """One driver-level executemany of `rows` (plain values for `columns`, no type to apply)
    plus `constants` (the same for every row: rendered once as SQL literals of their types)."""
    conn = session.connection(bind_arguments={"mapper": Device})
    dialect = conn.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    marks = [mark] * len(columns)
    for name, value in constants.items():
        marks.append(_sql_literal(dialect, table.c[name].type, value))
    names = [*columns, *constants]
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(marks)})"
    params = list(rows)
    if params:
        conn.exec_driver_sql(sql, params)


def _sql_literal(dialect: Any, type_: Any, value: Any) -> str:
    """`value` of a column of `type_` as SQL text, rendered by SQLAlchemy (quoted, escaped)."""

    def render(v: Any, t: Any) -> str:
        return str(literal(v, t).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    try:
        return render(value, type_)
    except CompileError:  # a type without a literal form (JSON, an untyped foreign key)
        if isinstance(value, dict | list):
            return render(json.dumps(value), String())  # a JSON column takes its text
        if isinstance(value, int) and not isinstance(value, bool):
            return render(value, Integer())
        raise


def run_import(
    session: Session,
    profile_id: int,
    data: dict[str, Any],
    actor: Any,
    operation_id: int | None = None,
) -> dict[str, int]:
    """Check the stored rows against the database again and write them all, or raise and
    write nothing. Progress (rows checked) is committed as it goes; the devices and the audit
    event "device.import" are flushed in the caller's transaction. Returns the counts.
    Raises NotFound/Conflict (profile gone, devices changed since the preview)."""
    profile = get_profile(session, profile_id)
    rows = [ParsedRow(*r) for r in data["rows"]]

    pending = [0, time.monotonic()]

    def progress(n: int) -> None:
        """Count checked rows; commit the count at most every PROGRESS_S (a commit costs)."""
        pending[0] += n
        if operation_id is not None and time.monotonic() - pending[1] >= PROGRESS_S:
            operations.add_progress(session, operation_id, pending[0])
            session.commit()
            pending[:] = [0, time.monotonic()]

    plan = plan_import(session, profile, rows, data["has_user"], progress)
    if operation_id is not None and pending[0]:
        operations.add_progress(session, operation_id, pending[0])  # commits with the devices
    if plan.errors:
        first = plan.errors[0]
        raise Conflict(
            f"{STALE} ({len(plan.errors):,} rows no longer fit, e.g. row {first.row}: "
            f"{first.reason}). Upload the file again; nothing was imported."
        )
    apply_plan(session, profile, plan)
    counts = {action: plan.counts.get(action, 0) for action in ACTIONS}
    audit.record(
        session,
        actor,
        "device.import",
        "profile",
        profile.id,
        {
            "file": data["filename"],
            "counts": counts,
            "moved_from": {str(pid): n for pid, n in plan.moved_from.items()},
            "passwords": sum(1 for r in rows if r.password),
            "operation_id": operation_id,
        },
    )
    session.flush()
    return counts


def import_job(operation_id: int) -> dict[str, int] | None:
    """Apply a confirmed preview (RQ job on the default queue). All or nothing: the devices,
    the audit event and the operation's "done" commit together; on any failure the operation
    is marked failed with the reason and nothing else is written. Idempotent: an operation
    that is no longer queued is left alone."""
    from kmeweb.auth.models import AdminUser
    from kmeweb.extensions import db

    session = db.session
    operation = session.get(Operation, operation_id)
    if operation is None or operation.status != OperationStatus.QUEUED:
        session.rollback()
        return None
    token = (operation.dedup_key or "").removeprefix("import:")
    actor = session.get(AdminUser, operation.created_by) if operation.created_by else None
    operations.mark_running(session, operation_id)
    session.commit()
    try:
        with gcpause.paused():
            data = _load(token)
            if data is None:
                raise NotFound("The preview expired before the import ran; upload the file again.")
            counts = run_import(session, data["profile_id"], data, actor or "system", operation_id)
            operations.finish(session, operation_id)
            session.commit()
    except Exception as exc:
        session.rollback()
        message = getattr(exc, "message", None) or f"The import failed: {exc}"
        operations.finish(session, operation_id, message)
        session.commit()
        if isinstance(exc, NotFound | Conflict):
            return None
        raise
    _redis().delete(_key(token))
    return counts
