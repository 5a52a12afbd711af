"""Benchmark the sync engine on SQLite against the simulator (a separate process).

Run from the repo root: `.venv/bin/python bench/sync.py [--devices N] [--move N]`.
Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/14; that database is flushed).
Prints on stdout:
  pull_100k_s: seconds to pull 100,000 devices into an empty database
  incremental_pull_s: seconds for a pull with nothing changed
  move_50k_synced_s: seconds from a committed move of 50,000 devices to all of them synced
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_TMP = tempfile.TemporaryDirectory(prefix="kmeweb-bench-")
os.environ["KMEWEB_INSTANCE_DIR"] = _TMP.name
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("KMEWEB_ENCRYPTION_KEY", "x6bTJp0Q2R9T9tqkT6v1wW1C7sGkKqN8s0u3Yh0v7lE=")

import redis  # noqa: E402
from _simulator import seed_tenant, start_simulator  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from kmeweb import create_app  # noqa: E402
from kmeweb.extensions import db  # noqa: E402


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    from kmeweb.integration import services as integration_services
    from kmeweb.operations.queue import run_worker
    from kmeweb.profiles import services as profile_services
    from kmeweb.profiles.models import Profile
    from kmeweb.sync import jobs
    from kmeweb.sync.models import Change

    upgrade()
    session = db.session
    integration_services.save_settings(
        session,
        {
            "name": "Bench", "auth_mode": "oauth", "base_url": url,
            "token_url": url + "/ams/v1/oauth2/token",
            "client_id": creds["oauth_client_id"], "secret": creds["oauth_client_secret"],
            "customer_id": creds["customer_id"],
            "encryption_public_key": creds.get("encryption_public_key"),
        },
        "bench",
    )  # fmt: skip
    integration_services.activate_integration(session, "bench")
    session.commit()

    def pull() -> float:
        operation = jobs.start_pull(session, "bench")
        session.commit()
        started = time.perf_counter()
        jobs.pull_job(operation.id)
        return time.perf_counter() - started

    pull_s = pull()
    count = session.scalar(select(func.count()).select_from(Device))
    assert count == args.devices, count
    incremental_s = pull()

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
    assert session.get(Profile, profile.id).kme_profile_id
    ids = list(session.scalars(select(Device.id).order_by(Device.id).limit(args.move)))
    device_services.move_devices(session, ids, profile.id, "bench")
    session.commit()  # the clock starts at the committed move
    started = time.perf_counter()
    run_worker(app, burst=True, with_scheduler=False)
    move_s = time.perf_counter() - started
    session.expire_all()
    pending = session.scalar(
        select(func.count()).select_from(Change).where(Change.status != "done")
    )
    synced = session.scalar(
        select(func.count()).where(Device.profile_id == profile.id, Device.sync_state == "synced")
    )
    assert pending == 0 and synced == args.move, (pending, synced)

    print(f"pull_100k_s: {pull_s:.2f} s")
    print(f"incremental_pull_s: {incremental_s:.3f} s")
    print(f"move_50k_synced_s: {move_s:.2f} s")


if __name__ == "__main__":
    main()
