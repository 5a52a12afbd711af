"""Kept per-profile counts (issue 25): every service that adds, moves, registers or deletes
devices keeps `profile.device_count` and `registered_count` right in its own transaction, and
the sweeper and `flask recount-profiles` repair a count a bug left wrong.

The walk: the KME simulator over HTTP and a real RQ worker; uploads pulled (pending, and
approved at once into a profile), Approve All Devices and approval of a selection, moves and
unassigns, CSV imports into Self-Maintained profiles (new devices and devices taken from
another), deletes and removes, enrollments, moves made in the Samsung portal that a pull
adopts, and a profile deleted with its devices. After every step the kept counts equal a
fresh count of the device table."""

from __future__ import annotations

import io
import os
import random

import pytest
from sqlalchemy import func, select, update

from kmeweb.audit.models import AuditEvent
from kmeweb.devices import importer
from kmeweb.devices import services as device_services
from kmeweb.devices.models import Approval, Device
from kmeweb.devices.selection import DeviceSelection
from kmeweb.enroll.services import enroll_device, parse_request
from kmeweb.extensions import utcnow
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles import services as profile_services
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sync.jobs import start_pull, sweep_job
from tests.factories import bulk_devices, make_profile, make_upload, next_imei
from tests.sync_fixtures import kme_profile

STEPS = (
    "upload",
    "approve_upload",
    "approve_some",
    "move",
    "unassign",
    "import",
    "delete",
    "remove",
    "enroll",
    "portal_move",
    "delete_profile",
)


def _fresh(session) -> dict[int, tuple[int, int]]:
    """{profile id: (devices, registered)} counted now, for every profile."""
    rows = session.execute(
        select(Profile.id, func.count(Device.id), func.count(Device.registered_at))
        .outerjoin(Device, Device.profile_id == Profile.id)
        .group_by(Profile.id)
    )
    return {pid: (devices, registered) for pid, devices, registered in rows}


def _kept(session) -> dict[int, tuple[int, int]]:
    rows = session.execute(select(Profile.id, Profile.device_count, Profile.registered_count))
    return {pid: (devices, registered) for pid, devices, registered in rows}


def _ids(session, *where, limit: int | None = None, rng=None) -> list[int]:
    ids = list(session.scalars(select(Device.id).where(*where).order_by(Device.id)))
    if rng is not None and limit is not None and len(ids) > limit:
        ids = rng.sample(ids, limit)
    return ids


