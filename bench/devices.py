"""Benchmark the device-history figures of issue 24 on PostgreSQL.

Run from the repo root: `.venv/bin/python bench/devices.py [--only NAME ...] [--events N]`.
Each figure is a function in FIGURES: it seeds what it needs into the bench's own PostgreSQL
database (created at BENCH_DATABASE_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres, and dropped at the end) and returns
`metric: value unit` lines, which are printed on stdout (progress goes to stderr). Needs Redis
at REDIS_URL (default redis://127.0.0.1:6379/7; that database is flushed).

Figures:
  purge_10m_events: 10,000,000 audit events older than the retention (90 days) and 200,000
    newer ones, with 10,000 finished operations (50,000 changes) as old; `flask
    purge-history` deletes them in its own process while this one fetches console pages
    (the Audit log, the Bulk Enrollment list, a profile page, Operations) over HTTP from a
    real server, signed in as an admin, one after the other for as long as the purge runs.
      purge_10m_events_max_page_ms: the slowest of those pages (goal: under 1,000 ms)
      purge_10m_events_s: the purge's duration, as the command reports it
      purge_10m_events_rows_per_s: rows it deleted per second
  device_history_1k_events: 1,000,000 devices (bulk SQL), each with one history event, and one
    device with 1,000 events of every kind (moves, user and attribute edits, pushes carried
    by 300 changes of 2 attempts each, changes seen in the Samsung portal, enrollments accepted
    and refused) and 100 audit events targeting it; its History page (GET
    /devices/<id>/history, first page of 50) fetched over HTTP, signed in as an admin.
      device_history_1k_events_p95_ms: p95 of --history-requests fetches (goal: under 200 ms)
  device_page: 1,000,000 devices (bulk SQL) spread over the KME profiles, each with an upload,
    a user, the last pull's values and a device event, and 100,000 audit events targeted at
    devices; GET /devices/<id> of 50 devices picked at random, one after the other, signed in
    as an admin over HTTP from a real server.
      device_page_p95_ms: the 95th percentile of those 50 page loads
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import requests
import sqlalchemy as sa
from _database import throwaway_pg_database
from _env import ROOT
from _env import log as _log

from kmeweb import create_app
from kmeweb.extensions import db

PASSWORD = "bench password 12345"
ADMIN = "bench@example.com"
RETENTION_DAYS = 90
DAY_S = 86400.0


@dataclass
class Bench:
    """What every figure gets: the app (its context is pushed), the database URL, the console
    served over HTTP at `url`, a requests session signed in as an admin, and the options."""

    app: object
    database_url: str
    url: str
    http: requests.Session
    args: argparse.Namespace


def _pg_database() -> tuple[str, Callable[[], None]]:
    return throwaway_pg_database("devices")


def _sql(statement: str, **params) -> None:
    """One statement on a connection of its own, committed (AUTOCOMMIT: VACUUM may run)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(statement), params)


# Audit events as the console writes them: mostly sync and device events naming one device,
# some admins' changes; `at` from `start_s` seconds ago, one every `step_s` seconds.
SEED_EVENTS = """
INSERT INTO audit_event (at, actor, actor_id, action, target_type, target_id, details, ip)
SELECT (now() AT TIME ZONE 'utc') - make_interval(secs => :start_s)
         + (g - 1) * make_interval(secs => :step_s),
       CASE WHEN g % 7 = 0 THEN 'admin@example.com' WHEN g % 3 = 0 THEN 'device' ELSE 'sync' END,
       NULL,
       (ARRAY['device.move', 'device.approve', 'device.enroll', 'sync.portal_change',
              'profile.update', 'device.user'])[1 + g % 6],
       'device',
       (1 + g % 1000000)::text,
       json_build_object('to_profile_id', 1 + g % 20,
                         'device_ids', json_build_array(1 + g % 1000000),
                         'from_profiles', json_build_object((1 + g % 20)::text, 1)),
       CASE WHEN g % 7 = 0 THEN '10.1.' || (g % 250) || '.' || (g % 200) END
FROM generate_series(1, :n) AS g
"""

