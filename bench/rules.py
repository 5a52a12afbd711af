"""Benchmark routing rules: a pull through 50 rules, and the rule editor's preview.

Run from the repo root: `.venv/bin/python bench/rules.py [--db sqlite|postgresql|both]
[--devices N] [--uploads N] [--rounds N] [--preview-devices N] [--runs N] [--skip-pull]
[--skip-preview] [--profile PATH]`.
Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/6; that database is flushed) and, for
PostgreSQL, a server at BENCH_DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres) where throwaway databases are created
and dropped. The KME simulator runs as a separate process, over real HTTP.

Prints on stdout, per database (suffix _sqlite / _postgresql):
  pull_rules_s: seconds of the pull job (sync.jobs.pull_job, as bench/sync.py times a pull)
    that brings --devices (100,000) new pending devices in --uploads (100) uploads of ten
    resellers, with 50 routing rules (resellers, order-number patterns, model patterns,
    identifier lists) that each approve at once into one of 50 KME profiles, and a catch-all
    that approves the rest into the Default Profile
  pull_catch_all_s: the same pull into a second database of the same tenant where only the
    catch-all is set, to approve everything at once into the Default Profile
  pull_with_rules_ratio: the two, divided (goal < 1.3). Both pulls approve every device; the
    push to KME that follows (enqueued, no worker runs) is not measured.
  Each of --rounds (3) rounds makes a new tenant and two new databases and runs both pulls,
  in alternating order; the figures are the medians (of the seconds, and of the rounds'
  ratios).
  pull_rules_cpu_s, pull_catch_all_cpu_s, pull_with_rules_cpu_ratio: the same in CPU seconds
    of this process and of the database's server processes (the simulator's left out): the
    work itself, which other programs on the machine do not slow down as they do the clock.
and, on PostgreSQL only:
  rules_preview_1m_ms: the median of --runs previews (rules.engine.preview) of an edit of the
    25th of 50 rules against --preview-devices (1,000,000) devices seeded by `flask
    seed-scale`'s code (goal < 2,000 ms)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa
from _database import throwaway_pg_database
from _env import TMP as _TMP
from _env import log as _log
from _simulator import client_config, connect_integration, start_simulator
from sqlalchemy import func, select

from kmeweb import create_app
from kmeweb.extensions import db

RESELLERS = 10
RULES = 50
#: Order numbers of the uploads, by upload index modulo 4.
ORDERS = ("PO-SALES-{k:04d}", "PO-OPS-{k:04d}", "ORD-{k:04d}-EU", "ORD-{k:04d}-US")


def _database(kind: str, tag: str) -> tuple[str, Callable[[], None]]:
    """A throwaway database (PostgreSQL) or file (SQLite); returns its URL and its drop."""
    name = f"kmeweb_bench_rules_{tag}_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        path = Path(_TMP.name) / f"{name}.sqlite"

        def remove() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return f"sqlite:///{path}", remove
    return throwaway_pg_database(f"rules_{tag}")


def _app(url: str, redis_url: str, prefix: str):
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": redis_url,
            "RATELIMIT_STORAGE_URI": redis_url,
            # Two databases, one Redis: their jobs (never run here) must not share queues.
            "RQ_QUEUE_PREFIX": prefix,
        }
    )


# --- the pull ------------------------------------------------------------------------------


class Tenant:
    """A simulator tenant: ten resellers (not auto-approving) with one old approved upload
    each, and 50 KME profiles."""

    def __init__(self, url: str) -> None:
        from kmeweb.knox import KnoxClient
        from kmeweb.knox.types import Profile

        self.url = url
        self.http = requests.Session()
        self.creds = self.http.post(url + "/_sim/tenants", json={"legacy": False}).json()
        self.cid = self.creds["customer_id"]
        self.resellers = []
        old_uploads = []
        for i in range(RESELLERS):
            resp = self.http.post(
                url + "/_sim/resellers",
                json={"customerId": self.cid, "name": f"Reseller {i:02d}", "autoApprove": False},
            )
            resp.raise_for_status()
            self.resellers.append(resp.json()["resellerId"])
            old_uploads.append(self._upload(self.resellers[-1], 10, f"OLD-{i:02d}")["uploadId"])
        with KnoxClient(client_config(self.creds, url)) as client:
            assert client.approve_uploads(old_uploads).ok
            for i in range(RULES):
                client.create_profile(
                    Profile(
                        name=f"Rules bench {i:02d}",
                        supported_mdm="Other",
                        mdm_apk_url="https://mdm.example.com/agent.apk",
                        support_phone_number="+1 555 0100",
                        support_email_address="it@example.com",
                    )
                )

    def _upload(self, reseller_id: str, count: int, order: str) -> dict[str, Any]:
        resp = self.http.post(
            self.url + "/_sim/uploads",
            json={
                "customerId": self.cid,
                "resellerId": reseller_id,
                "count": count,
                "orderNo": order,
            },
            timeout=600,
        )
        resp.raise_for_status()
        return resp.json()

    def new_uploads(self, devices: int, uploads: int) -> list[dict[str, Any]]:
        """`uploads` pending uploads of `devices` devices in all, round robin over the
        resellers; returns them with their devices."""
        per, extra = divmod(devices, uploads)
        out = []
        for k in range(uploads):
            reseller = self.resellers[k % RESELLERS]
            out.append(self._upload(reseller, per + (k < extra), ORDERS[k % 4].format(k=k)))
        return out


def _connect(session, tenant: Tenant) -> None:
    connect_integration(session, tenant.url, tenant.creds)
    session.commit()


def _backends(session) -> dict[int, float]:
    """{pid: CPU seconds so far} of the PostgreSQL server processes serving this database
    (none on SQLite, which works inside this process)."""
    if session.get_bind().dialect.name != "postgresql":
        return {}
    pids = session.scalars(
        sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    ).all()
    session.commit()
    return {pid: _cpu_of(pid) for pid in pids}


def _cpu_of(pid: int) -> float:
    """User and system CPU seconds of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pull(session) -> tuple[float, float, dict[str, int]]:
    """One pull job, timed as bench/sync.py times it; returns (seconds, CPU seconds of this
    process and of the database's server processes, its summary). The CPU seconds measure
    the work alone, whatever else the machine runs meanwhile."""
    from kmeweb.sync import jobs

    operation = jobs.start_pull(session, "bench")
    session.commit()
    before = _backends(session)
    cpu = time.process_time()
    started = time.perf_counter()
    summary = jobs.pull_job(operation.id)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    after = _backends(session)
    cpu += sum(s - before.get(pid, 0.0) for pid, s in after.items())
    return seconds, cpu, summary