class Walk:
    """One random walk over the services that change where devices are."""

    def __init__(self, session, sim, work, admin, rng) -> None:
        self.session, self.sim, self.work, self.admin, self.rng = session, sim, work, admin, rng
        self.kiosk = kme_profile(session, "Kiosk")
        self.sales = kme_profile(session, "Sales")
        self.shelves = [
            profile_services.create_profile(
                session, {"name": name, "kind": "self_maintained", "config": {}}, "test"
            )
            for name in ("Shelf A", "Shelf B")
        ]
        self.default = profile_services.ensure_default_profile(session)
        session.commit()
        sim.control("POST", "/resellers", json={"name": "Auto", "autoApprove": True})
        self.pull()  # pushes the two profiles, pulls the demo tenant's pending uploads
        self.temp = 0

    def profiles(self) -> list[Profile]:
        return [self.session.merge(p) for p in (self.kiosk, self.sales)]

    def pull(self) -> None:
        start_pull(self.session, "test")
        self.session.commit()
        self.work()

    def in_knox(self) -> tuple:
        kinds = select(Profile.id).where(
            Profile.kind.in_((ProfileKind.KME, ProfileKind.KME_DEFAULT))
        )
        return (Device.approval == Approval.APPROVED, Device.profile_id.in_(kinds))

    def upload(self) -> bool:
        """A reseller uploads devices: pending, or approved at once into a KME profile."""
        n = self.rng.randint(5, 40)
        if self.rng.random() < 0.5:
            self.sim.upload(n)
        else:
            target = self.rng.choice(self.profiles())
            self.sim.upload(n, reseller="Auto", profileId=target.kme_profile_id)
        self.pull()
        return True

    def approve_upload(self) -> bool:
        waiting = select(Device.upload_id).where(Device.approval == Approval.PENDING)
        uploads = list(self.session.scalars(select(Upload.id).where(Upload.id.in_(waiting))))
        if uploads:
            approvals.approve_upload(self.session, self.rng.choice(uploads), self.admin)
        return bool(uploads)

    def approve_some(self) -> bool:
        ids = _ids(self.session, Device.approval == Approval.PENDING, limit=15, rng=self.rng)
        if ids:
            approvals.approve_devices(self.session, ids, self.admin)
        return bool(ids)

    def move(self) -> bool:
        # Devices not in the target yet: a selection all in it is refused (Conflict), and
        # which devices a sample holds depends on the IMEIs earlier tests used.
        target = self.rng.choice(self.profiles())
        ids = _ids(
            self.session, *self.in_knox(), Device.profile_id != target.id, limit=30, rng=self.rng
        )
        if ids:
            device_services.move_devices(self.session, ids, target.id, self.admin)
        return bool(ids)

    def unassign(self) -> bool:
        not_yet = Device.profile_id != self.default.id  # as in move
        ids = _ids(self.session, *self.in_knox(), not_yet, limit=20, rng=self.rng)
        if ids:
            device_services.unassign_devices(self.session, ids, self.admin)
        return bool(ids)

    def import_(self) -> bool:
        """A CSV into one shelf: new devices and some of the other shelf's."""
        shelf, other = self.rng.sample(self.shelves, 2)
        taken = self.session.scalars(
            select(Device.imei).where(Device.profile_id == other.id).limit(self.rng.randint(0, 8))
        )
        imeis = [*(next_imei() for _ in range(self.rng.randint(1, 25))), *taken]
        text = "imei\n" + "\n".join(imeis) + "\n"
        preview = importer.preview_import(
            self.session, shelf.id, io.BytesIO(text.encode()), "walk.csv", self.admin
        )
        assert not preview.errors, preview.errors
        operation = importer.start_import(self.session, shelf.id, preview.token, self.admin)
        self.session.commit()
        importer.import_job(operation.id)
        return True

    def delete(self) -> bool:
        in_default = (Device.profile_id == self.default.id, Device.approval == Approval.APPROVED)
        ids = _ids(self.session, *in_default, limit=10, rng=self.rng)
        if ids:
            device_services.delete_devices(self.session, ids, self.admin)
        return bool(ids)

    def remove(self) -> bool:
        shelf = self.rng.choice(self.shelves)
        ids = _ids(self.session, Device.profile_id == shelf.id, limit=6, rng=self.rng)
        if ids:
            device_services.remove_selection(
                self.session, DeviceSelection(shelf.id, ids=tuple(ids)), self.admin
            )
        return bool(ids)

    def enroll(self) -> bool:
        """Devices of a KME profile or a shelf enroll with its token (some twice)."""
        profile = self.rng.choice([*self.profiles(), *self.shelves])
        profile = self.session.get(Profile, profile.id)
        where = (Device.profile_id == profile.id, Device.approval == Approval.APPROVED)
        ids = _ids(self.session, *where, limit=4, rng=self.rng)
        for device_id in ids:
            imei = self.session.get(Device, device_id).imei
            body = {"imei": imei, "token": profile.token, "agent_version": "1.0"}
            enroll_device(
                self.session.connection(), parse_request(body), "127.0.0.1", "https://mdm"
            )
        return bool(ids)

    def portal_move(self) -> bool:
        """An admin moves devices in the Samsung portal; the next pull adopts the move."""
        self.work()  # kmeweb's own changes reach KME first: a pending device keeps its value
        kiosk, sales = self.profiles()
        synced = (Device.sync_state == "synced", Device.kme_device_id.is_not(None))
        ids = _ids(
            self.session,
            *synced,
            Device.profile_id.in_([kiosk.id, sales.id]),
            limit=5,
            rng=self.rng,
        )
        for device in (self.session.get(Device, i) for i in ids):
            to = sales if device.profile_id == kiosk.id else kiosk
            self.sim.control(
                "PATCH", f"/devices/{device.kme_device_id}", json={"profileId": to.kme_profile_id}
            )
        self.pull()
        return bool(ids)

    def delete_profile(self) -> bool:
        """A profile holding devices (some registered) is deleted: they go to the Default."""
        self.temp += 1
        temp = kme_profile(self.session, f"Temp {self.temp}")
        self.session.flush()
        ids = _ids(self.session, *self.in_knox(), limit=12, rng=self.rng)
        if ids:
            device_services.move_devices(self.session, ids, temp.id, self.admin)
            # a registered device among them (a KME profile's token needs its push first)
            self.session.execute(
                update(Device).where(Device.id == ids[0]).values(registered_at=func.now())
            )
            kept_counts.recount(self.session, [temp.id])
        self.session.commit()
        profile_services.delete_profile(self.session, temp.id, self.admin)
        return bool(ids)

    def step(self, name: str) -> bool:
        """Run one step; True when it changed devices (False: nothing to act on)."""
        acted = getattr(self, "import_" if name == "import" else name)()
        self.session.commit()
        return acted


