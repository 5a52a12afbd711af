"""A device's history: one timeline, newest first, of what happened to it and who did it.

Three tables feed it. `device_event` holds one row per device per thing that happened to it
(uploaded, approved, moved, user, attributes, a push KME refused for this device, a change seen
in the Samsung portal, an enrollment attempt, deletion); `change_attempt` holds each attempt to
send an outbox change and Samsung's answer, and reaches a device through the `change_id` of its
events (one attempt row per change, not per device: a move of 500,000 devices writes 1,000
attempt rows, not 500,000); `audit_event` adds what was audited with the device as its target.

Writers (`record_events`) are set-based: one INSERT ... SELECT per chunk of ids (or per SELECT
of ids), with the same kind, actor and details for each device, never one ORM object per device:
bulk actions touch up to a million devices. The device_id has no foreign key, so the history
outlives the device (deletion is its last entry).

The reader (`device_history`) pages by keyset on (at, source, id): each source reads at most
one page past the cursor from its index, the pages are merged, and names (profiles, users,
rules) are looked up once per page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    JSON,
    Connection,
    Insert,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from kmeweb.audit.models import AuditEvent
from kmeweb.audit.readable import readable
from kmeweb.devices.models import Device, DeviceEvent, DeviceEventKind
from kmeweb.directory.models import EndUser
from kmeweb.extensions import UTCDateTime, utcnow
from kmeweb.integration.models import Reseller, Upload
from kmeweb.outbox.models import Change, ChangeAttempt, ChangeKind
from kmeweb.profiles.models import Profile
from kmeweb.redact import redact_details
from kmeweb.rules.models import RoutingRule
from kmeweb.sqlutil import DriverStatement, chunks, connection_of, grouped_rows, id_rows

CHUNK = 20_000  # ids per INSERT ... SELECT (one array or JSON parameter, not one per id)
PAGE_MAX = 200

#: Outcomes of a change attempt (`change_attempt.outcome`).
ACCEPTED, RETRY, FAILED = "accepted", "retry", "failed"

#: Audit actions a device event already tells (the same fact would show twice).
COVERED_ACTIONS = frozenset(
    {"device.attributes", "device.register", "device.agent_version", "device.changed_in_portal"}
)

# Sources of a timeline, by their rank among entries at the same moment (newest first: a
# device event sorts above the audit event and the push attempt written with it).
_EVENT, _AUDIT, _ATTEMPT, _DERIVED = 3, 2, 1, 0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_TABLE = DeviceEvent.__table__
_COLUMNS = ["device_id", "at", "kind", "actor", "change_id", "operation_id", "details"]


def actor_name(actor: Any) -> str:
    """What the history names an actor by: an admin's email, or the string ("sync", ...)."""
    if actor is None:
        return "system"
    return actor if isinstance(actor, str) else str(getattr(actor, "email", actor))


def record_events(
    session: Session,
    kind: str,
    device_ids: Sequence[int] | Select,
    actor: Any,
    details: Mapping[str, Any] | None = None,
    change_id: int | None = None,
    operation_id: int | None = None,
    at: datetime | None = None,
) -> None:
    """Add one `kind` event per device, all with the same actor, details, change and time,
    in the caller's transaction (never commits).

    `device_ids` is a list of ids (written in chunks of CHUNK, one INSERT ... SELECT each) or
    a SELECT of one column of device ids (one INSERT ... SELECT, nothing read into Python).
    Details are kept without secrets (kmeweb.redact), as the audit log keeps them.
    """
    if not isinstance(device_ids, Select) and not device_ids:
        return
    sources: Iterator[Select]
    if isinstance(device_ids, Select):
        sources = iter([device_ids])
    else:
        sources = (id_rows(session, chunk) for chunk in chunks(list(device_ids), CHUNK))
    constants = _constants(session, kind, actor, details, operation_id, at)
    for source in sources:
        ids = source.subquery()
        rows = select(list(ids.c)[0], *constants(literal(change_id, Integer)))
        session.execute(insert(_TABLE).from_select(_COLUMNS, rows))


