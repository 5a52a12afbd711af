"""Migration 0020 moves each device's sync bookkeeping (sync state and error, what KME held of
it) from the device row into `device_sync`: a device waiting for its push must still be
pending after the upgrade, one KME refused still in error with Samsung's word, and what the
pull saw must still be there for the next pull to compare with. And back on a downgrade."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from kmeweb import create_app
from kmeweb.devices.models import Device
from kmeweb.extensions import db
from tests.test_migrations import _fresh_database_url

SEEN_AT = datetime(2026, 12, 1, 8, 30)
#: imei: (sync_state, sync_error, kme_seen_approval, kme_seen_profile_id, kme_seen_user, seen)
DEVICES = {
    "350000000000001": ("pending", None, "approved", None, None, True),
    "350000000000002": ("error", "KME refused it (4001 bad)", None, None, None, False),
    "350000000000003": ("synced", None, "approved", "profile", "ann@example.com", True),
    "350000000000004": ("synced", None, None, None, None, False),
}
COLUMNS = ("sync_state", "sync_error", "kme_seen_approval", "kme_seen_profile_id", "kme_seen_user")


def _expected(profile_id: int) -> dict[str, tuple]:
    return {
        imei: (
            *(profile_id if v == "profile" else v for v in values[:5]),
            SEEN_AT if values[5] else None,
        )
        for imei, values in DEVICES.items()
    }


def test_sync_state_and_what_kme_held_survive_the_move_both_ways(tmp_path):
    url, drop = _fresh_database_url(tmp_path)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    try:
        with app.app_context():
            upgrade(revision="0019")
            with db.engine.begin() as conn:
                profile_id = conn.execute(
                    sa.text(
                        "INSERT INTO profile (name, description, kind, without_token, config,"
                        " sync_state, version, created_at, updated_at, device_count,"
                        " registered_count) VALUES ('Sales', '', 'kme', false, '{}', 'synced',"
                        " 1, :now, :now, 4, 0) RETURNING id"
                    ),
                    {"now": SEEN_AT},
                ).scalar_one()
                for imei, (state, error, approval, seen_profile, user, seen) in DEVICES.items():
                    conn.execute(
                        sa.text(
                            "INSERT INTO device (imei, approval, profile_id, attributes,"
                            " sync_state, sync_error, kme_seen_approval, kme_seen_profile_id,"
                            " kme_seen_user, kme_seen_at, version, created_at, updated_at)"
                            " VALUES (:imei, 'approved', :pid, '{}', :state, :error, :approval,"
                            " :seen_profile, :user, :seen_at, 1, :now, :now)"
                        ),
                        {
                            "imei": imei,
                            "pid": profile_id,
                            "state": state,
                            "error": error,
                            "approval": approval,
                            "seen_profile": profile_id if seen_profile else None,
                            "user": user,
                            "seen_at": SEEN_AT if seen else None,
                            "now": SEEN_AT,
                        },
                    )
            expected = _expected(profile_id)

            upgrade()
            devices = db.session.scalars(sa.select(Device)).all()
            read = {d.imei: (*(getattr(d, c) for c in COLUMNS), d.kme_seen_at) for d in devices}
            assert {i: v[:5] for i, v in read.items()} == {i: v[:5] for i, v in expected.items()}
            assert {i: v[5] and v[5].replace(tzinfo=None) for i, v in read.items()} == {
                i: v[5] for i, v in expected.items()
            }
            # Only the devices with something to keep have a row; the synced one KME never
            # showed has none and still reads synced.
            with db.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT count(*) FROM device_sync")).scalar_one()
            assert rows == 3
            # The device table's Sync filter finds each state.
            by_state = dict(
                db.session.execute(
                    sa.select(Device.sync_state, sa.func.count()).group_by(Device.sync_state)
                ).all()
            )
            assert by_state == {"pending": 1, "error": 1, "synced": 2}
            db.session.remove()

            downgrade(revision="0019")
            with db.engine.connect() as conn:
                back = {
                    r[0]: tuple(r[1:])
                    for r in conn.execute(
                        sa.text(f"SELECT imei, {', '.join(COLUMNS)}, kme_seen_at FROM device")
                    )
                }
            assert {i: v[:5] for i, v in back.items()} == {i: v[:5] for i, v in expected.items()}
            assert {i: bool(v[5]) for i, v in back.items()} == {
                i: v[5] is not None for i, v in expected.items()
            }
            db.engine.dispose()
    finally:
        drop()
