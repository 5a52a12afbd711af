"""Migration 0015 turns each reseller's auto-approve and default profile into routing rules:
every device must land where the old preferences put it.

A fresh database is built up to 0014 and filled with plain SQL: resellers with every
combination of auto-approve (on, off) and default profile (none, a KME profile, a
self-maintained one, one that was deleted, the Default Profile itself), uploads waiting,
partly approved and approved, and thousands of pending devices. An oracle written here reads
that state the way the old code did (approvals._target_profile and auto_approve_uploads,
before 0015). Then the database goes to head and the new code runs as a pull and an admin
would: the pull's hook (routing.route_uploads) on the waiting uploads, then Approve All
Devices on each upload still waiting. Each device must end approved in the oracle's profile,
and the hook must auto-approve exactly the devices the old hook did.

The approvals enqueue their push jobs in the test's Redis after each commit; no worker runs, and
what is compared is the database.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from kmeweb import create_app
from kmeweb.extensions import db
from kmeweb.integration import approvals, routing
from tests.test_migrations import _fresh_database_url

#: (approval, profile id) of one device.
Place = tuple[str, int | None]

WAITING = ("pending", "partial")
#: A reseller's default profile, by the fixture's name for it.
CHOICES = (None, "Sales", "Lab", "Gone", "Default")


@dataclass(frozen=True)
class ResellerCase:
    kme_id: str
    name: str
    auto_approve: bool
    default: str | None  # a key of the profiles below, or None


def _cases() -> list[ResellerCase]:
    cases = [
        ResellerCase(
            f"R{i:02d}", f"{'Auto' if auto else 'Manual'} {default or 'none'}", auto, default
        )
        for i, (auto, default) in enumerate(itertools.product((True, False), CHOICES))
    ]
    return cases + [
        # Two resellers of one name (the rules' names must still differ), one without a name.
        ResellerCase("R90", "Acme", True, "Kiosk"),
        ResellerCase("R91", "acme", False, "Sales"),
        ResellerCase("R92", "", True, None),
        ResellerCase("R93", "Kiosk shop", False, "Kiosk"),
    ]


#: (status, pending devices, approved devices) of each reseller's uploads.
UPLOADS = (("pending", 230, 0), ("pending", 90, 0), ("partial", 80, 80), ("approved", 0, 40))

_counter = itertools.count(1)


def _device_rows(upload_id: int, pending: int, approved: int, homes: list[int]) -> Iterator[dict]:
    for i in range(pending + approved):
        n = next(_counter)
        yield {
            "imei": f"35{n:013d}",
            "serial": f"RF{n:010d}",
            "model": ("SM-G991B", "SM-T870", "SM-A536B")[n % 3],
            "upload_id": upload_id,
            "approval": "pending" if i < pending else "approved",
            "profile_id": None if i < pending else homes[n % len(homes)],
        }


def _fill_at_0014(conn: sa.Connection) -> None:
    """The fixture, in plain SQL on the 0014 schema."""
    now = "CURRENT_TIMESTAMP"
    conn.execute(
        sa.text(
            "INSERT INTO profile (name, description, kind, without_token, config, sync_state, "
            f"version, created_at, updated_at) VALUES (:name, '', :kind, false, '{{}}', 'synced', "
            f"1, {now}, {now})"
        ),
        [
            {"name": "Samsung KME Default Profile", "kind": "kme_default"},
            {"name": "Sales", "kind": "kme"},
            {"name": "Kiosk", "kind": "kme"},
            {"name": "Lab", "kind": "self_maintained"},
            {"name": "Gone", "kind": "kme"},
        ],
    )
    profiles = dict(conn.execute(sa.text("SELECT name, id FROM profile")).all())
    profiles["Default"] = profiles["Samsung KME Default Profile"]
    cases = _cases()
    conn.execute(
        sa.text(
            "INSERT INTO reseller (kme_reseller_id, name, auto_approve, default_profile_id) "
            "VALUES (:kme_id, :name, :auto, :profile)"
        ),
        [
            {
                "kme_id": c.kme_id,
                "name": c.name,
                "auto": c.auto_approve,
                "profile": profiles[c.default] if c.default else None,
            }
            for c in cases
        ],
    )
    resellers = dict(conn.execute(sa.text("SELECT kme_reseller_id, id FROM reseller")).all())
    uploads = [
        {
            "kme_id": f"U-{c.kme_id}-{k}",
            "reseller": resellers[c.kme_id],
            "status": status,
            "n": pending + approved,
        }
        for c in cases
        for k, (status, pending, approved) in enumerate(UPLOADS)
    ]
    uploads.append({"kme_id": "U-none-0", "reseller": None, "status": "pending", "n": 120})
    conn.execute(
        sa.text(
            "INSERT INTO upload (kme_upload_id, reseller_id, order_number, device_count, status) "
            "VALUES (:kme_id, :reseller, 'PO-1', :n, :status)"
        ),
        uploads,
    )
    upload_ids = dict(conn.execute(sa.text("SELECT kme_upload_id, id FROM upload")).all())
    homes = [profiles[p] for p in ("Sales", "Kiosk", "Lab", "Default")]
    rows: list[dict] = []
    for c in cases:
        for k, (_status, pending, approved) in enumerate(UPLOADS):
            rows.extend(_device_rows(upload_ids[f"U-{c.kme_id}-{k}"], pending, approved, homes))
    rows.extend(_device_rows(upload_ids["U-none-0"], 120, 0, homes))
    conn.execute(
        sa.text(
            "INSERT INTO device (imei, serial, model, upload_id, approval, profile_id, "
            "attributes, sync_state, version, created_at, updated_at) VALUES (:imei, :serial, "
            f":model, :upload_id, :approval, :profile_id, '{{}}', 'synced', 1, {now}, {now})"
        ),
        rows,
    )
    # A reseller's default profile deleted: the foreign key sets it to NULL.
    conn.execute(sa.text("DELETE FROM profile WHERE id = :id"), {"id": profiles["Gone"]})
    orphans = [resellers[c.kme_id] for c in cases if c.default == "Gone"]
    reseller = sa.table("reseller", sa.column("id"), sa.column("default_profile_id"))
    cleared = conn.execute(
        sa.select(sa.func.count())
        .select_from(reseller)
        .where(reseller.c.id.in_(orphans), reseller.c.default_profile_id.is_(None))
    ).scalar()
    assert len(orphans) == 2 and cleared == 2, "the deleted profile is still a default profile"


@dataclass
class Oracle:
    """What the code before 0015 did with each device."""

    final: dict[int, Place]  # after the pull's hook and Approve All Devices
    auto: set[int]  # pending devices the pull's hook approved
    auto_uploads: int
    waiting: list[int]  # upload ids the hook gets


def _old_routing(conn: sa.Connection) -> Oracle:
    """approvals._target_profile and auto_approve_uploads as they were (git show
    main:kmeweb/integration/approvals.py), read from the 0014 tables."""
    kinds = dict(conn.execute(sa.text("SELECT id, kind FROM profile")).all())
    default_id = next(pid for pid, kind in kinds.items() if kind == "kme_default")
    resellers = {
        rid: (bool(auto), profile_id)
        for rid, auto, profile_id in conn.execute(
            sa.text("SELECT id, auto_approve, default_profile_id FROM reseller")
        )
    }
    uploads = {
        uid: (reseller_id, status)
        for uid, reseller_id, status in conn.execute(
            sa.text("SELECT id, reseller_id, status FROM upload")
        )
    }

    def target(reseller_id: int | None) -> int:
        if reseller_id is not None and reseller_id in resellers:
            profile_id = resellers[reseller_id][1]
            if profile_id is not None and kinds.get(profile_id) in ("kme", "kme_default"):
                return profile_id
        return default_id

    waiting = sorted(uid for uid, (_r, status) in uploads.items() if status in WAITING)
    final: dict[int, Place] = {}
    auto: set[int] = set()
    auto_uploads = set()
    for device_id, upload_id, approval, profile_id in conn.execute(
        sa.text("SELECT id, upload_id, approval, profile_id FROM device")
    ):
        if approval != "pending":
            final[device_id] = (approval, profile_id)
            continue
        reseller_id, status = uploads[upload_id]
        final[device_id] = ("approved", target(reseller_id))
        if status in WAITING and reseller_id is not None and resellers[reseller_id][0]:
            auto.add(device_id)
            auto_uploads.add(upload_id)
    return Oracle(final, auto, len(auto_uploads), waiting)


def _places(conn: sa.Connection) -> dict[int, Place]:
    return {
        device_id: (approval, profile_id)
        for device_id, approval, profile_id in conn.execute(
            sa.text("SELECT id, approval, profile_id FROM device")
        )
    }


def _diff(got: dict[int, Place], want: dict[int, Place]) -> list[tuple[int, Place, Place]]:
    return [(i, got.get(i), want[i]) for i in sorted(want) if got.get(i) != want[i]][:10]


def test_rules_from_reseller_preferences_route_every_device_as_before(tmp_path, redis_url):
    url, drop = _fresh_database_url(tmp_path)
    redis.Redis.from_url(redis_url).flushdb()
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": redis_url,
            "RATELIMIT_STORAGE_URI": redis_url,
        }
    )
    try:
        with app.app_context():
            upgrade(revision="0014")
            with db.engine.begin() as conn:
                _fill_at_0014(conn)
            with db.engine.connect() as conn:
                oracle = _old_routing(conn)
                before = _places(conn)
            pending = sum(1 for approval, _p in before.values() if approval == "pending")
            assert pending > 5000 and len(oracle.auto) > 2000
            assert len(oracle.auto) < pending  # some wait for an admin, too

            upgrade()  # to head: 0015 turns the preferences into rules
            session = db.session
            stats = routing.route_uploads(session, oracle.waiting)  # the pull's hook
            session.commit()
            with db.engine.connect() as conn:
                after_hook = _places(conn)
            auto = {
                i
                for i, (approval, _p) in after_hook.items()
                if approval == "approved" and before[i][0] == "pending"
            }
            assert sorted(auto - oracle.auto)[:10] == [], "approved at once, and not before"
            assert sorted(oracle.auto - auto)[:10] == [], "approved at once before, not now"
            assert stats["devices_auto_approved"] == len(oracle.auto)
            assert stats["uploads_auto_approved"] == oracle.auto_uploads
            assert _diff(after_hook, {i: oracle.final[i] for i in auto}) == []

            still_waiting = session.scalars(
                sa.text("SELECT DISTINCT upload_id FROM device WHERE approval = 'pending'")
            ).all()
            assert still_waiting
            for upload_id in sorted(still_waiting):  # the admin's Approve All Devices
                approvals.approve_upload(session, upload_id, "test")
                session.commit()
            with db.engine.connect() as conn:
                final = _places(conn)
                broken = conn.execute(
                    sa.text("SELECT count(*) FROM device WHERE rule_note IS NOT NULL")
                ).scalar()
            assert _diff(final, oracle.final) == []
            assert len(final) == len(oracle.final)
            assert broken == 0  # no rule from 0015 points at a deleted profile
            session.remove()
            db.engine.dispose()
    finally:
        redis.Redis.from_url(redis_url).flushdb()
        drop()