def _constants(
    session: Session,
    kind: str,
    actor: Any,
    details: Mapping[str, Any] | None,
    operation_id: int | None,
    at: datetime | None,
) -> Callable[[Any], list[Any]]:
    """The columns every event of one write shares, after `device_id`, around its change id
    (a constant or a column of the rows written)."""
    dialect = session.get_bind(mapper=Device).dialect.name
    clean = redact_details(dict(details or {}))
    if dialect == "postgresql":
        payload: Any = literal(clean, JSON)
    else:  # SQLite keeps JSON as its text (a CAST to JSON would make it a number)
        payload = literal(json.dumps(clean), String)
    when = literal(at or utcnow(), UTCDateTime())
    what = literal(str(kind), String)
    who = literal(actor_name(actor)[:254], String)
    operation = literal(operation_id, Integer)
    return lambda change: [when, what, who, change, operation, payload]


def record_each(
    session: Session,
    kind: str,
    rows: Iterable[tuple[int, Mapping[str, Any], int | None]],
    actor: Any,
    operation_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """Add one `kind` event per (device id, details, change id) of `rows`, where each device's
    details differ (the old value it had, Samsung's answer for it): one executemany per
    CHUNK rows, no ORM object. Returns how many. Never commits."""
    when = at or utcnow()
    name = actor_name(actor)[:254]
    written = 0
    batch: list[dict[str, Any]] = []
    for device_id, details, change_id in rows:
        batch.append(
            {
                "device_id": device_id,
                "at": when,
                "kind": str(kind),
                "actor": name,
                "change_id": change_id,
                "operation_id": operation_id,
                "details": redact_details(dict(details)),
            }
        )
        if len(batch) >= CHUNK:
            session.execute(insert(_TABLE), batch)
            written += len(batch)
            batch = []
    if batch:
        session.execute(insert(_TABLE), batch)
        written += len(batch)
    return written


def record_by_change(
    session: Session,
    kind: str,
    changes: Iterable[Any],
    actor: Any,
    details: Mapping[str, Any] | Callable[[int], Mapping[str, Any]],
    group: Mapping[int, Any] | None = None,
    operation_id: int | None = None,
) -> None:
    """One `kind` event for each device of each outbox change (its payload's "device_ids"),
    naming the change that carries it to KME. With `group` ({device id: key}, e.g. the profile
    each came from), `details` is a function of the key, called once per key. One
    INSERT ... SELECT per key and CHUNK devices, whatever the number of changes: the devices
    of every change are one parameter (`grouped_rows`). Never commits."""
    parts: dict[Any, dict[int | None, list[int]]] = {}
    for change in changes:
        ids = change.payload.get("device_ids", [])
        if group is None:
            parts.setdefault(None, {}).setdefault(change.id, []).extend(ids)
            continue
        for device_id in ids:
            parts.setdefault(group.get(device_id), {}).setdefault(change.id, []).append(device_id)
    for key, by_change in parts.items():
        if group is None:
            fixed = details if isinstance(details, Mapping) else details(None)
        else:
            fixed = details(key) if callable(details) else details
        constants = _constants(session, kind, actor, fixed, operation_id, None)
        for chunk in _chunked_groups(by_change, CHUNK):
            rows = grouped_rows(session, chunk).subquery()
            select_rows = select(rows.c.id, *constants(rows.c.other))
            session.execute(insert(_TABLE).from_select(_COLUMNS, select_rows))


def _chunked_groups(
    groups: Mapping[int | None, Sequence[int]], size: int
) -> Iterator[dict[int | None, Sequence[int]]]:
    """`groups` ({key: ids}) cut into parts of at most `size` ids in all, in order."""
    part: dict[int | None, Sequence[int]] = {}
    room = size
    for key, ids in groups.items():
        for start in range(0, len(ids), size):
            piece = ids[start : start + size]
            if len(piece) > room:
                yield part
                part, room = {}, size
            part[key] = piece
            room -= len(piece)
    if part:
        yield part


def record_enrollment(
    session: Session | Connection, device_id: int, accepted: bool, details: Mapping[str, Any]
) -> None:
    """An enrollment attempt of a known device (the device side's hot path): one INSERT on
    the driver's cursor of the session's connection (or of a Connection), no ORM object. A
    refusal also sets the device's `last_refusal_code` and `last_refusal_at` (one UPDATE more;
    refusals are the rare case). Never commits."""
    now = utcnow()
    conn = connection_of(session)
    kind = DeviceEventKind.ENROLL_ACCEPTED if accepted else DeviceEventKind.ENROLL_REFUSED
    _ENROLL_EVENT.rowcount(
        conn, {"device_id": device_id, "at": now, "kind": str(kind), "details": dict(details)}
    )
    if not accepted:
        conn.execute(
            _REFUSAL,
            {"b_id": device_id, "b_code": str(details.get("code") or "")[:32], "b_at": now},
        )


def accepted_enrollments(devices: CTE) -> Insert:
    """The "enrollment accepted" history row of each device id in `devices` (a CTE of one
    column, `id`: an UPDATE ... RETURNING id), for a statement that writes a registration and
    its history at once (enrollment's one PostgreSQL statement). Binds `at` and `details`."""
    rows = select(
        devices.c.id,
        bindparam("at", type_=_TABLE.c.at.type),
        literal(str(DeviceEventKind.ENROLL_ACCEPTED)),
        literal("device"),
        bindparam("details", type_=_TABLE.c.details.type),
    ).select_from(devices)
    return insert(_TABLE).from_select(["device_id", "at", "kind", "actor", "details"], rows)


_ENROLL_EVENT = DriverStatement(
    insert(_TABLE).values(
        device_id=bindparam("device_id"),
        at=bindparam("at"),
        kind=bindparam("kind"),
        actor="device",
        details=bindparam("details"),
    )
)
_DEVICE = Device.__table__
_REFUSAL = (
    _DEVICE.update()
    .where(_DEVICE.c.id == bindparam("b_id"))
    .values(last_refusal_code=bindparam("b_code"), last_refusal_at=bindparam("b_at"))
)


@dataclass
class Entry:
    """One line of a device's history, in words: when, who, what, and the details (from → to,
    Samsung's code and message). `failed` marks a refusal (shown in red)."""

    at: datetime
    who: str
    what: str
    detail: str
    rank: int
    id: int
    failed: bool = False

    @property
    def key(self) -> str:
        """The cursor that pages to the entries older than this one."""
        return f"{(self.at - _EPOCH) // timedelta(microseconds=1)}.{self.rank}.{self.id}"


@dataclass
class HistoryPage:
    entries: list[Entry]
    #: The `before` of the next (older) page, None on the last one.
    older: str | None = None


def parse_cursor(before: str | None) -> tuple[datetime, int, int] | None:
    """(at, rank, id) of an `Entry.key`, None for anything else (the first page)."""
    if not before:
        return None
    parts = before.split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) < 20 for p in parts):
        return None
    micro, rank, ident = (int(p) for p in parts)
    try:
        at = _EPOCH + timedelta(microseconds=micro)
    except OverflowError:
        return None
    return at, rank, ident