SEED_OPERATIONS = """
WITH ops AS (
  INSERT INTO operation (kind, label, status, total, done, created_at, started_at, finished_at)
  SELECT 'device.move', 'Move 2,500 devices', 'done', 2500, 2500,
         (now() AT TIME ZONE 'utc') - make_interval(days => 200) + g * interval '1 minute',
         (now() AT TIME ZONE 'utc') - make_interval(days => 200) + g * interval '1 minute',
         (now() AT TIME ZONE 'utc') - make_interval(days => 200) + g * interval '2 minute'
  FROM generate_series(1, :n) AS g
  RETURNING id, created_at
)
INSERT INTO change (kind, payload, device_count, status, attempts, operation_id, created_at,
                    done_at, next_attempt_at)
SELECT 'device.move', json_build_object('device_ids', json_build_array(c, c + 1)), 500, 'done',
       1, ops.id, ops.created_at, ops.created_at + interval '1 minute', ops.created_at
FROM ops CROSS JOIN generate_series(1, 5) AS c
"""


def seed_history(events: int, recent: int, operations: int) -> None:
    """`events` audit events 100 to 400 days old, `recent` ones of the last 89 days, and
    `operations` finished operations of 5 changes each, 200 days old; then what autovacuum
    does to a live database (statistics, visibility map). Indexes are built after the rows,
    as a restore would."""
    started = time.perf_counter()
    _sql("DROP INDEX ix_audit_event_at")
    _sql("DROP INDEX ix_audit_event_action")
    step = 2_000_000
    for first in range(0, events, step):
        n = min(step, events - first)
        start = DAY_S * (400 - 300 * first / events)
        _sql(SEED_EVENTS, n=n, start_s=start, step_s=DAY_S * 300 / events)
        _log(f"  {first + n:,} old audit events ({time.perf_counter() - started:.0f} s)")
    _sql(SEED_EVENTS, n=recent, start_s=DAY_S * (RETENTION_DAYS - 1), step_s=DAY_S * 89 / recent)
    _sql(SEED_OPERATIONS, n=operations)
    _sql("CREATE INDEX ix_audit_event_at ON audit_event (at)")
    _sql("CREATE INDEX ix_audit_event_action ON audit_event (action)")
    _sql("VACUUM ANALYZE")
    _log(f"seeded {events + recent:,} audit events in {time.perf_counter() - started:.0f} s")


def _count(table: str, where: str = "") -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} {where}")).scalar_one()


def measure_purge(bench: Bench) -> dict[str, str]:
    """purge_10m_events: see the module docstring."""
    from kmeweb.audit.retention import save_retention
    from kmeweb.profiles.models import Profile

    args = bench.args
    seed_history(args.events, args.recent_events, args.operations)
    save_retention(db.session, {"days": str(RETENTION_DAYS)}, "bench")
    db.session.commit()
    profile_id = db.session.scalar(sa.select(sa.func.max(Profile.id)))
    db.session.remove()
    pages = ["/audit/", "/audit/?action=device.move", "/audit/?page=3", "/profiles/"]
    pages += [f"/profiles/{profile_id}", "/operations/"]
    idle = _fetch_rounds(bench, pages, rounds=3)
    _log("idle, slowest of 3: " + ", ".join(f"{p} {max(t):.0f} ms" for p, t in idle.items()))

    env = {
        **os.environ,
        "DATABASE_URL": bench.database_url,
        "REDIS_URL": args.redis_url,
        "FLASK_APP": "wsgi",
    }
    command = [sys.executable, "-m", "flask", "purge-history"]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    purge = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    during: dict[str, list[float]] = {p: [] for p in pages}
    while purge.poll() is None:
        for path, times in _fetch_rounds(bench, pages, rounds=1).items():
            during[path].extend(times)
    out, err = purge.communicate()
    if purge.returncode != 0:
        raise SystemExit(f"flask purge-history failed:\n{out}\n{err}")
    _log(out.strip())
    found = re.search(r"deleted ([\d,]+) audit events, ([\d,]+) changes and ([\d,]+) operations"
                      r".* in ([\d.]+) s", out)  # fmt: skip
    assert found, out
    audit, changes, operations = (int(found.group(i).replace(",", "")) for i in (1, 2, 3))
    seconds = float(found.group(4))
    assert audit == args.events, (audit, args.events)
    assert _count("audit_event", "WHERE target_type = 'device'") == args.recent_events
    assert _count("operation") == 0 and _count("change") == 0
    served = sum(len(t) for t in during.values())
    for path, times in during.items():
        times.sort()
        _log(f"during the purge {path}: {len(times)} requests, median "
             f"{statistics.median(times):.0f} ms, max {times[-1]:.0f} ms")  # fmt: skip
    slowest = max(max(t) for t in during.values())
    _log(f"{served} pages served while the purge ran")
    return {
        "purge_10m_events_max_page_ms": f"{slowest:.0f} ms",
        "purge_10m_events_s": f"{seconds:.1f} s",
        "purge_10m_events_rows_per_s": f"{(audit + changes + operations) / seconds:,.0f} rows/s",
    }


