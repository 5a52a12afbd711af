"""Benchmark Import devices (a Self-Maintained profile's CSV import), on SQLite and PostgreSQL.

Run from the repo root: `.venv/bin/python bench/import.py [--rows N] [--passwords]
[--skip-pg] [--skip-sqlite]`. Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/7;
that database is flushed) and, unless --skip-pg, PostgreSQL at BENCH_DATABASE_URL (or
BENCH_PG_URL; default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres; a throwaway database is made there).
A CSV file of N rows (imei, serial, username; --passwords adds an enrollment password to
every row) is imported into an empty Self-Maintained profile. Prints on stdout:
  preview_100k_s: seconds to preview the file (read and check every row, look up the users and
    devices it names, keep the preview in Redis), through kmeweb.devices.importer.preview_import
  import_100k_s: seconds from Confirm import (start_import) to the operation done: the import
    job (run in this process, as a worker runs it) checks the rows again and writes them all
  bare_insert_100k_s: the same rows inserted into the emptied device table by the job's own
    driver-level multi-row INSERTs (apply.insert_rows) and nothing else, in the same run
  import_vs_bare_ratio: (preview + import) / bare
  and the same four with `_pg` for PostgreSQL (import_vs_bare_pg_ratio).
(bench/enroll.py prints enroll_per_s, the enrollment endpoint's figure.)
"""

from __future__ import annotations

import argparse
import io
import os
import time

import redis
import sqlalchemy as sa
from _database import add_database_flags, chosen, database
from _env import TMP as _TMP
from _env import log as _log

from kmeweb import create_app
from kmeweb.extensions import db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--passwords", action="store_true")
    add_database_flags(parser)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7")
    csv_bytes = _csv(args.rows, args.passwords)
    for suffix, kind in chosen(args):
        with database(kind, _TMP.name, "import") as db_url:
            redis.Redis.from_url(redis_url).flushdb()
            app = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": db_url,
                    "REDIS_URL": redis_url,
                    "RATELIMIT_STORAGE_URI": redis_url,
                    "CSV_MAX_ROWS": max(args.rows, 200_000),
                    "CSV_MAX_BYTES": max(len(csv_bytes), 20 * 1024 * 1024),
                }
            )
            with app.app_context():
                run(csv_bytes, args.rows, suffix)
                db.session.remove()
                db.engine.dispose()


def _csv(rows: int, passwords: bool) -> bytes:
    from kmeweb.identifiers import luhn_check_digit

    lines = ["imei,serial,username" + (",enrollment_password" if passwords else "")]
    for i in range(rows):
        body = f"35{40_000_000 + i:012d}"
        line = f"{body}{luhn_check_digit(body)},R5BENCH{i:07d},user{i % 1000}"
        lines.append(line + (f",Pass-{i:06d}" if passwords else ""))
    return ("\r\n".join(lines) + "\r\n").encode()


def run(csv_bytes: bytes, n: int, suffix: str) -> None:
    from flask_migrate import upgrade

    from kmeweb.auth import services as auth_services
    from kmeweb.devices import importer
    from kmeweb.devices.models import Device
    from kmeweb.directory.models import EndUser
    from kmeweb.operations.models import Operation
    from kmeweb.profiles.models import Profile

    upgrade()
    session = db.session
    admin, _ = auth_services.create_admin(
        session, "bench@example.com", "bench-import-password-1", "admin"
    )
    profile = Profile(name="Bench warehouse", kind="self_maintained", config={})
    session.add(profile)
    session.add_all(EndUser(username=f"user{i}") for i in range(1000))
    session.commit()
    label = "PostgreSQL" if suffix else "SQLite"

    started = time.perf_counter()
    preview = importer.preview_import(
        session, profile.id, io.BytesIO(csv_bytes), "bench.csv", admin
    )
    preview_s = time.perf_counter() - started
    assert preview.can_import and preview.counts["new"] == n, (preview.counts, preview.errors[:3])
    _log(f"{label}: preview of {n:,} rows in {preview_s:.2f} s")

    started = time.perf_counter()
    operation = importer.start_import(session, profile.id, preview.token, admin)
    session.commit()
    # The job a worker would run (the RQ hand-over itself is not what is measured).
    importer.import_job(operation.id)
    import_s = time.perf_counter() - started
    session.expire_all()
    assert session.get(Operation, operation.id).status == "done"
    count = session.scalar(sa.select(sa.func.count()).where(Device.profile_id == profile.id))
    assert count == n, count
    _log(f"{label}: import of {n:,} rows in {import_s:.2f} s")

    rows = _bare_rows(session, profile.id)
    session.execute(sa.delete(Device))
    session.commit()
    bare_s = _bare_insert(rows)
    count = session.scalar(sa.select(sa.func.count()).select_from(Device))
    assert count == n, count

    sfx = suffix
    print(f"preview_100k{sfx}_s: {preview_s:.2f} s", flush=True)
    print(f"import_100k{sfx}_s: {import_s:.2f} s", flush=True)
    print(f"bare_insert_100k{sfx}_s: {bare_s:.2f} s", flush=True)
    ratio = (preview_s + import_s) / bare_s if bare_s else float("inf")
    print(f"import_vs_bare{sfx}_ratio: {ratio:.2f}", flush=True)


def _bare_rows(session, profile_id: int) -> list[tuple]:
    """The rows the import wrote, as the values a bare INSERT needs."""
    from kmeweb.devices.models import Device

    return [
        tuple(r)
        for r in session.execute(
            sa.select(
                Device.imei, Device.serial, Device.end_user_id, Device.enrollment_password_enc
            ).where(Device.profile_id == profile_id)
        )
    ]


def _bare_insert(rows: list[tuple]) -> float:
    """The same rows written alone, the job's way (`insert_rows`: driver-level executemany of
    ROWS_PER_INSERT-row INSERTs, the columns every row shares as literals), committed: the
    ratio measures what the import does besides writing the rows, not a difference in how the
    rows are written."""
    from kmeweb.devices.importer.apply import insert_rows
    from kmeweb.devices.models import Device
    from kmeweb.extensions import utcnow

    session = db.session
    profile_id = session.scalar(sa.text("SELECT id FROM profile LIMIT 1"))
    session.commit()
    now = utcnow()
    constants = {
        "model": None, "approval": "approved", "profile_id": profile_id, "attributes": {},
        "version": 1, "created_at": now, "updated_at": now,
    }  # fmt: skip
    columns = ("imei", "serial", "end_user_id", "enrollment_password_enc")
    started = time.perf_counter()
    insert_rows(session, Device.__table__, columns, rows, constants)
    session.commit()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
