"""Benchmark the sync engine on SQLite against the simulator (a separate process).

Run from the repo root: `.venv/bin/python bench/sync.py [--devices N] [--move N]`.
Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/14; that database is flushed).
Prints on stdout:
  pull_100k_s: seconds to pull 100,000 devices into an empty database
  incremental_pull_s: seconds for a pull with nothing changed since the cursor (skew included:
    the first pull starts only once the seeding is older than the cursor skew, and the bench
    checks that KME reports no device changed since the cursor); goal under 0.3 s
  incremental_pull_1k_s: seconds for a pull after 1,000 devices were edited in the simulator's
    portal (moved to another profile), with 100,000 devices in the database; goal under 1 s
  move_50k_synced_s: seconds from a committed move of 50,000 devices to all of them synced
    (a real RQ worker, timed to the end of its last job: bench/_worker.py)
  bare_pull_list_s: seconds to fetch the same device pages (the pull's page size) with bare
    `requests` + `json.loads`
  bare_pull_insert_s: seconds for one executemany INSERT of the same device rows (built from
    those pages beforehand) into an empty database made by the same migrations, then one of
    what KME held of each (their `device_sync` rows, as the pull stores them), and the commit
  pull_vs_bare_ratio: pull_100k_s over the two bare figures added (goal: under 2)
"""

from __future__ import annotations

import argparse
import os
import time

import redis
import requests
from _env import TMP as _TMP
from _env import log as _log
from _simulator import BarePager, connect_integration, seed_tenant, start_simulator
from _worker import work_until_done
from sqlalchemy import func, select

from kmeweb import create_app
from kmeweb.extensions import db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--move", type=int, default=50_000)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()

    proc, url = start_simulator(os.path.join(_TMP.name, "sim.sqlite"))
    try:
        creds = seed_tenant(url, args.devices)
        args.seeded_at = time.time()  # the simulator runs on this machine's clock
        _log(f"simulator seeded with {args.devices} approved devices")

        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{_TMP.name}/bench.sqlite",
                "REDIS_URL": redis_url,
                "RATELIMIT_STORAGE_URI": redis_url,
            }
        )
        with app.app_context():
            run(app, url, creds, args)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(app, url: str, creds: dict, args: argparse.Namespace) -> None:
    from flask_migrate import upgrade

    from kmeweb.devices import services as device_services
    from kmeweb.devices.models import Device
    from kmeweb.operations.queue import run_worker
    from kmeweb.outbox.models import Change
    from kmeweb.profiles import services as profile_services
    from kmeweb.profiles.models import Profile
    from kmeweb.sync import jobs

    upgrade()
    session = db.session
    connect_integration(session, url, creds)
    session.commit()

    def pull() -> float:
        operation = jobs.start_pull(session, "bench")
        session.commit()
        started = time.perf_counter()
        jobs.pull_job(operation.id)
        return time.perf_counter() - started

    # The first pull's cursor is its start minus the skew: devices seeded within the skew would
    # be pulled again by the "nothing changed" pull. Start only once the seeding is older.
    skew = float(app.config["PULL_CURSOR_SKEW_S"])
    while time.time() <= args.seeded_at + skew:
        time.sleep(0.05)
    pull_s = pull()
    count = session.scalar(select(func.count()).select_from(Device))
    assert count == args.devices, count

    profile = profile_services.create_profile(
        session,
        {
            "name": "Bench target",
            "config": {"kme": {"supported_mdm": "Other", "mdm_apk_url": "https://m.example/a.apk"}},
        },
        "bench",
    )
    session.commit()
    run_worker(app, burst=True, with_scheduler=False)  # the profile exists in KME first
    session.expire_all()
    kme_profile_id = session.get(Profile, profile.id).kme_profile_id
    assert kme_profile_id
    changed = changed_since_cursor(url, creds, session)
    assert changed == 0, f"{changed} devices changed since the cursor: the figure would lie"
    incremental_s = pull()
    assert last_pull_total(session) == 0

    # 1,000 devices moved to the profile "in the Samsung portal", then one pull.
    edited = list(
        session.scalars(select(Device.kme_device_id).order_by(Device.id.desc()).limit(1000))
    )
    http = requests.Session()
    for kme_id in edited:
        resp = http.patch(f"{url}/_sim/devices/{kme_id}", json={"profileId": kme_profile_id})
        resp.raise_for_status()
    incremental_1k_s = pull()
    assert last_pull_total(session) == 1000
    moved = session.scalar(
        select(func.count()).where(
            Device.profile_id == profile.id, Device.kme_device_id.in_(edited)
        )
    )
    assert moved == 1000, moved
    ids = list(session.scalars(select(Device.id).order_by(Device.id).limit(args.move)))
    device_services.move_devices(session, ids, profile.id, "bench")
    session.commit()  # the clock starts at the committed move
    move_s = work_until_done(app)
    session.expire_all()
    pending = session.scalar(
        select(func.count()).select_from(Change).where(Change.status != "done")
    )
    synced = session.scalar(
        select(func.count()).where(Device.profile_id == profile.id, Device.sync_state == "synced")
    )
    assert pending == 0 and synced == args.move + len(edited), (pending, synced)

    bare_list_s, bare_insert_s = bare_pull(url, creds, args.devices, app.config)
    print(f"pull_100k_s: {pull_s:.2f} s")
    print(f"incremental_pull_s: {incremental_s:.3f} s")
    print(f"incremental_pull_1k_s: {incremental_1k_s:.3f} s")
    print(f"move_50k_synced_s: {move_s:.2f} s")
    print(f"bare_pull_list_s: {bare_list_s:.2f} s")
    print(f"bare_pull_insert_s: {bare_insert_s:.2f} s")
    print(f"pull_vs_bare_ratio: {pull_s / (bare_list_s + bare_insert_s):.2f}")