def _older(at_col: Any, id_col: Any, rank: int, cursor: tuple[datetime, int, int] | None) -> Any:
    """The rows of one source that sort below the cursor (at, rank, id), newest first."""
    if cursor is None:
        return literal(True)
    at, c_rank, c_id = cursor
    if rank < c_rank:
        return at_col <= at
    if rank > c_rank:
        return at_col < at
    return or_(at_col < at, and_(at_col == at, id_col < c_id))


def device_history(
    session: Session, device_id: int, before: str | None = None, limit: int = 50
) -> HistoryPage:
    """One page of the device's history, newest first: its events, the audit events that
    target it, each attempt of the changes that carried it to KME (with Samsung's answer), and
    "Uploaded by the reseller" from the device's upload when no event says it. `before` is the
    `older` of the previous page. Reads only."""
    limit = max(1, min(int(limit), PAGE_MAX))
    cursor = parse_cursor(before)
    take = limit + 1
    since = _reused_id_since(session, device_id)
    events = session.scalars(
        select(DeviceEvent)
        .where(
            DeviceEvent.device_id == device_id,
            DeviceEvent.at >= since,
            _older(DeviceEvent.at, DeviceEvent.id, _EVENT, cursor),
        )
        .order_by(DeviceEvent.at.desc(), DeviceEvent.id.desc())
        .limit(take)
    ).all()
    audits = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.target_type == "device",
            AuditEvent.target_id == str(device_id),
            AuditEvent.action.not_in(COVERED_ACTIONS),
            AuditEvent.at >= since,
            _older(AuditEvent.at, AuditEvent.id, _AUDIT, cursor),
        )
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(take)
    ).all()
    carried = (
        select(DeviceEvent.change_id)
        .where(
            DeviceEvent.device_id == device_id,
            DeviceEvent.change_id.is_not(None),
            DeviceEvent.at >= since,
        )
        .scalar_subquery()
    )
    attempts = session.execute(
        select(ChangeAttempt, Change.kind, Change.attempts)
        .join(Change, Change.id == ChangeAttempt.change_id)
        .where(
            ChangeAttempt.change_id.in_(carried),
            _older(ChangeAttempt.at, ChangeAttempt.id, _ATTEMPT, cursor),
        )
        .order_by(ChangeAttempt.at.desc(), ChangeAttempt.id.desc())
        .limit(take)
    ).all()
    names = _Names.read(session, events)
    entries = [_event_entry(e, names) for e in events]
    shown = readable(session, audits)
    entries += [_audit_entry(a, shown[a.id].details) for a in audits]
    entries += [_attempt_entry(a, kind) for a, kind, _n in attempts]
    derived = _uploaded(session, device_id, cursor)
    if derived is not None:
        entries.append(derived)
    entries.sort(key=lambda e: (e.at, e.rank, e.id), reverse=True)
    more = len(entries) > limit
    entries = entries[:limit]
    return HistoryPage(entries, entries[-1].key if more else None)


