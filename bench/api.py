"""Benchmark the JSON API on a large tenant: device pages by cursor, and a move by filter.

Run from the repo root: `.venv/bin/python bench/api.py [--db postgresql|sqlite]
[--devices N] [--profiles N] [--big N] [--requests N] [--rounds N]`. Seeds the tenant with
bench/pages.py's `seed` (`flask seed-scale`'s code: 1,000 profiles, 1,000,000 devices by
default, one profile holding `--big` = 100,000 of them). Requests go through the whole Flask
stack with the test client and an admin's API token. Needs Redis at REDIS_URL (default
redis://127.0.0.1:6379/7, flushed) and, for PostgreSQL, a server at BENCH_DATABASE_URL.

Prints on stdout (suffix _postgresql / _sqlite):
  api_devices_page_p95_ms: GET /api/v1/devices?limit=1000, page 1 (p95; goal < 100 ms on
    PostgreSQL at 1,000,000 devices)
  api_devices_deep_page_p95_ms: the same for page 500, reached by its cursor (the last full
    page with fewer than 500,000 devices)
  api_deep_page_ratio: page 500 over page 1 (goal < 1.5)
  api_move_100k_accept_ms: POST /api/v1/devices/move with a filter matching the --big devices
    and its expected_count, to the 202 (median of --rounds; goal < 1,000 ms): the operation is
    queued, its job moves the devices
  page_move_100k_ms: the same move through the service the page's Move Devices calls
    (devices.services.move_selection, "all N matching"), to the committed operation
  api_move_100k_ms: the API's whole move to that same point: the 202, then its job
    (devices.jobs.move_selection_job, run in this process right after) to its committed
    devices and outbox rows
  api_move_vs_page_ratio: api_move_100k_ms over page_move_100k_ms (goal < 1.2). What follows
    either way (the push of the same outbox rows) is the same work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import pages  # noqa: I001  (bench/pages.py: the tenant, the throwaway database)
import redis

from kmeweb.extensions import db


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _p95(times: list[float]) -> float:
    times = sorted(times)
    return times[max(0, int(len(times) * 0.95) - 1)]


def _page_times(client, url: str, headers: dict[str, str], n: int) -> list[float]:
    for _ in range(2):
        warm = client.get(url, headers=headers)
        assert warm.status_code == 200, (url, warm.status_code, warm.get_data(as_text=True)[:2000])
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        body = response.get_json()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and len(body["items"]) == 1000, url
    return times


def _empty(profile_id: int, into: int) -> None:
    """Move a profile's own devices elsewhere (bare UPDATE): it starts the bench empty."""
    from sqlalchemy import update

    from kmeweb.devices.models import Device
    from kmeweb.profiles import counts as kept_counts

    db.session.execute(
        update(Device).where(Device.profile_id == profile_id).values(profile_id=into)
    )
    kept_counts.recount(db.session, [profile_id, into])
    db.session.commit()


def measure(app, args: argparse.Namespace, suffix: str) -> None:
    from sqlalchemy import func, select

    from kmeweb.api.paging import encode
    from kmeweb.apitokens import services as tokens
    from kmeweb.apitokens.models import Scope
    from kmeweb.auth.models import AdminUser
    from kmeweb.devices import services as devices
    from kmeweb.devices.models import Device
    from kmeweb.devices.selection import DeviceSelection
    from kmeweb.profiles.models import Profile, ProfileKind

    big, target = pages.seed(args)
    session = db.session
    admin = session.scalar(select(AdminUser).where(AdminUser.email == "bench@example.com"))
    secret = tokens.create_token(session, admin, "bench", [s.value for s in Scope], 30).secret
    session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()

    # Device pages: page 1, and page 500 by the cursor a walk would reach (the id of the
    # 499,000th device, as next_cursor encodes it).
    first = _page_times(client, "/api/v1/devices?limit=1000", headers, args.requests)
    deep_offset = min(499 * 1000, args.devices - 1000)  # a smaller tenant: its last page
    deep_after = session.scalar(
        select(Device.id).order_by(Device.id).offset(deep_offset - 1).limit(1)
    )
    session.rollback()
    deep = _page_times(
        client, f"/api/v1/devices?limit=1000&cursor={encode(deep_after)}", headers, args.requests
    )
    print(f"api_devices_page_p95_ms_{suffix}: {_p95(first):.1f} ms", flush=True)
    print(f"api_devices_deep_page_p95_ms_{suffix}: {_p95(deep):.1f} ms", flush=True)
    print(f"api_deep_page_ratio_{suffix}: {_p95(deep) / _p95(first):.2f}", flush=True)

    # The move: the page's service big -> target, then the API target -> big, alternating.
    kme = list(
        session.scalars(
            select(Profile.id).where(Profile.kind == ProfileKind.KME).order_by(Profile.id)
        )
    )
    _empty(target, kme[2])
    n = session.scalar(select(func.count()).where(Device.profile_id == big))
    from kmeweb.devices.jobs import move_selection_job

    page_ms, api_ms, whole_ms = [], [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        selection = DeviceSelection(big, all_matching=True)
        devices.move_selection(session, selection, target, admin)
        session.commit()
        page_ms.append((time.perf_counter() - started) * 1000)
        body = {"profile_id": big, "filter": {"profile_id": target}, "expected_count": n}
        started = time.perf_counter()
        response = client.post("/api/v1/devices/move", json=body, headers=headers)
        api_ms.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 202, response.get_data(as_text=True)[:2000]
        assert response.get_json()["devices"] == n
        session.commit()  # end the bench's read transaction: the job sees the 202's commit
        assert move_selection_job(response.get_json()["operation_id"]) == n
        whole_ms.append((time.perf_counter() - started) * 1000)
        session.expire_all()
    accept, page = statistics.median(api_ms), statistics.median(page_ms)
    whole = statistics.median(whole_ms)
    _log(f"moves of {n:,} devices: page service {page_ms}, API accept {api_ms}, API {whole_ms}")
    print(f"api_move_100k_accept_ms_{suffix}: {accept:.0f} ms", flush=True)
    print(f"page_move_100k_ms_{suffix}: {page:.0f} ms", flush=True)
    print(f"api_move_100k_ms_{suffix}: {whole:.0f} ms", flush=True)
    print(f"api_move_vs_page_ratio_{suffix}: {whole / page:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="postgresql")
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--profiles", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7")
    redis.Redis.from_url(redis_url).flushdb()
    for database in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        _log(f"--- {database}")
        pages.run(database, args, redis_url, measure, {"API_RATE_LIMIT": "1000000 per minute"})


if __name__ == "__main__":
    main()
