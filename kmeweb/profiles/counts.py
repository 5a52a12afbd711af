"""Each profile's kept counts: how many devices it holds and how many of them are registered
(`profile.device_count`, `profile.registered_count`; pending registration is the difference).

The Bulk Enrollment list, the profile page and the API read these two columns instead of
counting a profile's devices on every view, so a page costs the same with a million devices.
Every service that adds, moves, registers or deletes devices shifts them in its own
transaction: it works out the shift from what it changes (`Shift`; `moving` and `removing`
read it with one grouped query before the write) and applies it with `apply` AFTER its device
writes, so every writer locks devices first and profile rows last (in id order) and no two
writers wait for each other in a circle.

`check` recounts every profile in one grouped pass and returns the profiles whose kept counts
differ; `repair` rewrites those under the profiles' row locks (PostgreSQL) or the write lock
(SQLite), so a change committed meanwhile is never overwritten. The sweeper runs both every
minute, `flask recount-profiles` on demand: a bug can leave a wrong number on screen for a
minute at most, and it is logged and audited when it is found.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.devices.models import Device
from kmeweb.profiles.models import Profile
from kmeweb.sqlutil import DriverStatement, chunks, connection_of, id_filters

log = logging.getLogger(__name__)

_PROFILE = Profile.__table__
# Every UPDATE here names updated_at, keeping it: the profile's "Modified" time (and its
# `onupdate`) is about edits of the profile, not about its devices.
_KEEP_MODIFIED = {"updated_at": _PROFILE.c.updated_at}
_SHIFT = (
    _PROFILE.update()
    .where(_PROFILE.c.id == bindparam("pid"))
    .values(
        device_count=_PROFILE.c.device_count + bindparam("devices"),
        registered_count=_PROFILE.c.registered_count + bindparam("registered"),
        **_KEEP_MODIFIED,
    )
)
_SET = (
    _PROFILE.update()
    .where(_PROFILE.c.id == bindparam("pid"))
    .values(
        device_count=bindparam("devices"),
        registered_count=bindparam("registered"),
        **_KEEP_MODIFIED,
    )
)


@dataclass
class Shift:
    """What a change does to the kept counts: {profile id: [devices, registered]} to add
    (negative to take away). Devices without a profile (pending approval) count nowhere."""

    by_profile: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, profile_id: int | None, devices: int = 1, registered: int = 0) -> None:
        if profile_id is not None and (devices or registered):
            counts = self.by_profile[profile_id]
            counts[0] += devices
            counts[1] += registered

    def move(
        self, from_id: int | None, to_id: int | None, registered: bool = False, devices: int = 1
    ) -> None:
        """One device (or `devices` alike, all registered or none) moves from one profile to
        another."""
        if from_id != to_id:
            self.add(from_id, -devices, -devices * int(registered))
            self.add(to_id, devices, devices * int(registered))

    def merge(self, other: Shift) -> Shift:
        for pid, (devices, registered) in other.by_profile.items():
            self.add(pid, devices, registered)
        return self


def apply(session: Session, shift: Shift) -> None:
    """Add `shift` to the profiles' kept counts (one executemany, in profile id order). Call
    it after the device writes it describes, in the same transaction."""
    rows = [
        {"pid": pid, "devices": devices, "registered": registered}
        for pid, (devices, registered) in sorted(shift.by_profile.items())
        if devices or registered
    ]
    if rows:
        session.execute(_SHIFT, rows)


#: One more registered device in profile `pid` (binds pid; updated_at named and kept, as in
#: `_SHIFT`): `registered` runs it, and enrollment folds it into its one PostgreSQL statement.
REGISTERED = (
    _PROFILE.update()
    .where(_PROFILE.c.id == bindparam("pid"))
    .values(registered_count=_PROFILE.c.registered_count + 1, **_KEEP_MODIFIED)
)
_REGISTERED = DriverStatement(REGISTERED)


def registered(session: Session | Connection, profile_id: int) -> None:
    """A device of `profile_id` registered for the first time (enrollment's one statement, on
    the driver's cursor of the session's connection or of a Connection: enrollment is the
    device side's hot path)."""
    _REGISTERED.rowcount(connection_of(session), {"pid": profile_id})


def moving(session: Session, device_ids: Sequence[int], to_profile_id: int | None) -> Shift:
    """The shift of moving `device_ids` to `to_profile_id` (None: out of every profile), read
    from the devices as they are now: call it BEFORE the write, `apply` it after."""
    shift = Shift()
    total = [0, 0]
    for where in id_filters(session, Device.id, device_ids):
        rows = session.execute(
            select(Device.profile_id, func.count(), func.count(Device.registered_at))
            .where(where, Device.profile_id.is_distinct_from(to_profile_id))
            .group_by(Device.profile_id)
        )
        for pid, devices, registered in rows:
            shift.add(pid, -devices, -registered)
            total[0] += devices
            total[1] += registered
    shift.add(to_profile_id, *total)
    return shift


def reassigning(session: Session, targets: Mapping[int, int | None]) -> Shift:
    """The shift of giving each device of `targets` ({device id: new profile id or None}) its
    new profile, read from the devices as they are now: call it BEFORE the write."""
    shift = Shift()
    for where in id_filters(session, Device.id, list(targets)):
        for device_id, pid, registered in session.execute(
            select(Device.id, Device.profile_id, Device.registered_at.is_not(None)).where(where)
        ):
            shift.move(pid, targets[device_id], registered)
    return shift


def removing(session: Session, device_ids: Sequence[int]) -> Shift:
    """The shift of deleting `device_ids` (call it before the DELETE)."""
    return moving(session, device_ids, None)


def added(profile_ids: Iterable[int | None]) -> Shift:
    """The shift of new, unregistered devices in these profiles (one entry per device)."""
    shift = Shift()
    for pid in profile_ids:
        shift.add(pid)
    return shift


def fresh_counts(
    session: Session, profile_ids: Sequence[int] | None = None
) -> dict[int, tuple[int, int]]:
    """{profile id: (devices, registered)} counted now from the device table: every profile
    (one grouped pass) or those of `profile_ids`. Profiles without devices are absent."""
    stmt = select(Device.profile_id, func.count(), func.count(Device.registered_at)).group_by(
        Device.profile_id
    )
    if profile_ids is None:
        rows = session.execute(stmt.where(Device.profile_id.is_not(None))).all()
    else:
        rows = [
            row
            for chunk in chunks(list(profile_ids), 900)
            for row in session.execute(stmt.where(Device.profile_id.in_(chunk)))
        ]
    return {pid: (devices, registered) for pid, devices, registered in rows}


def recount(session: Session, profile_ids: Sequence[int] | None = None) -> None:
    """Set the kept counts of every profile (or of `profile_ids`) from a fresh count, silently:
    for code that writes devices in bulk on its own terms (`flask seed-scale`). Flushes."""
    if profile_ids is None:
        profile_ids = list(session.scalars(select(Profile.id)))
    fresh = fresh_counts(session, profile_ids)
    rows = [
        {"pid": pid, "devices": fresh.get(pid, (0, 0))[0], "registered": fresh.get(pid, (0, 0))[1]}
        for pid in sorted(set(profile_ids))
    ]
    if rows:
        session.execute(_SET, rows)
    session.flush()


@dataclass(frozen=True)
class Drift:
    """A profile whose kept counts differ from a fresh count."""

    profile_id: int
    name: str
    kept: tuple[int, int]
    counted: tuple[int, int]


def check(session: Session) -> list[Drift]:
    """Every profile whose kept (devices, registered) differ from a fresh count. Reads only;
    a change committed between the two reads can show as drift: `repair` counts again under
    the lock."""
    fresh = fresh_counts(session)
    kept = session.execute(
        select(Profile.id, Profile.name, Profile.device_count, Profile.registered_count)
    ).all()
    return [
        Drift(pid, name, (devices, registered), fresh.get(pid, (0, 0)))
        for pid, name, devices, registered in kept
        if (devices, registered) != fresh.get(pid, (0, 0))
    ]


def repair(session: Session, profile_ids: Sequence[int], actor: Any = "sync") -> list[Drift]:
    """Count the devices of `profile_ids` again while holding their rows and write the counts
    where they are wrong; audits "profile.counts_repaired" with each profile's kept and
    counted values. Returns what it repaired. Call it at the start of a transaction (on
    SQLite the lock is the database's write lock, which a read transaction cannot take once
    another writer committed). Flushes."""
    ids = sorted(set(profile_ids))
    if not ids:
        return []
    # A write to the rows, changing nothing, takes their locks (the write lock on SQLite): a
    # writer shifting these counts now waits, and one that shifted them has committed.
    for where in id_filters(session, Profile.id, ids):
        session.execute(
            update(Profile)
            .where(where)
            .values(device_count=Profile.device_count, **_KEEP_MODIFIED)
            .execution_options(synchronize_session=False)
        )
    fresh = fresh_counts(session, ids)
    drift = []
    for chunk in chunks(ids, 900):
        for pid, name, devices, registered in session.execute(
            select(Profile.id, Profile.name, Profile.device_count, Profile.registered_count).where(
                Profile.id.in_(chunk)
            )
        ):
            counted = fresh.get(pid, (0, 0))
            if (devices, registered) != counted:
                drift.append(Drift(pid, name, (devices, registered), counted))
    if not drift:
        return []
    session.execute(
        _SET,
        [{"pid": d.profile_id, "devices": d.counted[0], "registered": d.counted[1]} for d in drift],
    )
    log.warning(
        "kept device counts were wrong for %s profile(s), repaired: %s",
        len(drift),
        ", ".join(f"{d.name} {d.kept} -> {d.counted}" for d in drift[:10]),
    )
    audit.record(
        session,
        actor,
        "profile.counts_repaired",
        "profile",
        drift[0].profile_id if len(drift) == 1 else None,
        {
            "profiles": len(drift),
            "repaired": [
                {
                    "profile": d.name,
                    "devices": f"{d.kept[0]} → {d.counted[0]}",
                    "registered": f"{d.kept[1]} → {d.counted[1]}",
                }
                for d in drift[:20]
            ],
        },
    )
    session.flush()
    return drift


def check_and_repair(session: Session, actor: Any = "sync") -> list[Drift]:
    """`check` every profile, end that read-only transaction, then `repair` those that
    differed in a new one (flushed; the caller commits). Returns what was repaired: drift
    that a change committed between the two reads explained is not repaired."""
    drift = check(session)
    session.rollback()  # it wrote nothing; the repair must start a transaction of its own
    if not drift:
        return []
    return repair(session, [d.profile_id for d in drift], actor)