def bare_pull(url: str, creds: dict, expected: int, config) -> tuple[float, float]:
    """The pull's bare baseline: (seconds to list every device page with bare requests and
    json.loads, seconds to INSERT the same device rows and their `device_sync` rows, one
    executemany each, into a fresh database of the same schema, and commit)."""
    from flask_migrate import upgrade
    from sqlalchemy import insert

    from kmeweb.devices.models import Device, DeviceSync
    from kmeweb.extensions import utcnow
    from kmeweb.knox.types import Device as KmeDevice
    from kmeweb.profiles.services import ensure_default_profile

    page_size = int(config["KNOX_PAGE_SIZE"])
    bare = BarePager(url, creds)
    pages: list[list[dict]] = []
    seen = 0
    started = time.perf_counter()
    while seen < expected:
        page = bare.devices(len(pages), page_size)
        assert page, f"KME listed {seen} devices, {expected} expected"
        pages.append(page)
        seen += len(page)
    list_s = time.perf_counter() - started

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{_TMP.name}/bare.sqlite",
            "REDIS_URL": config["REDIS_URL"],
            "RATELIMIT_STORAGE_URI": config["REDIS_URL"],
        }
    )
    with app.app_context():
        upgrade()
        default_id = ensure_default_profile(db.session).id
        db.session.commit()
        now = utcnow()
        rows, seen = [], []
        for page in pages:
            for raw in page:
                d = KmeDevice(raw)
                rows.append(
                    {
                        "imei": d.imei or d.meid, "serial": d.serial, "model": d.model,
                        "approval": "approved", "profile_id": default_id, "attributes": {},
                        "kme_device_id": d.id, "kme_status": d.status, "version": 1,
                        "created_at": now, "updated_at": now,
                    }
                )  # fmt: skip
                seen.append(
                    {
                        "kme_seen_approval": "approved", "kme_seen_profile_id": default_id,
                        "kme_seen_user": d.user_name, "kme_seen_at": now,
                    }
                )  # fmt: skip
        started = time.perf_counter()
        # The same rows as the pull stores them: the device, and what KME held of it.
        ids = db.session.scalars(
            insert(Device.__table__).returning(Device.id, sort_by_parameter_order=True), rows
        ).all()
        db.session.execute(
            insert(DeviceSync.__table__),
            [{"device_id": i, **s} for i, s in zip(ids, seen, strict=True)],
        )
        db.session.commit()
        insert_s = time.perf_counter() - started
        count = db.session.scalar(select(func.count()).select_from(Device))
        assert count == expected, count
    return list_s, insert_s


def changed_since_cursor(url: str, creds: dict, session) -> int:
    """How many devices KME reports changed since the integration's pull cursor."""
    from _simulator import client_config

    from kmeweb.integration.models import get_integration
    from kmeweb.knox import KnoxClient

    cursor = get_integration(session).pull_cursor
    session.rollback()
    with KnoxClient(client_config(creds, url)) as client:
        return next(client.iter_device_pages(changed_after=cursor, page_size=1)).total_count


def last_pull_total(session) -> int:
    """Devices KME listed to the last pull (its operation's total)."""
    from kmeweb.operations.models import Operation

    session.expire_all()
    op = session.scalar(
        select(Operation).where(Operation.kind == "pull").order_by(Operation.id.desc())
    )
    return op.total


if __name__ == "__main__":
    main()