def _reused_id_since(session: Session, device_id: int) -> datetime:
    """Where the device's own history starts. SQLite hands the id of the newest device, once
    it is deleted, to the next device created (PostgreSQL's sequence never reuses an id): there
    the history of a device that exists starts when it was created, so a new device does not
    inherit its deleted namesake's."""
    if session.get_bind(mapper=Device).dialect.name != "sqlite":
        return _EPOCH
    created = session.scalar(select(Device.created_at).where(Device.id == device_id))
    return created or _EPOCH


def iter_history(session: Session, device_id: int, page: int = 500) -> Iterator[Entry]:
    """The whole history, newest first, read a page at a time (the CSV download)."""
    before = None
    while True:
        result = device_history(session, device_id, before, page)
        yield from result.entries
        if result.older is None:
            return
        before = result.older


def has_history(session: Session, device_id: int) -> bool:
    """Whether anything was recorded for this id (a deleted device's history stays)."""
    return (
        session.scalar(select(DeviceEvent.id).where(DeviceEvent.device_id == device_id).limit(1))
        is not None
    )


@dataclass
class _Names:
    profiles: dict[int, str] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)
    rules: dict[int, str] = field(default_factory=dict)

    @classmethod
    def read(cls, session: Session, events: Sequence[DeviceEvent]) -> _Names:
        profiles: set[int] = set()
        users: set[int] = set()
        rules: set[int] = set()
        for e in events:
            d = e.details or {}
            for key in ("from", "to"):
                if e.kind in _PROFILE_KINDS:
                    profiles |= _ints([d.get(key)])
                if e.kind == DeviceEventKind.USER:
                    users |= _ints([d.get(key)])
            profiles |= _ints([d.get("profile_id")])
            rules |= _ints([d.get("rule_id")])
            if e.kind == DeviceEventKind.PORTAL_CHANGE:
                for name, value in d.items():
                    if "profile" in name and isinstance(value, list):
                        profiles |= _ints(value)
        names = cls()
        if profiles:
            rows = session.execute(select(Profile.id, Profile.name).where(Profile.id.in_(profiles)))
            names.profiles = {i: name for i, name in rows}
        if users:
            rows = session.execute(
                select(EndUser.id, EndUser.username).where(EndUser.id.in_(users))
            )
            names.users = {i: name for i, name in rows}
        if rules:
            rows = session.execute(
                select(RoutingRule.id, RoutingRule.name).where(RoutingRule.id.in_(rules))
            )
            names.rules = {i: name for i, name in rows}
        return names

    def profile(self, value: Any) -> str:
        if value is None:
            return "no profile"
        ids = _ints([value])
        return self.profiles.get(ids.pop(), f"profile #{value}") if ids else str(value)

    def user(self, value: Any) -> str:
        if value is None:
            return "no user"
        ids = _ints([value])
        return self.users.get(ids.pop(), f"user #{value}") if ids else str(value)

    def rule(self, value: Any) -> str:
        ids = _ints([value])
        return self.rules.get(ids.pop(), f"rule #{value}") if ids else str(value)


_KIND_LABELS = DeviceEventKind.labels()
_PROFILE_KINDS = (
    DeviceEventKind.APPROVED,
    DeviceEventKind.MOVED,
    DeviceEventKind.UNASSIGNED,
)


def _ints(values: Any) -> set[int]:
    out = set()
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            out.add(value)
        elif isinstance(value, str) and value.isdigit() and len(value) < 11:
            out.add(int(value))
    return out


