"""Benchmark POST /enroll against one real web process with 100,000 devices.

Run from the repo root: `.venv/bin/python bench/enroll.py [--devices N] [--requests N]
[--clients N] [--threads N] [--skip-pg]`. Needs Redis at REDIS_URL (default
redis://127.0.0.1:6379/2; that database is flushed) and, unless --skip-pg, PostgreSQL at
BENCH_DATABASE_URL (or BENCH_PG_URL; default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres; a throwaway database is made there).

The server is ONE gunicorn process run as production runs it: `gunicorn -c
deploy/gunicorn.conf.py wsgi:app` (gthread, its access log, prometheus multiprocess files) with
KMEWEB_WEB_WORKERS=1 and the config's threads per process (KMEWEB_WEB_THREADS, default 4;
`--threads` overrides), on the migrated database with one synced KME profile
holding `--devices` devices. Client threads (`--clients`, one keep-alive HTTP/1.1 connection
each) run in a separate process. Each request enrolls a different device with the profile's
token (the write path: registered_at, agent version, audit event), then a second pass repeats
enrollments (the read-only path). Every answer must be 200 and every device counted registered.

The rate limiter stays on and counts every request in Redis; only its per-IP threshold is
raised for the run (KMEWEB_ENROLL_IP_RATE_LIMIT, the documented knob), since all clients share
127.0.0.1. Prints on stdout:
  enroll_per_s: first enrollments per second, SQLite
  enroll_repeat_per_s: repeated enrollments per second, SQLite
  enroll_per_s_pg, enroll_repeat_per_s_pg: the same on PostgreSQL
  bare_flask_per_s: the same server and clients against a bare Flask view that parses the
    JSON and answers (no database, no Redis): the ceiling of one process here, right now;
    measured before and after each database's passes (the mean of all is printed)
  enroll_vs_bare_ratio, enroll_vs_bare_pg_ratio: first enrollments per second over the mean
    of the two bare passes around them, all from this run (issue 25's goal: at least 0.6)
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_TMP = tempfile.TemporaryDirectory(prefix="kmeweb-bench-enroll-")
os.environ["KMEWEB_INSTANCE_DIR"] = _TMP.name
os.environ.setdefault("SECRET_KEY", "bench-enroll-secret-key-0123456789abcdef")
os.environ.setdefault("KMEWEB_ENCRYPTION_KEY", "x6bTJp0Q2R9T9tqkT6v1wW1C7sGkKqN8s0u3Yh0v7lE=")

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from _database import PG_SERVER, pg_admin  # noqa: E402

from kmeweb import create_app  # noqa: E402
from kmeweb.extensions import db  # noqa: E402

BENCH_IP_LIMIT = "100000000 per minute"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(db_url: str, redis_url: str, devices: int) -> tuple[str, list[str]]:
    """Migrate, then one synced KME profile with `devices` approved devices (one executemany).
    Returns the profile's token and the devices' IMEIs."""
    from flask_migrate import upgrade
    from sqlalchemy import insert

    from kmeweb.devices.models import Device
    from kmeweb.identifiers import luhn_check_digit
    from kmeweb.profiles.models import Profile
    from kmeweb.profiles.services import generate_token

    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "REDIS_URL": redis_url})
    with app.app_context():
        upgrade()
        session = db.session
        profile = Profile(
            name="Bench Field",
            kind="kme",
            kme_profile_id="bench-kp-1",
            token=generate_token(session),
            token_expires_at=None,
            config={
                "agent": {"server_url": "https://mdm.example.com", "skip_setup_wizard": True},
                "kme": {"supported_mdm": "Other", "mdm_apk_url": "https://mdm.example.com/a.apk"},
                "system_extras": {"wifi_ssid": "corp", "locale": "en_US"},
                "custom_keys": [{"key": "site", "type": "string", "value": "bench"}],
            },
            sync_state="synced",
        )
        session.add(profile)
        session.flush()
        imeis = []
        for n in range(devices):
            body = f"35{n:012d}"
            imeis.append(body + str(luhn_check_digit(body)))
        rows = [
            {
                "imei": imei,
                "model": "SM-A546B",
                "approval": "approved",
                "profile_id": profile.id,
                "sync_state": "synced",
                "version": 1,
                "attributes": {},
            }
            for imei in imeis
        ]
        for start in range(0, len(rows), 10_000):
            session.execute(insert(Device), rows[start : start + 10_000])
        token = profile.token
        session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        else:
            with db.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))
        db.engine.dispose()
    return token, imeis


def _client(port: int, bodies: list[bytes], out: multiprocessing.Queue) -> None:
    """One client thread: keep-alive requests for its share of `bodies`; puts bad answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    bad = 0
    for body in bodies:
        conn.request("POST", "/enroll", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            bad += 1
            if bad == 1:
                out.put(f"status {resp.status}")
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    out.put(bad)


def _load(port: int, bodies: list[bytes], clients: int, out: multiprocessing.Queue) -> None:
    """The client process: `clients` threads share `bodies` (round robin)."""
    threads = [
        threading.Thread(target=_client, args=(port, bodies[i::clients], out))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_pass(port: int, bodies: list[bytes], clients: int) -> float:
    """Requests per second for `bodies`, from a separate client process; all must be 200."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_load, args=(port, bodies, clients, out))
    started = time.perf_counter()
    proc.start()
    bad = 0
    messages = []
    finished = 0
    while finished < clients:
        item = out.get(timeout=600)
        if isinstance(item, int):
            bad += item
            finished += 1
        else:
            messages.append(item)
    proc.join()
    elapsed = time.perf_counter() - started
    if bad:
        raise SystemExit(f"{bad} enrollments failed: {messages}")
    return len(bodies) / elapsed


BARE_APP = """
from flask import Flask, request

app = Flask("bare")


@app.post("/enroll")
def enroll():
    request.get_json()
    return {"status": "registered"}


@app.get("/auth/login")
def ready():
    return "ok"
"""


def serve(
    db_url: str, redis_url: str, threads: int | None, app: str = "wsgi:app"
) -> tuple[subprocess.Popen, int]:
    """One gunicorn process (deploy/gunicorn.conf.py, one worker; `threads` threads, None for
    the config's) serving `app`; waits until it answers. Its access log goes to /dev/null."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "KMEWEB_ENROLL_IP_RATE_LIMIT": BENCH_IP_LIMIT,
        "PYTHONPATH": f"{ROOT}:{_TMP.name}",
        "KMEWEB_WEB_WORKERS": "1",
        "KMEWEB_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(Path(_TMP.name) / f"metrics-{port}"),
    }
    if threads:
        env["KMEWEB_WEB_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py"), app]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/auth/login")
            conn.getresponse().read()
            conn.close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("gunicorn did not start") from None
            time.sleep(0.2)


def registered(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        count = conn.execute(
            sa.text("SELECT COUNT(*) FROM device WHERE registered_at IS NOT NULL")
        ).scalar()
    engine.dispose()
    return int(count or 0)


def bench(db_url: str, redis_url: str, args: argparse.Namespace, suffix: str) -> float:
    """Seed, serve, run the first and the repeat pass; prints both rates, returns the first."""
    redis.Redis.from_url(redis_url).flushdb()
    _log(f"seeding {args.devices:,} devices ({suffix or 'sqlite'})")
    token, imeis = seed(db_url, redis_url, args.devices)
    step = max(1, len(imeis) // args.requests)
    chosen = imeis[::step][: args.requests]
    bodies = [
        json.dumps({"imei": imei, "token": token, "agent_version": "bench/1.0"}).encode()
        for imei in chosen
    ]
    proc, port = serve(db_url, redis_url, args.threads)
    try:
        run_pass(port, bodies[:200], args.clients)  # warm-up (imports, connections, caches)
        first = run_pass(port, bodies[200:], args.clients)
        repeat = run_pass(port, bodies[200:], args.clients)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    count = registered(db_url)
    assert count == len(bodies), f"{count} registered, {len(bodies)} enrolled"
    print(f"enroll_per_s{suffix}: {first:.0f} requests/s", flush=True)
    print(f"enroll_repeat_per_s{suffix}: {repeat:.0f} requests/s", flush=True)
    return first


def bench_bare(args: argparse.Namespace) -> float:
    """The same server, clients and bodies against a bare Flask view (parse JSON, answer):
    the most one gunicorn process can do on this machine at this moment, for reference."""
    Path(_TMP.name, "bench_bare_app.py").write_text(BARE_APP)
    bodies = [
        json.dumps({"imei": f"35{n:013d}", "token": "x" * 32, "agent_version": "1"}).encode()
        for n in range(args.requests)
    ]
    proc, port = serve("", "", args.threads, "bench_bare_app:app")
    try:
        run_pass(port, bodies[:200], args.clients)
        rate = run_pass(port, bodies[200:], args.clients)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    _log(f"bare Flask: {rate:.0f} requests/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2")
    _log(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    # The bare view is measured before and after each database's passes, and each ratio is
    # over the mean of the two around it: a machine whose speed drifts during the run (other
    # load, frequency) moves both sides of a ratio alike.
    bares = [bench_bare(args)]
    first = bench(f"sqlite:///{_TMP.name}/bench.sqlite", redis_url, args, "")
    bares.append(bench_bare(args))
    ratios = [("enroll_vs_bare_ratio", first / statistics.mean(bares[-2:]))]
    if not args.skip_pg:
        pg_server = PG_SERVER
        name = f"kmeweb_bench_{uuid.uuid4().hex[:8]}"
        pg_admin(f'CREATE DATABASE "{name}"', pg_server)
        try:
            url = sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
            first_pg = bench(url, redis_url, args, "_pg")
        finally:
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', pg_server)
        bares.append(bench_bare(args))
        ratios.append(("enroll_vs_bare_pg_ratio", first_pg / statistics.mean(bares[-2:])))
    print(f"bare_flask_per_s: {statistics.mean(bares):.0f} requests/s", flush=True)
    for metric, value in ratios:
        print(f"{metric}: {value:.2f} x", flush=True)


if __name__ == "__main__":
    main()