@pytest.mark.parametrize("seed", [int(os.environ.get("KMEWEB_COUNTS_SEED", "25"))])
def test_kept_counts_equal_a_fresh_count_after_every_step_of_a_random_walk(
    session, integration, sim, work, admin, seed
):
    rng = random.Random(seed)
    walk = Walk(session, sim, work, admin, rng)
    # every kind of step at least twice, in a random order, then random ones
    steps = [*STEPS, *STEPS]
    rng.shuffle(steps)
    steps += [rng.choice(STEPS) for _ in range(10)]
    acted = set()
    for i, name in enumerate(steps):
        if walk.step(name):
            acted.add(name)
        session.expire_all()
        assert _kept(session) == _fresh(session), f"seed {seed}, step {i + 1}: {name}"
        assert kept_counts.check(session) == []
        session.rollback()
    walk.work()  # every push done: the counts still hold
    session.expire_all()
    assert _kept(session) == _fresh(session)
    # every kind of step changed devices at least once, and the profiles hold registered ones
    assert acted == set(STEPS)
    assert sum(registered for _, registered in _fresh(session).values()) > 0


def test_a_wrong_count_shows_until_the_sweeper_repairs_it_and_audits_it(session, admin):
    sales = make_profile(session, name="Sales")
    bulk_devices(session, 5, sales)
    session.execute(update(Profile).where(Profile.id == sales.id).values(device_count=99))
    session.commit()
    assert profile_services.profile_counts(session, [sales.id])[sales.id] == (99, 0, 99)

    assert sweep_job()["profile_counts_repaired"] == 1

    session.expire_all()
    assert profile_services.profile_counts(session, [sales.id])[sales.id] == (5, 0, 5)
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "profile.counts_repaired")
    ).one()
    assert event.actor == "sync"
    assert event.details["repaired"] == [
        {"profile": "Sales", "devices": "99 → 5", "registered": "0 → 0"}
    ]
    assert sweep_job()["profile_counts_repaired"] == 0


def test_flask_recount_profiles_reports_and_repairs(app, session):
    sales = make_profile(session, name="Sales")
    bulk_devices(session, 3, sales)
    session.execute(update(Profile).where(Profile.id == sales.id).values(registered_count=2))
    session.commit()
    runner = app.test_cli_runner()

    checked = runner.invoke(args=["recount-profiles", "--check-only"])
    assert checked.exit_code == 1
    assert "profile 'Sales': devices 3 -> 3, registered 2 -> 0" in checked.output
    session.expire_all()
    assert session.get(Profile, sales.id).registered_count == 2  # only reported

    repaired = runner.invoke(args=["recount-profiles"])
    assert repaired.exit_code == 0, repaired.output
    assert "(repaired)" in repaired.output and "repaired 1 of" in repaired.output
    session.expire_all()
    assert session.get(Profile, sales.id).registered_count == 0
    again = runner.invoke(args=["recount-profiles", "--check-only"])
    assert again.exit_code == 0 and "are right" in again.output


def test_devices_moving_in_and_enrolling_leave_the_profiles_modified_time(session, admin):
    sales = make_profile(session, name="Sales")
    kiosk = make_profile(session, name="Kiosk")
    ids = bulk_devices(session, 4, kiosk)
    modified = {p.id: p.updated_at for p in (sales, kiosk)}

    device_services.move_devices(session, ids, sales.id, admin)
    session.commit()
    imei = session.get(Device, ids[0]).imei
    body = {"imei": imei, "token": sales.token, "agent_version": "1.0"}
    enroll_device(session.connection(), parse_request(body), "127.0.0.1", "https://mdm")
    session.commit()

    session.expire_all()
    assert profile_services.profile_counts(session, [sales.id, kiosk.id]) == {
        sales.id: (4, 1, 3),
        kiosk.id: (0, 0, 0),
    }
    assert {p.id: p.updated_at for p in (sales, kiosk)} == modified


def test_approval_counts_pending_devices_that_already_registered(session, admin):
    """A device can wait for approval registered (imported, enrolled, then found pending in a
    reseller's upload by its IMEI): approving it counts it registered where it lands, for an
    upload's Approve All Devices and for a selection."""
    default = profile_services.ensure_default_profile(session)
    upload = make_upload(session, pending=4)
    ids = _ids(session, Device.upload_id == upload.id)
    session.execute(update(Device).where(Device.id.in_(ids[:2])).values(registered_at=utcnow()))
    session.commit()

    approvals.approve_devices(session, [ids[0], ids[2]], admin)
    session.commit()
    assert _kept(session)[default.id] == (2, 1) == _fresh(session)[default.id]

    approvals.approve_upload(session, upload.id, admin)
    session.commit()
    session.expire_all()
    assert _kept(session)[default.id] == (4, 2) == _fresh(session)[default.id]