def who(actor: str | None) -> str:
    """An actor as the history shows it."""
    return {
        "sync": "kmeweb (sync)",
        "device": "the device",
        "system": "kmeweb",
        None: "kmeweb",
        "": "kmeweb",
    }.get(actor, actor or "kmeweb")


def _value(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) or "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) or "—"
    return str(value)


def _samsung(code: Any, message: Any) -> str:
    said = " ".join(str(p) for p in (code, message) if p not in (None, ""))
    return said or "no reason given"


def _event_entry(e: DeviceEvent, names: _Names) -> Entry:
    d = e.details if isinstance(e.details, Mapping) else {}
    kind = e.kind
    what = _KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())
    detail = ""
    failed = False
    by_rule = f" by rule “{names.rule(d['rule_id'])}”" if d.get("rule_id") else ""
    if kind == DeviceEventKind.UPLOADED:
        if d.get("import"):
            what = "Imported from a CSV file"
            detail = f"{d['import']} into {names.profile(d.get('profile_id'))}"
        else:
            detail = _upload_words(d)
    elif kind == DeviceEventKind.APPROVED:
        detail = f"into {names.profile(d.get('to'))}{by_rule}"
        if d.get("upload"):
            detail += f" (upload {d['upload']})"
    elif kind in (DeviceEventKind.MOVED, DeviceEventKind.UNASSIGNED):
        detail = f"{names.profile(d.get('from'))} → {names.profile(d.get('to'))}{by_rule}"
    elif kind == DeviceEventKind.USER:
        detail = f"{names.user(d.get('from'))} → {names.user(d.get('to'))}"
        if d.get("password"):
            detail += "; enrollment password changed"
    elif kind == DeviceEventKind.ATTRIBUTES:
        changed = d.get("changed") or {}
        parts = [
            f"{k}: {_value(v[0])} → {_value(v[1])}"
            for k, v in changed.items()
            if isinstance(v, list) and len(v) == 2
        ]
        detail = "; ".join(parts) or "—"
    elif kind == DeviceEventKind.PUSHED:
        if d.get("resync"):
            what = "Sent to Samsung again"
            detail = "it changed while its previous push was on the way"
        else:
            what = "Samsung did not apply it to this device"
            detail = f"{d.get('label') or 'refused'}: {_samsung(d.get('code'), d.get('reason'))}"
            failed = True
    elif kind == DeviceEventKind.PORTAL_CHANGE:
        detail = "; ".join(
            _portal_change(name, value, names) for name, value in d.items() if name != "note"
        )
    elif kind == DeviceEventKind.NOT_IN_KME:
        detail = _value(d.get("note")) if d.get("note") else "the full pull no longer found it"
        failed = True
    elif kind == DeviceEventKind.ENROLL_ACCEPTED:
        parts = [f"agent {d['agent_version']}"] if d.get("agent_version") else []
        if d.get("first"):
            parts.insert(0, "first registration")
        if d.get("ip"):
            parts.append(f"from {d['ip']}")
        detail = ", ".join(parts)
    elif kind == DeviceEventKind.ENROLL_REFUSED:
        detail = _samsung(d.get("code"), d.get("message"))
        if d.get("ip"):
            detail += f" (from {d['ip']})"
        failed = True
    elif kind == DeviceEventKind.DELETED:
        detail = (
            f"from kmeweb and KME (was {d['identifier']})"
            if d.get("in_knox")
            else f"from kmeweb (was {d.get('identifier') or 'this device'})"
        )
    else:
        detail = "; ".join(f"{k}: {_value(v)}" for k, v in d.items())
    return Entry(e.at, who(e.actor), what, detail, _EVENT, e.id, failed)


def _portal_change(name: str, value: Any, names: _Names) -> str:
    label = {
        "profile_id": "Profile",
        "approval": "Approval",
        "user": "User",
        "end_user": "User",
    }.get(name, name.replace("_", " ").capitalize())
    if isinstance(value, list) and len(value) == 2:
        old, new = value
        if "profile" in name:
            old, new = names.profile(old), names.profile(new)
        return f"{label}: {_value(old)} → {_value(new)}"
    return f"{label}: {_value(value)}"


