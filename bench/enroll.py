"""Benchmark POST /enroll against one real web process with 100,000 devices.

Run from the repo root: `.venv/bin/python bench/enroll.py [--devices N] [--requests N]
[--clients N] [--threads N] [--skip-pg] [--skip-sqlite]`. Needs Redis at REDIS_URL (default
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
  enroll_server_cpu_us (_pg), bare_server_cpu_us: CPU time (user + system) of the gunicorn
    worker per request during the first pass (the bare view's: its measured pass, the mean of
    all); enroll_db_cpu_us_pg: the PostgreSQL server processes' CPU per request in the same
    pass (on SQLite the database runs inside the worker). One process serves, so the worker's
    CPU per request bounds its rate: the ratio is about bare_server_cpu_us over
    enroll_server_cpu_us. Linux only (/proc); not printed elsewhere.
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
import threading
import time
from pathlib import Path

import redis
import sqlalchemy as sa
from _database import add_database_flags, chosen, database
from _env import ROOT
from _env import TMP as _TMP
from _env import log as _log

from kmeweb import create_app
from kmeweb.extensions import db

BENCH_IP_LIMIT = "100000000 per minute"


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


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """/proc/PID/stat as (command name, the fields after it); None for a process gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by `pids` (0 for one that is gone)."""
    ticks = 0
    for pid in pids:
        if (found := _stat(pid)) is not None:
            ticks += int(found[1][11]) + int(found[1][12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _processes(parent: int | None = None, name: str | None = None) -> list[int]:
    """Live processes that are children of `parent`, or whose command name is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (stat := _stat(entry.name)) is None:
            continue
        comm, fields = stat
        if (parent is not None and int(fields[1]) == parent) or (name is not None and comm == name):
            found.append(int(entry.name))
    return found


def measured_pass(
    proc: subprocess.Popen, port: int, bodies: list[bytes], clients: int, database: bool
) -> tuple[float, float | None, float | None]:
    """run_pass, with the gunicorn worker's (and, `database`, PostgreSQL's) CPU microseconds
    per request in that pass; None for both where /proc is missing."""
    if not Path("/proc/self/stat").exists():
        return run_pass(port, bodies, clients), None, None
    worker = _processes(parent=proc.pid)
    db_pids = _processes(name="postgres") if database else []
    before = _cpu_s(worker), _cpu_s(db_pids)
    rate = run_pass(port, bodies, clients)
    server = (_cpu_s(worker) - before[0]) / len(bodies) * 1e6
    db = (_cpu_s(db_pids) - before[1]) / len(bodies) * 1e6 if database else None
    return rate, server, db


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
        first, server_us, db_us = measured_pass(
            proc, port, bodies[200:], args.clients, database=bool(suffix)
        )
        repeat = run_pass(port, bodies[200:], args.clients)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    count = registered(db_url)
    assert count == len(bodies), f"{count} registered, {len(bodies)} enrolled"
    print(f"enroll_per_s{suffix}: {first:.0f} requests/s", flush=True)
    print(f"enroll_repeat_per_s{suffix}: {repeat:.0f} requests/s", flush=True)
    if server_us is not None:
        print(f"enroll_server_cpu_us{suffix}: {server_us:.0f} us", flush=True)
    if db_us is not None:
        print(f"enroll_db_cpu_us{suffix}: {db_us:.0f} us", flush=True)
    return first


def bench_bare(args: argparse.Namespace) -> tuple[float, float | None]:
    """The same server, clients and bodies against a bare Flask view (parse JSON, answer):
    the most one gunicorn process can do on this machine at this moment, for reference.
    Returns its rate and its worker's CPU microseconds per request (None without /proc)."""
    Path(_TMP.name, "bench_bare_app.py").write_text(BARE_APP)
    bodies = [
        json.dumps({"imei": f"35{n:013d}", "token": "x" * 32, "agent_version": "1"}).encode()
        for n in range(args.requests)
    ]
    proc, port = serve("", "", args.threads, "bench_bare_app:app")
    try:
        run_pass(port, bodies[:200], args.clients)
        rate, server_us, _ = measured_pass(proc, port, bodies[200:], args.clients, False)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    _log(f"bare Flask: {rate:.0f} requests/s")
    return rate, server_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    add_database_flags(parser)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2")
    _log(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    # The bare view is measured before and after each database's passes, and each ratio is
    # over the mean of the two around it: a machine whose speed drifts during the run (other
    # load, frequency) moves both sides of a ratio alike.
    measured = [bench_bare(args)]
    ratios = []
    for suffix, kind in chosen(args):
        with database(kind, _TMP.name, "enroll") as url:
            first = bench(url, redis_url, args, suffix)
        measured.append(bench_bare(args))
        around = [rate for rate, _cpu in measured[-2:]]
        ratios.append((f"enroll_vs_bare{suffix}_ratio", first / statistics.mean(around)))
    print(f"bare_flask_per_s: {statistics.mean(r for r, _ in measured):.0f} requests/s", flush=True)
    cpu = [us for _, us in measured if us is not None]
    if cpu:
        print(f"bare_server_cpu_us: {statistics.mean(cpu):.0f} us", flush=True)
    for metric, value in ratios:
        print(f"{metric}: {value:.2f} x", flush=True)


if __name__ == "__main__":
    main()
