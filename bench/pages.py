"""Benchmark the Bulk Enrollment pages on a large tenant, on SQLite and on PostgreSQL.

Run from the repo root: `.venv/bin/python bench/pages.py [--db sqlite|postgresql|both]
[--devices N] [--profiles N] [--big N] [--requests N]`. Seeds each database with
`flask seed-scale`'s code (1,000 profiles, 1,000,000 devices by default), then makes one
profile hold `--big` (100,000) of them. Requests go through the whole Flask stack (routing,
login, view, template) with the test client, signed in as an admin. Needs Redis at REDIS_URL
(default redis://127.0.0.1:6379/7, flushed) and, for PostgreSQL, a server at
BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres) where a
throwaway database is created and dropped.

Prints on stdout, per database (suffix _sqlite / _postgresql):
  profile_list_median_ms, profile_list_p95_ms: the Bulk Enrollment list, first page
  profile_page_median_ms, profile_page_p95_ms: the profile page of the big profile
  imei_search_median_ms, imei_search_p95_ms: an IMEI prefix search on that page
  inventory_first_byte_ms: Download Existing Inventory of the big profile, to its first bytes
  inventory_100k_s: the whole download
  inventory_peak_rss_mb: the process's peak resident memory while streaming, above its memory
    before (0 when the heap grown by the seeding already had room: pages freed earlier are reused)
  inventory_peak_alloc_mb: the peak of Python's allocations while streaming it a second time,
    above what was allocated before (tracemalloc, which slows that pass: not the timed one)
  all_matching_move_100k_s: select all of the big profile's devices ("all N matching") and
    move them: seconds to the committed operation
  bare_move_100k_s, move_vs_bare_ratio: the move's bare baseline (one UPDATE of the same
    device rows and one INSERT of the same outbox rows, committed) and the move over it
  With --scale-divisor N (default 10) a second tenant of devices/N (big/N in its big profile)
  is seeded beside the first, and the Bulk Enrollment list and the big profile's page are
  requested on both, interleaved request by request:
  profile_list_p95_large_ms, profile_list_p95_small_ms, profile_page_p95_large_ms,
  profile_page_p95_small_ms, and list_scale_ratio, page_scale_ratio (large / small p95; a
  page whose cost does not grow with the fleet is near 1)
  kept_counts_check_ms: the sweeper's check of every profile's kept device counts (a fresh
    grouped count of every device, compared)
  metrics_scrape_ms, metrics_scrape_p95_ms: GET /metrics (median, p95; goal < 50 ms), with the
    device and token counts as the sweeper leaves them in Redis
  metrics_inventory_count_ms: the sweeper's count of devices and tokens for /metrics
  overview_median_ms, overview_p95_ms: the Overview (`/`: funnel, Needs attention, Sync health)
  overview_filtered_median_ms, overview_filtered_p95_ms: its funnel filtered by one reseller
    (the htmx fragment)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import redis
from _database import throwaway_pg_database
from _env import TMP as _TMP
from _env import log as _log

from kmeweb import create_app
from kmeweb.extensions import db

PASSWORD = "bench password 12345"


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _timings(client, url: str, n: int) -> tuple[float, float]:
    """(median, p95) milliseconds of `n` GETs of `url`, after two warm-up requests."""
    for _ in range(2):
        warm = client.get(url)
        assert warm.status_code == 200, (url, warm.status_code, warm.get_data(as_text=True)[-3000:])
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url)
        response.get_data()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def _pg_database() -> tuple[str, Callable[[], None]]:
    return throwaway_pg_database("pages")


def seed(args: argparse.Namespace) -> tuple[int, int]:
    """Seed the tenant; returns (big profile id, move target id)."""
    from sqlalchemy import func, select, update

    from kmeweb.auth import services as auth
    from kmeweb.demo.scale import seed_scale
    from kmeweb.devices.models import Device
    from kmeweb.profiles import counts as kept_counts
    from kmeweb.profiles.models import Profile

    session = db.session
    started = time.perf_counter()
    seed_scale(
        session,
        uploads=max(1, args.devices // 1000),
        devices=args.devices,
        profiles=args.profiles,
        progress=_log,
    )
    session.commit()
    kme = list(
        session.scalars(select(Profile.id).where(Profile.kind == "kme").order_by(Profile.id))
    )
    big, target = kme[0], kme[1]
    default = session.scalar(select(Profile.id).where(Profile.kind == "kme_default"))
    # One profile holds `big` devices: the approved devices with the lowest ids move into it.
    ids = (
        select(Device.id)
        .where(Device.approval == "approved", Device.profile_id.not_in([big, default]))
        .order_by(Device.id)
        .limit(args.big)
        .scalar_subquery()
    )
    session.execute(
        update(Device)
        .where(Device.id.in_(ids))
        .values(profile_id=big)
        .execution_options(synchronize_session=False)
    )
    kept_counts.recount(session)  # the UPDATE above moved devices behind the services' back
    auth.create_admin(session, "bench@example.com", PASSWORD, "admin", "Bench")
    session.commit()
    if db.engine.dialect.name == "postgresql":
        # What autovacuum does to a live database: statistics, and the visibility map that
        # lets counts read the indexes alone.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    held = session.scalar(select(func.count()).where(Device.profile_id == big))
    total = session.scalar(select(func.count()).select_from(Device))
    seconds = time.perf_counter() - started
    _log(f"seeded {total:,} devices, {held:,} in the big profile, in {seconds:.0f} s")
    return big, target


def measure_overview(client, requests: int) -> dict[str, str]:
    """The Overview page and its reseller-filtered funnel (goal: under 100 ms p95 with a
    million devices on PostgreSQL)."""
    from sqlalchemy import func, select

    from kmeweb.integration.models import Reseller

    reseller = db.session.scalar(select(func.min(Reseller.id)))
    db.session.rollback()
    out: dict[str, str] = {}
    median, p95 = _timings(client, "/", requests)
    out["overview_median_ms"], out["overview_p95_ms"] = f"{median:.1f} ms", f"{p95:.1f} ms"
    client.environ_base["HTTP_HX_REQUEST"] = "true"
    try:
        median, p95 = _timings(client, f"/?reseller={reseller}&profile=", requests)
    finally:
        del client.environ_base["HTTP_HX_REQUEST"]
    out["overview_filtered_median_ms"] = f"{median:.1f} ms"
    out["overview_filtered_p95_ms"] = f"{p95:.1f} ms"
    return out


def _signed_in(app):
    client = app.test_client()
    response = client.post("/auth/login", data={"email": "bench@example.com", "password": PASSWORD})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def measure(
    app,
    args: argparse.Namespace,
    suffix: str,
    seeded: tuple[int, int] | None = None,
    client: Any = None,
) -> dict[str, str]:
    from sqlalchemy import func, select

    from kmeweb.devices.models import Device
    from kmeweb.operations.models import Operation
    from kmeweb.profiles import counts as kept_counts

    big, target = seeded or seed(args)
    session = db.session
    client = client or _signed_in(app)
    out: dict[str, str] = measure_overview(client, args.requests)

    median, p95 = _timings(client, "/profiles/", args.requests)
    out["profile_list_median_ms"], out["profile_list_p95_ms"] = f"{median:.1f} ms", f"{p95:.1f} ms"
    median, p95 = _timings(client, f"/profiles/{big}", args.requests)
    out["profile_page_median_ms"], out["profile_page_p95_ms"] = f"{median:.1f} ms", f"{p95:.1f} ms"
    imei = session.scalar(
        select(Device.imei).where(Device.profile_id == big).order_by(Device.id.desc()).limit(1)
    )
    median, p95 = _timings(client, f"/profiles/{big}?q={imei[:9]}", args.requests)
    out["imei_search_median_ms"], out["imei_search_p95_ms"] = f"{median:.1f} ms", f"{p95:.1f} ms"
    session.rollback()

    # Download Existing Inventory, streamed: first bytes, whole file, peak memory.
    gc.collect()
    idle = _rss_mb()
    peak = [idle]
    streaming = threading.Event()
    streaming.set()

    def sample() -> None:
        while streaming.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    response = client.get(f"/profiles/{big}/inventory.csv", buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    first_byte_ms = (time.perf_counter() - started) * 1000
    size, lines = len(first), first.count(b"\n")
    for chunk in chunks:
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    total_s = time.perf_counter() - started
    streaming.clear()
    sampler.join()
    assert lines == args.big + 1, lines
    out["inventory_first_byte_ms"] = f"{first_byte_ms:.1f} ms"
    out["inventory_100k_s"] = f"{total_s:.2f} s"
    out["inventory_peak_rss_mb"] = f"{peak[0] - idle:.1f} MB"
    # RSS misses what reuses memory the seeding freed: count the allocations themselves.
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    response = client.get(f"/profiles/{big}/inventory.csv", buffered=False)
    streamed = sum(chunk.count(b"\n") for chunk in response.response)
    response.close()
    peak_alloc = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    assert streamed == args.big + 1, streamed
    out["inventory_peak_alloc_mb"] = f"{peak_alloc / 2**20:.1f} MB"
    _log(f"inventory: {size / 1e6:.1f} MB, {lines:,} lines; idle RSS {idle:.0f} MB")

    # Select all N matching and move them: seconds to the committed operation.
    started = time.perf_counter()
    response = client.post(
        f"/profiles/{big}/move", data={"all_matching": "1", "profile_id": str(target)}
    )
    move_s = time.perf_counter() - started
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    session.expire_all()
    operation = session.scalar(select(Operation).order_by(Operation.id.desc()).limit(1))
    moved = session.scalar(select(func.count()).where(Device.profile_id == big))
    assert operation.total == args.big and moved == 0, (operation.total, moved)
    out["all_matching_move_100k_s"] = f"{move_s:.2f} s"
    bare_s = bare_move(operation.id, big)
    kept_counts.recount(session)  # the bare UPDATE moved them back behind the services' back
    session.commit()
    out["bare_move_100k_s"] = f"{bare_s:.2f} s"
    out["move_vs_bare_ratio"] = f"{move_s / bare_s:.2f}"

    for name, value in out.items():
        print(f"{name}_{suffix}: {value}", flush=True)
    measure_metrics_scrape(app, args, suffix)
    measure_counts_check(suffix)
    return out


def measure_counts_check(suffix: str) -> None:
    """The sweeper's minute check of every profile's kept counts (one grouped pass over the
    devices); the move above kept them, so it finds nothing to repair."""
    from kmeweb.profiles import counts as kept_counts

    db.session.commit()
    started = time.perf_counter()
    drift = kept_counts.check(db.session)
    check_ms = (time.perf_counter() - started) * 1000
    db.session.rollback()
    assert drift == [], drift
    print(f"kept_counts_check_ms_{suffix}: {check_ms:.0f} ms", flush=True)


def bare_move(operation_id: int, back_to: int) -> float:
    """The move's bare baseline: one UPDATE of the same device rows (back to the big profile)
    and one executemany INSERT of copies of the outbox rows the move wrote, committed."""
    from sqlalchemy import (
        ARRAY,
        Integer,
        any_,
        func,
        insert,
        literal,
        literal_column,
        select,
        update,
    )

    from kmeweb.devices.models import Device
    from kmeweb.outbox.models import Change

    session = db.session
    changes = session.scalars(select(Change).where(Change.operation_id == operation_id)).all()
    rows = [
        {
            "kind": c.kind, "payload": c.payload, "profile_id": c.profile_id,
            "device_count": c.device_count, "status": "done", "attempts": 0,
            "created_at": c.created_at, "next_attempt_at": c.next_attempt_at,
        }
        for c in changes
    ]  # fmt: skip
    ids = [i for c in changes for i in c.payload.get("device_ids", [])]
    assert rows and ids, "the move wrote no outbox rows"
    session.rollback()
    started = time.perf_counter()
    if db.engine.dialect.name == "postgresql":  # one statement, the ids as one parameter
        where = Device.id == any_(literal(ids, ARRAY(Integer)))
    else:
        each = func.json_each(literal(json.dumps(ids)))
        where = Device.id.in_(select(literal_column("value")).select_from(each))
    session.execute(
        update(Device)
        .where(where)
        .values(profile_id=back_to)
        .execution_options(synchronize_session=False)
    )
    session.execute(insert(Change), rows)
    session.commit()
    return time.perf_counter() - started


def measure_scale(
    apps: dict[str, Any], bigs: dict[str, int], requests: int, suffix: str
) -> dict[str, Any]:
    """The Bulk Enrollment list and the big profile's page on both tenants ("large", "small"),
    interleaved request by request so that a busy moment of the machine falls on both alike;
    prints each p95 and the two ratios (large / small). Returns the signed-in clients."""
    clients = {size: _signed_in(app) for size, app in apps.items()}
    urls = {size: {"list": "/profiles/", "page": f"/profiles/{bigs[size]}"} for size in apps}
    times: dict[tuple[str, str], list[float]] = {
        (size, page): [] for size in apps for page in ("list", "page")
    }
    for round_ in range(requests + 2):  # two warm-up rounds
        for size, client in clients.items():
            for page, url in urls[size].items():
                started = time.perf_counter()
                response = client.get(url)
                response.get_data()
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (url, response.status_code)
                if round_ >= 2:
                    times[(size, page)].append(elapsed)
    p95 = {}
    for key, values in times.items():
        values.sort()
        p95[key] = values[max(0, int(len(values) * 0.95) - 1)]
    for page in ("list", "page"):
        print(f"profile_{page}_p95_large_ms_{suffix}: {p95[('large', page)]:.1f} ms", flush=True)
        print(f"profile_{page}_p95_small_ms_{suffix}: {p95[('small', page)]:.1f} ms", flush=True)
    for page in ("list", "page"):
        ratio = p95[("large", page)] / p95[("small", page)]
        print(f"{page}_scale_ratio_{suffix}: {ratio:.2f}", flush=True)
    return clients


def measure_metrics_scrape(app, args: argparse.Namespace, suffix: str) -> None:
    """GET /metrics on the seeded tenant (no token: development mode), after the sweeper's
    device count is in Redis, as it always is on a running installation."""
    from kmeweb.operations.queue import redis_connection
    from kmeweb.ops.metrics import refresh_inventory

    started = time.perf_counter()
    counts = refresh_inventory(db.session, redis_connection())
    count_ms = (time.perf_counter() - started) * 1000
    db.session.rollback()
    _log(f"inventory for /metrics: {counts['devices']}")
    median, p95 = _timings(app.test_client(), "/metrics", args.requests)
    print(f"metrics_scrape_ms_{suffix}: {median:.1f} ms", flush=True)
    print(f"metrics_scrape_p95_ms_{suffix}: {p95:.1f} ms", flush=True)
    print(f"metrics_inventory_count_ms_{suffix}: {count_ms:.0f} ms", flush=True)


def run(
    database: str,
    args: argparse.Namespace,
    redis_url: str,
    measure_with=None,
    config: dict | None = None,
) -> Any:
    """A fresh database (PostgreSQL: a throwaway one; SQLite: a file), migrated, an app on it,
    and `measure_with(app, args, database)` (this script's `measure` by default) inside its
    context. bench/api.py runs its own measure through here too."""
    with tenant(database, args, redis_url, config) as app, app.app_context():
        return (measure_with or measure)(app, args, database)


@contextlib.contextmanager
def tenant(
    database: str, args: argparse.Namespace, redis_url: str, config: dict | None = None
) -> Iterator[Any]:
    """A fresh database (PostgreSQL: a throwaway one; SQLite: a file), migrated, and an app on
    it; the database is dropped on the way out."""
    from flask_migrate import upgrade

    drop = None
    if database == "postgresql":
        url, drop = _pg_database()
    else:
        url = f"sqlite:///{_TMP.name}/bench-pages-{args.devices}.sqlite"
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": redis_url,
                "RATELIMIT_STORAGE_URI": redis_url,
                "WTF_CSRF_ENABLED": False,
                **(config or {}),
            }
        )
        with app.app_context():
            upgrade()
        try:
            yield app
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    finally:
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--profiles", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument(
        "--scale-divisor",
        type=int,
        default=10,
        help="also seed devices/N (and big/N) for the scale ratios; 1 skips them",
    )
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7")
    redis.Redis.from_url(redis_url).flushdb()
    for database in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        _log(f"--- {database}")
        if args.scale_divisor <= 1:
            run(database, args, redis_url)
            continue
        small = argparse.Namespace(**vars(args))
        small.devices = args.devices // args.scale_divisor
        small.big = args.big // args.scale_divisor
        with (
            tenant(database, args, redis_url) as large_app,
            tenant(database, small, redis_url) as small_app,
        ):
            apps = {"large": large_app, "small": small_app}
            seeded = {}
            for size, app in apps.items():
                with app.app_context():
                    _log(f"--- {database}, {size} tenant")
                    seeded[size] = seed(args if size == "large" else small)
                    db.session.remove()
            bigs = {size: seeded[size][0] for size in apps}
            clients = measure_scale(apps, bigs, args.requests, database)
            with large_app.app_context():
                measure(large_app, args, database, seeded["large"], clients["large"])


if __name__ == "__main__":
    main()
