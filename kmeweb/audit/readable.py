"""Audit events as an admin reads them: IMEIs and names in place of database ids, and
"label: value" text in place of nested dictionaries.

Events keep what was written at the time (append-only), ids included; this module only
changes how the Audit log page shows them. A device or profile that no longer exists shows
its id, as the event recorded it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kmeweb.audit.models import AuditEvent
from kmeweb.devices.models import Device
from kmeweb.directory.models import EndUser
from kmeweb.profiles.models import Profile
from kmeweb.rules.models import RoutingRule

PROFILE_ID_KEYS = ("profile_id", "default_profile_id", "to_profile_id", "from_profile_id")
LABELS = {
    "device_ids": "IMEIs",
    "from_profiles": "From",
    "to_profile": "To",
    "profile_id": "Profile",
    "default_profile_id": "Default profile",
    "to_profile_id": "To",
    "from_profile_id": "From",
    "end_user_id": "User",
    "operation_id": "Operation",
    "kme_upload_id": "Upload",
    "kme_profile_id": "KME profile id",
}
SHOWN_IMEIS = 5


@dataclass
class Readable:
    """What the Audit log shows of one event: its target and its details as (label, text)."""

    target: str
    details: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Names:
    devices: dict[int, str] = field(default_factory=dict)
    profiles: dict[int, str] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)
    rules: dict[int, str] = field(default_factory=dict)


def _ints(values: Iterable[Any]) -> set[int]:
    out = set()
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            out.add(value)
        elif isinstance(value, str) and value.isdigit() and len(value) < 11:
            out.add(int(value))
    return out


def _device_id_list(value: Any) -> tuple[list[Any], int]:
    """The ids an event's "device_ids" holds and how many there were in all."""
    if isinstance(value, Mapping):
        first = value.get("first")
        first = list(first) if isinstance(first, list) else []
        total = value.get("count")
        return first, total if isinstance(total, int) else len(first)
    if isinstance(value, list):
        return value, len(value)
    return [], 0


def _names(session: Session, events: Sequence[AuditEvent]) -> _Names:
    device_ids: set[int] = set()
    profile_ids: set[int] = set()
    user_ids: set[int] = set()
    rule_ids: set[int] = set()
    for event in events:
        details = event.details if isinstance(event.details, Mapping) else {}
        device_ids |= _ints(_device_id_list(details.get("device_ids"))[0])
        if isinstance(details.get("from_profiles"), Mapping):
            profile_ids |= _ints(details["from_profiles"])
        profile_ids |= _ints(details.get(key) for key in PROFILE_ID_KEYS)
        changed = details.get("changed")
        if isinstance(changed, Mapping) and isinstance(changed.get("profile_id"), list):
            profile_ids |= _ints(changed["profile_id"])
        user_ids |= _ints([details.get("end_user_id")])
        if event.target_type == "device":
            device_ids |= _ints([event.target_id])
        if event.target_type == "profile":
            profile_ids |= _ints([event.target_id])
        if event.target_type == "rule":
            rule_ids |= _ints([event.target_id])
    names = _Names()
    if rule_ids:
        rows = session.execute(
            select(RoutingRule.id, RoutingRule.name).where(RoutingRule.id.in_(rule_ids))
        )
        names.rules = {i: name for i, name in rows}
    if device_ids:
        rows = session.execute(
            select(Device.id, Device.imei, Device.serial).where(Device.id.in_(device_ids))
        )
        names.devices = {i: imei or serial or f"#{i}" for i, imei, serial in rows}
    if profile_ids:
        rows = session.execute(select(Profile.id, Profile.name).where(Profile.id.in_(profile_ids)))
        names.profiles = {i: name for i, name in rows}
    if user_ids:
        rows = session.execute(
            select(EndUser.id, EndUser.display_name, EndUser.username).where(
                EndUser.id.in_(user_ids)
            )
        )
        names.users = {i: name or username for i, name, username in rows}
    return names


def _lookup(table: Mapping[int, str], value: Any) -> str:
    ids = _ints([value])
    if not ids:
        return _text(value)
    key = ids.pop()
    return table.get(key, f"#{key}")


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return ", ".join(f"{_label(k)}: {_text(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "—"
    return str(value)


def _label(key: Any) -> str:
    key = str(key)
    return LABELS.get(key, key.replace("_", " ").capitalize())


def _detail(key: str, value: Any, names: _Names) -> str:
    if key == "device_ids":
        ids, total = _device_id_list(value)
        shown = [_lookup(names.devices, i) for i in ids[:SHOWN_IMEIS]]
        more = total - len(shown)
        return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "") if shown else "—"
    if key == "from_profiles" and isinstance(value, Mapping):
        return ", ".join(f"{_lookup(names.profiles, pid)}: {_text(n)}" for pid, n in value.items())
    if key == "changed" and isinstance(value, Mapping):
        return "; ".join(f"{_label(k)}: {_change(k, v, names)}" for k, v in value.items())
    if key in PROFILE_ID_KEYS:
        return _lookup(names.profiles, value)
    if key == "end_user_id":
        return _lookup(names.users, value)
    return _text(value)


def _change(key: Any, value: Any, names: _Names) -> str:
    """A field's [old, new] as "old → new" (anything else as it is)."""
    if isinstance(value, list) and len(value) == 2:
        old, new = (_detail(str(key), v, names) for v in value)
        return f"{old} → {new}"
    return _detail(str(key), value, names)


def _target(event: AuditEvent, names: _Names) -> str:
    if not event.target_type:
        return ""
    if event.target_id is None:
        return event.target_type
    found = _ints([event.target_id])
    key = found.pop() if found else None
    tables = {"device": names.devices, "profile": names.profiles, "rule": names.rules}
    name = tables.get(event.target_type, {}).get(key) if key is not None else None
    return f"{event.target_type} {name or event.target_id}"


def readable(session: Session, events: Sequence[AuditEvent]) -> dict[int, Readable]:
    """{event id: Readable} for a page of events: one query per kind of name (devices,
    profiles, users), whatever the number of events. Reads only."""
    names = _names(session, events)
    out = {}
    for event in events:
        details = event.details if isinstance(event.details, Mapping) else {}
        out[event.id] = Readable(
            _target(event, names),
            [(_label(k), _detail(str(k), v, names)) for k, v in details.items()],
        )
    return out