PAGE_SEED_DEVICES = """
WITH p AS (SELECT array_agg(id ORDER BY id) AS ids FROM profile WHERE kind = 'kme'),
     u AS (SELECT array_agg(id ORDER BY id) AS ids FROM upload),
     e AS (SELECT array_agg(id ORDER BY id) AS ids FROM end_user)
INSERT INTO device (imei, serial, model, upload_id, approval, profile_id, end_user_id, attributes,
                    version, created_at, updated_at, kme_device_id, kme_status, registered_at,
                    agent_version)
SELECT '36' || lpad(g::text, 13, '0'), 'RB' || lpad(g::text, 10, '0'), 'SM-A546B',
       u.ids[1 + g % cardinality(u.ids)], 'approved', p.ids[1 + g % cardinality(p.ids)],
       CASE WHEN cardinality(e.ids) > 0 THEN e.ids[1 + g % cardinality(e.ids)] END,
       json_build_object('site', 'site-' || (g % 50)), 1,
       now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 'kd-' || g, 'Profile Assigned',
       CASE WHEN g % 3 = 0 THEN now() AT TIME ZONE 'utc' END,
       CASE WHEN g % 3 = 0 THEN '2.4.1' END
FROM generate_series(:first, :last) AS g, p, u, e
"""

# What KME held of each device when the pull read it (as a pull leaves every linked device).
PAGE_SEED_DEVICE_SYNC = """
INSERT INTO device_sync (device_id, sync_state, kme_seen_approval, kme_seen_profile_id,
                         kme_seen_at)
SELECT id, 'synced', approval, profile_id, now() AT TIME ZONE 'utc' FROM device
"""

PAGE_SEED_DEVICE_EVENTS = """
INSERT INTO device_event (device_id, at, kind, actor, details)
SELECT id, now() AT TIME ZONE 'utc', 'approved', 'sync', '{}'::json FROM device
"""

PAGE_SEED_DEVICE_AUDIT = """
INSERT INTO audit_event (at, actor, action, target_type, target_id, details)
SELECT now() AT TIME ZONE 'utc', 'sync', 'device.changed_in_portal', 'device', id::text,
       json_build_object('note', 'changed in Samsung portal')
FROM device WHERE id % 10 = 0
"""


def measure_device_page(bench: Bench) -> dict[str, str]:
    """device_page: see the module docstring."""
    import random

    started = time.perf_counter()
    step = 250_000
    for first in range(1, 1_000_001, step):
        _sql(PAGE_SEED_DEVICES, first=first, last=first + step - 1)
        _log(f"  {first + step - 1:,} devices ({time.perf_counter() - started:.0f} s)")
    _sql(PAGE_SEED_DEVICE_SYNC)
    _sql(PAGE_SEED_DEVICE_EVENTS)
    _sql(PAGE_SEED_DEVICE_AUDIT)
    _sql("VACUUM ANALYZE")
    _log(f"seeded the devices in {time.perf_counter() - started:.0f} s")
    with db.engine.connect() as conn:
        low, high = conn.execute(sa.text("SELECT min(id), max(id) FROM device")).one()
    rng = random.Random(24)
    pages = [f"/devices/{rng.randint(low, high)}" for _ in range(50)]
    bench.http.get(bench.url + pages[0], timeout=60)  # warm: templates compiled once
    times = [t for ts in _fetch_rounds(bench, pages, 1).values() for t in ts]
    p95 = statistics.quantiles(times, n=20)[-1]
    return {"device_page_p95_ms": f"{p95:.0f} ms"}


