"""Benchmark Approve All Devices and the Uploads tab, on SQLite and PostgreSQL.

Run from the repo root: `.venv/bin/python bench/approve.py [--devices N] [--skip-pg]
[--skip-sqlite] [--skip-tabs] [--skip-approve]`. Needs Redis at REDIS_URL (default
redis://127.0.0.1:6379/8; that database is
flushed) and, unless --skip-pg, PostgreSQL at BENCH_DATABASE_URL (or BENCH_PG_URL; default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres; a throwaway database is made there).
The KME simulator runs as a separate process. Prints on stdout:
  approve_100k_s: seconds from the Approve POST (the real view, signed in) to an upload of
    100,000 devices approved locally and in KME, every device synced and the operation done
    (a real RQ worker against the simulator, timed to the end of its last job: not the burst
    worker's own shutdown, see bench/_worker.py), SQLite
  approve_bare_100k_s: the same size of upload approved by one bare UPDATE of its device rows
    plus the one KME approval call, in the same run
  approve_vs_bare_ratio: the two above, divided
  approve_post_100k_s, approve_push_100k_s: approve_100k_s split: the Approve POST (its
    transaction committed) and the worker's push after it
  approve_bare_update_100k_s, approve_bare_kme_100k_s: approve_bare_100k_s split: the UPDATE
    (committed) and the KME approval call
  approve_100k_pg_s, approve_bare_100k_pg_s, approve_vs_bare_pg_ratio (and the four splits
    with _pg): the same on PostgreSQL
  uploads_tab_median_ms, upload_view_median_ms (and _pg_): median time of the Uploads tab and
    of one upload's View page, whole requests through the app, with `flask seed-scale`'s
    1,000 uploads and 1,000,000 devices; uploads_tab_by_pending_median_ms sorts by Pending
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import redis
import requests
from _database import add_database_flags, chosen, database
from _env import TMP as _TMP
from _env import log as _log
from _simulator import client_config, connect_integration, start_simulator
from _worker import work_until_done
from sqlalchemy import func, select, update

from kmeweb import create_app
from kmeweb.extensions import db

PASSWORD = "bench-approve-password-1"
TAB_RUNS = 21


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--skip-tabs", action="store_true")
    parser.add_argument("--skip-approve", action="store_true")
    add_database_flags(parser)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8")

    proc, url = start_simulator(os.path.join(_TMP.name, "sim.sqlite"))
    try:
        for suffix, kind in chosen(args):
            with database(kind, _TMP.name, "approve") as db_url:
                redis.Redis.from_url(redis_url).flushdb()
                app = create_app(
                    {
                        "SQLALCHEMY_DATABASE_URI": db_url,
                        "REDIS_URL": redis_url,
                        "RATELIMIT_STORAGE_URI": redis_url,
                        "WTF_CSRF_ENABLED": True,
                    }
                )
                with app.app_context():
                    run(app, url, args, suffix)
                    db.session.remove()
                    db.engine.dispose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _tenant(url: str, devices: int) -> dict:
    """A tenant whose reseller (not auto-approving) uploaded two uploads of `devices`."""
    creds = requests.post(url + "/_sim/tenants", json={"legacy": False}, timeout=30).json()
    cid = creds["customer_id"]
    requests.post(
        url + "/_sim/resellers",
        json={"customerId": cid, "name": "Bench Reseller", "autoApprove": False},
        timeout=30,
    ).raise_for_status()
    for order in ("BENCH-FLOW", "BENCH-BARE"):
        requests.post(
            url + "/_sim/uploads",
            json={"customerId": cid, "count": devices, "orderNo": order},
            timeout=600,
        ).raise_for_status()
    return creds


def _csrf(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def run(app, url: str, args: argparse.Namespace, suffix: str) -> None:
    from flask_migrate import upgrade

    from kmeweb.auth import services as auth_services
    from kmeweb.devices.models import Device
    from kmeweb.integration import uploads
    from kmeweb.integration.models import Upload
    from kmeweb.knox import KnoxClient
    from kmeweb.operations.models import Operation
    from kmeweb.profiles.services import default_profile
    from kmeweb.sync import jobs

    upgrade()
    session = db.session
    creds = _tenant(url, args.devices)
    _log(f"simulator: two pending uploads of {args.devices:,} devices")
    connect_integration(session, url, creds)
    auth_services.create_admin(session, "bench@example.com", PASSWORD, "admin", "Bench")
    session.commit()
    operation = jobs.start_pull(session, "bench")
    session.commit()
    started = time.perf_counter()
    jobs.pull_job(operation.id)
    _log(f"pull of {2 * args.devices:,} new devices: {time.perf_counter() - started:.1f} s")
    flow = session.scalar(select(Upload).where(Upload.order_number == "BENCH-FLOW"))
    bare = session.scalar(select(Upload).where(Upload.order_number == "BENCH-BARE"))
    pull_op = session.get(Operation, operation.id)
    for upload in (flow, bare):
        found = uploads.pending_count(session, upload.id)
        assert found == args.devices, (
            f"{upload.order_number}: {found:,} devices pending after the pull, not "
            f"{args.devices:,}; devices of the upload by approval: "
            + str(
                session.execute(
                    select(Device.approval, func.count())
                    .where(Device.upload_id == upload.id)
                    .group_by(Device.approval)
                ).all()
            )
            + f"; all devices: {session.scalar(select(func.count()).select_from(Device)):,}"
            + f"; the pull: {pull_op.status} {pull_op.error or ''}"
        )
    session.commit()
    _log(f"pulled; approving {args.devices:,} devices")

    client = app.test_client()
    token = _csrf(client, "/auth/login")
    resp = client.post(
        "/auth/login",
        data={"email": "bench@example.com", "password": PASSWORD, "csrf_token": token},
    )
    assert resp.status_code == 303, resp.status_code
    if args.skip_approve:
        tabs(app, client, session, suffix)
        return
    token = _csrf(client, f"/integration/uploads/{flow.id}/approve")

    # The console's way: the Approve POST, then a worker pushes to KME until all is synced.
    started = time.perf_counter()
    resp = client.post(
        f"/integration/uploads/{flow.id}/approve",
        data={"csrf_token": token, "expected_pending": str(args.devices)},
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    post_s = time.perf_counter() - started
    approve_s = post_s + work_until_done(app)
    session.expire_all()
    op = session.scalar(select(Operation).where(Operation.kind == "upload.approve"))
    synced = session.scalar(
        select(func.count()).where(
            Device.upload_id == flow.id,
            Device.approval == "approved",
            Device.sync_state == "synced",
        )
    )
    assert op.status == "done" and synced == args.devices, (op.status, op.error, synced)
    session.commit()

    # Bare: one UPDATE of the device rows and the one KME approval call.
    default_id = default_profile(session).id
    session.commit()
    started = time.perf_counter()
    session.execute(
        update(Device)
        .where(Device.upload_id == bare.id, Device.approval == "pending")
        .values(approval="approved", profile_id=default_id)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    bare_update_s = time.perf_counter() - started
    with KnoxClient(client_config(creds, url)) as knox:
        result = knox.approve_uploads([bare.kme_upload_id])
    bare_s = time.perf_counter() - started
    assert result.ok, result
    assert uploads.pending_count(session, bare.id) == 0
    session.commit()

    print(f"approve_100k{suffix}_s: {approve_s:.2f} s", flush=True)
    print(f"approve_bare_100k{suffix}_s: {bare_s:.2f} s", flush=True)
    print(f"approve_vs_bare{suffix}_ratio: {approve_s / bare_s:.2f}", flush=True)
    # Where the time goes: the POST (approve, place, history, outbox; committed) and the
    # worker's push after it; the bare UPDATE alone and the KME call after it.
    print(f"approve_post_100k{suffix}_s: {post_s:.2f} s", flush=True)
    print(f"approve_push_100k{suffix}_s: {approve_s - post_s:.2f} s", flush=True)
    print(f"approve_bare_update_100k{suffix}_s: {bare_update_s:.2f} s", flush=True)
    print(f"approve_bare_kme_100k{suffix}_s: {bare_s - bare_update_s:.2f} s", flush=True)
    if not args.skip_tabs:
        tabs(app, client, session, suffix)


def tabs(app, client, session, suffix: str) -> None:
    """Median times of the Uploads tab and a View page with seed-scale's tenant."""
    from kmeweb.demo.scale import seed_scale, vacuum_analyze
    from kmeweb.integration.models import Upload

    result = seed_scale(session, uploads=1000, devices=1_000_000, profiles=1000, progress=_log)
    session.commit()
    vacuum_analyze(db.engine)
    _log(f"seed-scale: {result}")
    pending = session.scalar(
        select(Upload.id)
        .where(Upload.kme_upload_id.like(f"SCALE-{result['run']}-%"), Upload.status == "pending")
        .order_by(Upload.id.desc())
        .limit(1)
    )
    session.commit()
    paths = {
        "uploads_tab": "/integration/uploads",
        "uploads_tab_by_pending": "/integration/uploads?sort=pending&dir=desc",
        "upload_view": f"/integration/uploads/{pending}",
    }
    for name, path in paths.items():
        times = []
        for i in range(TAB_RUNS + 2):
            started = time.perf_counter()
            resp = client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            assert resp.status_code == 200, (path, resp.status_code)
            if i >= 2:  # two warm-up requests
                times.append(elapsed)
        body = resp.get_data(as_text=True)
        assert "of 1,00" in body or "1–50 of" in body, path
        print(f"{name}_median{suffix}_ms: {statistics.median(times):.1f} ms", flush=True)


if __name__ == "__main__":
    main()