def _upload_words(d: Mapping[str, Any]) -> str:
    parts = []
    if d.get("reseller"):
        parts.append(f"by {d['reseller']}")
    if d.get("order"):
        parts.append(f"order {d['order']}")
    if d.get("upload"):
        parts.append(f"upload {d['upload']}")
    return ", ".join(parts)


_CHANGE_WORDS = {
    ChangeKind.DEVICE_APPROVE: "the approval",
    ChangeKind.DEVICE_MOVE: "the move",
    ChangeKind.DEVICE_UNASSIGN: "the unassign",
    ChangeKind.DEVICE_USER: "the user",
    ChangeKind.DEVICE_RESYNC: "its current state",
    ChangeKind.DEVICE_DELETE: "the deletion",
}


def _attempt_entry(a: ChangeAttempt, kind: str) -> Entry:
    thing = _CHANGE_WORDS.get(kind, "the change")
    if a.outcome == ACCEPTED:
        what = f"Sent {thing} to Samsung: accepted"
        detail = a.message or ""
        failed = False
    elif a.outcome == RETRY:
        what = f"Sent {thing} to Samsung: refused, will retry"
        detail = _samsung(a.code, a.message)
        failed = True
    else:
        what = f"Sent {thing} to Samsung: failed"
        detail = _samsung(a.code, a.message)
        failed = True
    return Entry(a.at, "kmeweb (sync)", what, detail, _ATTEMPT, a.id, failed)


_AUDIT_WORDS = {
    "device.attributes": "Attributes edited",
    "device.register": "Registered",
    "device.agent_version": "Agent version changed",
    "device.check": "Check with Samsung asked for",
    "device.portal.send_ours": "Send ours again (change made in the Samsung portal undone)",
    "device.portal.take_samsungs": "Take Samsung's (change made in the Samsung portal kept)",
}


def _audit_entry(a: AuditEvent, details: list[tuple[str, str]]) -> Entry:
    what = _AUDIT_WORDS.get(a.action, a.action)
    detail = "; ".join(f"{label}: {text}" for label, text in details)
    return Entry(a.at, who(a.actor), what, detail, _AUDIT, a.id)


def _uploaded(
    session: Session, device_id: int, cursor: tuple[datetime, int, int] | None
) -> Entry | None:
    """ "Uploaded by the reseller" read from the device's upload while no event says it (the
    approval writes it; a device still pending, or approved before the history existed, has
    none), when it sorts below the cursor."""
    row = session.execute(
        select(
            Device.created_at,
            Upload.uploaded_at,
            Upload.kme_upload_id,
            Upload.order_number,
            Reseller.name,
        )
        .outerjoin(Upload, Upload.id == Device.upload_id)
        .outerjoin(Reseller, Reseller.id == Upload.reseller_id)
        .where(Device.id == device_id)
    ).first()
    if row is None or row.kme_upload_id is None:
        return None
    written = select(DeviceEvent.id).where(
        DeviceEvent.device_id == device_id, DeviceEvent.kind == DeviceEventKind.UPLOADED
    )
    if session.scalar(written.limit(1)) is not None:
        return None
    at = row.uploaded_at or row.created_at
    entry = Entry(
        at,
        row.name or "the reseller",
        str(DeviceEventKind.UPLOADED.label),
        _upload_words({"order": row.order_number, "upload": row.kme_upload_id}),
        _DERIVED,
        0,
    )
    if cursor is not None and (entry.at, entry.rank, entry.id) >= cursor:
        return None
    return entry


@dataclass
class Gone:
    """A deleted device, as its history page names it (by the identifier its deletion
    recorded)."""

    id: int
    identifier: str = ""
    imei: str | None = None
    serial: str | None = None
    profile_id: int | None = None
    deleted: bool = True


def deleted_identifier(session: Session, device_id: int) -> str:
    """The identifier the device's deletion recorded ("" when none did)."""
    details = session.scalar(
        select(DeviceEvent.details)
        .where(DeviceEvent.device_id == device_id, DeviceEvent.kind == DeviceEventKind.DELETED)
        .order_by(DeviceEvent.id.desc())
        .limit(1)
    )
    return str((details or {}).get("identifier") or "")


CSV_HEADER = ("When", "Who", "What", "Details")


def csv_rows(session: Session, device_id: int) -> Iterator[tuple]:
    """The whole history as CSV rows (CSV_HEADER), newest first; ends its read transaction."""
    for e in iter_history(session, device_id):
        yield (e.at, e.who, e.what, e.detail)
    session.rollback()