def _fetch_rounds(bench: Bench, pages: list[str], rounds: int) -> dict[str, list[float]]:
    """Milliseconds of each GET of each page, `rounds` times, one after the other."""
    times: dict[str, list[float]] = {p: [] for p in pages}
    for _ in range(rounds):
        for path in pages:
            started = time.perf_counter()
            response = bench.http.get(bench.url + path, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            times[path].append(elapsed)
    return times


SEED_DEVICES = """
INSERT INTO device (imei, model, approval, profile_id, version, attributes, created_at,
                    updated_at)
SELECT '35' || lpad((:first + g)::text, 13, '0'), 'SM-A546B', 'approved',
       (SELECT id FROM profile WHERE kind = 'kme' ORDER BY id LIMIT 1 OFFSET (g % 5)),
       1, '{}', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
FROM generate_series(1, :n) AS g
"""

# One event for every device (its move into its profile): the index holds a million devices.
SEED_DEVICE_EVENTS = """
INSERT INTO device_event (device_id, at, kind, actor, details)
SELECT id, created_at, 'moved', 'admin@example.com',
       json_build_object('from', NULL, 'to', profile_id)
FROM device
"""

# The device under test: 300 changes that carried it, each tried twice (a retry, then accepted).
SEED_CHANGES = """
WITH made AS (
  INSERT INTO change (kind, payload, device_count, status, attempts, created_at, done_at,
                      next_attempt_at)
  SELECT 'device.move', json_build_object('device_ids', json_build_array(:device)), 1, 'done', 2,
         (now() AT TIME ZONE 'utc') - make_interval(mins => 1000 - g),
         (now() AT TIME ZONE 'utc') - make_interval(mins => 1000 - g),
         (now() AT TIME ZONE 'utc') - make_interval(mins => 1000 - g)
  FROM generate_series(1, 300) AS g
  RETURNING id, created_at
)
INSERT INTO change_attempt (change_id, at, outcome, code, message)
SELECT id, created_at + make_interval(secs => a),
       CASE WHEN a = 1 THEN 'retry' ELSE 'accepted' END,
       CASE WHEN a = 1 THEN '503' END,
       CASE WHEN a = 1 THEN 'Service Unavailable' END
FROM made CROSS JOIN generate_series(1, 2) AS a
"""

SEED_ONE_DEVICE = """
INSERT INTO device_event (device_id, at, kind, actor, change_id, details)
SELECT :device, (now() AT TIME ZONE 'utc') - make_interval(mins => 1000 - g),
       (ARRAY['moved', 'user', 'attributes', 'pushed', 'portal_change', 'enroll_accepted',
              'enroll_refused', 'unassigned', 'approved', 'not_in_kme'])[1 + g % 10],
       CASE WHEN g % 10 IN (5, 6) THEN 'device' WHEN g % 10 = 4 THEN 'sync'
            ELSE 'admin@example.com' END,
       CASE WHEN g % 10 IN (0, 7, 8) THEN
         (SELECT id FROM change ORDER BY id LIMIT 1 OFFSET (g % 300)) END,
       CASE g % 10
         WHEN 0 THEN json_build_object('from', :p1, 'to', :p2)
         WHEN 1 THEN json_build_object('from', NULL, 'to', NULL, 'password', true)
         WHEN 2 THEN json_build_object('changed', json_build_object('site', json_build_array(
                       'Paris', 'Lyon')))
         WHEN 3 THEN json_build_object('label', 'KME does not know this device',
                       'code', 4001703, 'reason', 'BULK_ENROLL_DEVICE_INVALID')
         WHEN 4 THEN json_build_object('profile_id', json_build_array(:p1, :p2))
         WHEN 5 THEN json_build_object('agent_version', '7.1', 'ip', '10.0.0.1')
         WHEN 6 THEN json_build_object('code', 'token_expired', 'message', 'expired')
         WHEN 7 THEN json_build_object('from', :p2, 'to', :p1)
         WHEN 8 THEN json_build_object('to', :p1, 'upload', 'U-1')
         ELSE '{}'::json END
FROM generate_series(1, 1000) AS g
"""

SEED_DEVICE_AUDIT = """
INSERT INTO audit_event (at, actor, action, target_type, target_id, details)
SELECT (now() AT TIME ZONE 'utc') - make_interval(mins => 1000 - g * 10), 'admin@example.com',
       'device.check', 'device', CAST(:device AS text), json_build_object('profile_id', :p1)
FROM generate_series(1, 100) AS g
"""


def measure_device_history(bench: Bench) -> dict[str, str]:
    """device_history_1k_events: see the module docstring."""
    args = bench.args
    started = time.perf_counter()
    have = _count("device")
    step = 250_000
    for first in range(have, args.history_devices, step):
        n = min(step, args.history_devices - first)
        _sql(SEED_DEVICES, first=first, n=n)
        _log(f"  {first + n:,} devices ({time.perf_counter() - started:.0f} s)")
    _sql(SEED_DEVICE_EVENTS)
    with db.engine.connect() as conn:
        device = conn.execute(sa.text("SELECT max(id) FROM device")).scalar_one()
        p1, p2 = conn.execute(
            sa.text("SELECT id FROM profile WHERE kind = 'kme' ORDER BY id LIMIT 2")
        ).scalars()
    _sql(SEED_CHANGES, device=device)
    _sql(SEED_ONE_DEVICE, device=device, p1=p1, p2=p2)
    _sql(SEED_DEVICE_AUDIT, device=device, p1=p1)
    _sql("VACUUM ANALYZE")
    events = _count("device_event", f"WHERE device_id = {device}")
    _log(f"seeded {_count('device'):,} devices, {_count('device_event'):,} device events "
         f"({events:,} for device {device}) in {time.perf_counter() - started:.0f} s")  # fmt: skip
    path = f"/devices/{device}/history"
    first = bench.http.get(bench.url + path, timeout=60)
    assert first.status_code == 200 and first.text.count('data-testid="history-entry"') == 50
    _fetch_rounds(bench, [path], rounds=5)  # warm up
    times = sorted(_fetch_rounds(bench, [path], rounds=args.history_requests)[path])
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    _log(f"{path}: {len(times)} requests, median {statistics.median(times):.1f} ms, "
         f"p95 {p95:.1f} ms, max {times[-1]:.1f} ms")  # fmt: skip
    return {"device_history_1k_events_p95_ms": f"{p95:.0f} ms"}


#: Every figure of this bench, by name: each seeds what it needs and returns its lines.
FIGURES: dict[str, Callable[[Bench], dict[str, str]]] = {
    "purge_10m_events": measure_purge,
    "device_history_1k_events": measure_device_history,
    "device_page": measure_device_page,
}


def _serve(app) -> tuple[str, Callable[[], None]]:
    """The console over HTTP on a free loopback port (a threaded Werkzeug server)."""
    from tests.servers import start_serving, wsgi_server

    server = wsgi_server(app)
    url = start_serving(server)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return url, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(FIGURES), default=None)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--recent-events", type=int, default=200_000)
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=None, help="KMEWEB_PURGE_BATCH_SIZE")
    parser.add_argument("--history-devices", type=int, default=1_000_000)
    parser.add_argument("--history-requests", type=int, default=50)
    args = parser.parse_args()
    args.redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7")
    redis.Redis.from_url(args.redis_url).flushdb()

    from flask_migrate import upgrade

    from kmeweb.auth import services as auth
    from kmeweb.demo.scale import seed_scale

    url, drop = _pg_database()
    stop = None
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": args.redis_url,
                "RATELIMIT_STORAGE_URI": args.redis_url,
                "WTF_CSRF_ENABLED": False,
            }
        )
        with app.app_context():
            upgrade()
            seed_scale(db.session, uploads=2, devices=2000, profiles=5)
            auth.create_admin(db.session, ADMIN, PASSWORD, "admin", "Bench")
            db.session.commit()
            db.session.remove()
            base, stop = _serve(app)
            http = requests.Session()
            signed_in = http.post(
                base + "/auth/login", data={"email": ADMIN, "password": PASSWORD}, timeout=30
            )
            assert signed_in.ok and "/auth/login" not in signed_in.url, signed_in.url
            bench = Bench(app, url, base, http, args)
            for name in args.only or FIGURES:
                for metric, value in FIGURES[name](bench).items():
                    print(f"{metric}: {value}", flush=True)
    finally:
        if stop is not None:
            stop()
        with_app = locals().get("app")
        if with_app is not None:
            with with_app.app_context():
                db.engine.dispose()
        drop()


if __name__ == "__main__":
    main()