def _rule_data(session, uploads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """50 rules that approve at once, each into its own KME profile: identifier lists first,
    then order-number patterns with models, resellers with models, order-number patterns with
    resellers, and resellers alone. Most devices are matched by rules far down the list."""
    from kmeweb.integration.models import Reseller
    from kmeweb.profiles.models import Profile

    profiles = list(
        session.scalars(
            select(Profile.id).where(Profile.name.like("Rules bench %")).order_by(Profile.name)
        )
    )
    resellers = list(
        session.scalars(
            select(Reseller.id).where(Reseller.name.like("Reseller %")).order_by(Reseller.name)
        )
    )
    assert len(profiles) == RULES and len(resellers) == RESELLERS, (profiles, resellers)
    conditions: list[dict[str, Any]] = []
    for i in range(10):  # 400 identifiers each: IMEIs of one upload, serials of another
        imeis = [d["mei"] for d in uploads[i]["devices"][::3][:300]]
        serials = [d["serialNumber"] for d in uploads[-1 - i]["devices"][1::7][:100]]
        conditions.append({"identifiers": "\n".join(imeis + serials)})
    for i in range(10):  # ten uploads' order numbers, tablets only
        conditions.append({"order_patterns": f"*-00{i}?*", "model_patterns": "SM-T* SM-X*"})
    for i in range(20):  # a reseller's phones of one series
        models = "SM-G9*" if i % 2 == 0 else "SM-A5*"
        conditions.append({"reseller_ids": [resellers[i // 2]], "model_patterns": models})
    for i in range(8):  # an order-number family from some resellers
        family = ("PO-SALES-*", "PO-OPS-*", "ORD-*-EU", "ORD-*-US")[i // 2]
        some = resellers[:5] if i % 2 == 0 else resellers[5:8]
        conditions.append({"order_patterns": family, "reseller_ids": some})
    conditions.append({"reseller_ids": resellers[8:9]})
    conditions.append({"reseller_ids": resellers[9:]})
    return [
        {"name": f"Rule {i:02d}", "action": "approve", "profile_id": str(profiles[i]), **c}
        for i, c in enumerate(conditions)
    ]


def _catch_all_approves(session) -> None:
    from kmeweb.rules import services as rules

    catch_all = rules.ensure_catch_all(session)
    rules.update_rule(
        session,
        catch_all.id,
        {"name": catch_all.name, "action": "approve", "profile_id": "default"},
        "bench",
    )
    session.commit()


def _placed(session) -> dict[str, int]:
    """How the pulled devices ended: pending, and approved per destination kind."""
    from kmeweb.devices.models import Device
    from kmeweb.profiles.models import Profile

    session.expire_all()
    rows = session.execute(
        select(Device.approval, Profile.kind, func.count(), func.count(func.distinct(Profile.id)))
        .outerjoin(Profile, Profile.id == Device.profile_id)
        .group_by(Device.approval, Profile.kind)
    ).all()
    session.rollback()
    return {f"{a}/{k}": n for a, k, n, _p in rows} | {
        f"profiles/{k}": p for a, k, _n, p in rows if a == "approved"
    }


def _pull_round(
    database: str, args: argparse.Namespace, redis_url: str, sim_url: str, order: tuple[str, ...]
) -> dict[str, float]:
    """One round: a new tenant, two new databases, both pulls (in `order`); their seconds."""
    from flask_migrate import upgrade

    from kmeweb.rules import services as rules

    tenant = Tenant(sim_url)
    dbs = {v: _database(database, v) for v in order}
    apps = {v: _app(dbs[v][0], redis_url, f"bench-rules-{v}:") for v in order}
    try:
        for v in order:  # both learn the profiles and resellers by a first pull
            with apps[v].app_context():
                upgrade()
                _connect(db.session, tenant)
                seconds, _cpu, summary = _pull(db.session)
                _log(f"{database} {v}: first pull {seconds:.1f} s {summary}")
        uploads = tenant.new_uploads(args.devices, args.uploads)
        seeded_at = time.time()
        _log(f"simulator: {args.uploads} new uploads, {args.devices:,} pending devices")
        with apps["rules"].app_context():
            for data in _rule_data(db.session, uploads):
                rules.create_rule(db.session, data, "bench")
            db.session.commit()
            _catch_all_approves(db.session)
        with apps["catch_all"].app_context():
            _catch_all_approves(db.session)
        # Devices made within the cursor's skew of the first pull's start would be pulled
        # anyway; wait until the new ones are older than the skew so both pulls see them all.
        skew = float(apps["rules"].config["PULL_CURSOR_SKEW_S"])
        while time.time() <= seeded_at + skew:
            time.sleep(0.05)
        times = {}
        for v in order:
            with apps[v].app_context():
                if args.profile:
                    profiler = cProfile.Profile()
                    times[v], times[f"{v}_cpu"], summary = profiler.runcall(_pull, db.session)
                    profiler.dump_stats(f"{args.profile}-{v}-{database}.prof")
                else:
                    times[v], times[f"{v}_cpu"], summary = _pull(db.session)
                placed = _placed(db.session)
                _log(
                    f"{database} {v}: {times[v]:.1f} s ({times[f'{v}_cpu']:.1f} s CPU) "
                    f"{summary} {placed}"
                )
                assert summary.get("devices_auto_approved") == args.devices, summary
                assert "pending/None" not in placed, placed
                db.session.remove()
                db.engine.dispose()
    finally:
        for v in order:
            dbs[v][1]()
    return times


def measure_pull(database: str, args: argparse.Namespace, redis_url: str, sim_url: str) -> None:
    """--rounds rounds, the two pulls in alternating order (the machine's load drifts);
    prints the median seconds of each and the median of the rounds' ratios."""
    rounds = []
    for r in range(args.rounds):
        order = ("rules", "catch_all") if r % 2 == 0 else ("catch_all", "rules")
        times = _pull_round(database, args, redis_url, sim_url, order)
        rounds.append(times)
        ratio = times["rules"] / times["catch_all"]
        _log(f"{database} round {r + 1}: {times}, ratio {ratio:.2f}")
    for suffix, unit in (("", "s"), ("_cpu", "s CPU")):
        rules_s = statistics.median(t[f"rules{suffix}"] for t in rounds)
        catch_all_s = statistics.median(t[f"catch_all{suffix}"] for t in rounds)
        ratio = statistics.median(t[f"rules{suffix}"] / t[f"catch_all{suffix}"] for t in rounds)
        print(f"pull_rules{suffix}_s_{database}: {rules_s:.2f} {unit}", flush=True)
        print(f"pull_catch_all{suffix}_s_{database}: {catch_all_s:.2f} {unit}", flush=True)
        print(f"pull_with_rules{suffix}_ratio_{database}: {ratio:.2f}", flush=True)


# --- the preview ---------------------------------------------------------------------------


def _preview_rules(session, run: str) -> list[dict[str, Any]]:
    """50 rules over seed-scale's tenant: resellers, order-number patterns, models, lists of
    identifiers and IMEI ranges, each approving into a KME profile."""
    from kmeweb.devices.models import Device
    from kmeweb.integration.models import Reseller
    from kmeweb.profiles.models import Profile

    profiles = list(
        session.scalars(
            select(Profile.id).where(Profile.kind == "kme").order_by(Profile.id).limit(RULES)
        )
    )
    resellers = list(session.scalars(select(Reseller.id).order_by(Reseller.id)))
    imeis = list(
        session.scalars(select(Device.imei).where(Device.id % 997 == 0).order_by(Device.id))
    )
    out: list[dict[str, Any]] = []
    for i in range(RULES):
        kind = i % 5
        if kind == 0:
            c = {
                "identifiers": "\n".join({imeis[(i * 20 + j) % len(imeis)]: 1 for j in range(400)})
            }
        elif kind == 1:
            c = {"order_patterns": f"PO-SALES-*{i % 10}", "model_patterns": "SM-T*"}
        elif kind == 2:
            c = {"reseller_ids": [resellers[i % len(resellers)]], "model_patterns": "SM-X2*"}
        elif kind == 3:
            start = i * 7 % max(1, len(imeis) - 40)
            c = {"imei_from": imeis[start], "imei_to": imeis[min(start + 40, len(imeis) - 1)]}
        else:
            c = {"reseller_ids": resellers[i % 3 :: 7] or resellers[:1]}
            c["order_patterns"] = f"PO-{run}-*{i % 10}"
        out.append(
            {"name": f"Rule {i:02d}", "action": "approve", "profile_id": str(profiles[i]), **c}
        )
    return out


def measure_preview(database: str, args: argparse.Namespace, redis_url: str) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import text

    from kmeweb.demo.scale import seed_scale, vacuum_analyze
    from kmeweb.rules import engine
    from kmeweb.rules import services as rules
    from kmeweb.rules.models import RoutingRule

    url, drop = _database(database, "preview")
    app = _app(url, redis_url, "bench-rules-preview:")
    try:
        with app.app_context():
            upgrade()
            session = db.session
            started = time.perf_counter()
            seeded = seed_scale(
                session,
                uploads=max(1, args.preview_devices // 1000),
                devices=args.preview_devices,
                profiles=200,
                progress=_log,
            )
            # A third of the uploads from the sales department.
            session.execute(
                text(
                    "UPDATE upload SET order_number = 'PO-SALES-' || CAST(id AS VARCHAR) "
                    "WHERE id % 3 = 0"
                )
            )
            session.commit()
            vacuum_analyze(db.engine)
            _log(
                f"{database}: seeded {seeded['devices']:,} in {time.perf_counter() - started:.0f} s"
            )
            for data in _preview_rules(session, seeded["run"]):
                rules.create_rule(session, data, "bench")
            session.commit()
            middle = session.scalar(select(RoutingRule).where(RoutingRule.name == "Rule 24"))
            draft = rules.parse_rule(
                session,
                {
                    "name": "Rule 24",
                    "order_patterns": "PO-SALES-*",
                    "model_patterns": "SM-T* SM-S9*",
                    "action": "approve",
                    "profile_id": str(middle.profile_id),
                },
                middle,
            )
            saved = engine.load_rules(session)
            times = []
            for run in range(args.runs + 1):
                started = time.perf_counter()
                preview = engine.preview(session, draft, saved)
                elapsed = (time.perf_counter() - started) * 1000
                session.rollback()
                if run:  # the first warms the caches
                    times.append(elapsed)
            _log(
                f"{database} preview: pending {preview.pending:,}, approved "
                f"{preview.approved:,} ({preview.moving:,} would move), runs {times}"
            )
            session.remove()
            db.engine.dispose()
    finally:
        drop()
    name = "rules_preview_1m_ms" if database == "postgresql" else f"rules_preview_1m_ms_{database}"
    print(f"{name}: {statistics.median(times):.0f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--preview-devices", type=int, default=1_000_000)
    parser.add_argument("--preview-sqlite", action="store_true", help="preview on SQLite too")
    parser.add_argument("--runs", type=int, default=5, help="previews to time")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of pulls to time")
    parser.add_argument("--skip-pull", action="store_true")
    parser.add_argument("--skip-preview", action="store_true")
    parser.add_argument("--profile", help="cProfile the pulls into PROFILE-<variant>-<db>.prof")
    args = parser.parse_args()
    assert args.uploads >= 20, "the rules need at least 20 uploads"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
    redis.Redis.from_url(redis_url).flushdb()
    databases = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    try:
        if not args.skip_pull:
            proc, sim_url = start_simulator(os.path.join(_TMP.name, "sim.sqlite"))
            try:
                for database in databases:
                    measure_pull(database, args, redis_url, sim_url)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        if not args.skip_preview:
            for database in databases:
                if database == "postgresql" or args.preview_sqlite:
                    measure_preview(database, args, redis_url)
    finally:
        redis.Redis.from_url(redis_url).flushdb()


if __name__ == "__main__":
    main()
