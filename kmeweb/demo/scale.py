"""Fill a database with a large, plausible KME tenant for measurements (`flask seed-scale`).

What one run creates, all tagged with a short run tag so that several runs never collide:
- the Samsung KME Default Profile (when missing) and `profiles` KME profiles, each with an
  enrollment token and a remote id (as if synced); every 10th is associated with an end user;
- `users` end users (default: one per 100 devices, at least one per profile);
- one reseller per 50 uploads (at least one);
- `uploads` reseller uploads spread over the past year, with order numbers. Every 4th upload is
  still pending (all its devices wait for approval), every 20th is partial (half pending), the
  rest are approved;
- `devices` devices spread evenly over the uploads, each with a valid IMEI (Luhn) and a serial.
  Approved devices sit in the KME profiles round-robin (every 50th in the Default Profile),
  pending ones have no profile; every 3rd device is associated with an end user. All are
  `synced` with a KME device id and what KME held of them (`device_sync`), as after a pull.

Rows go in with bulk inserts: SQLAlchemy Core executemany in chunks on SQLite, COPY on
PostgreSQL. No ORM object is built per row. The tables are analysed at the end so the query
planner knows their sizes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from kmeweb.devices.models import Approval, Device
from kmeweb.directory.models import EndUser
from kmeweb.identifiers import luhn_check_digit
from kmeweb.integration.models import Reseller, Upload, UploadStatus
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import SyncState
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import ensure_default_profile

CHUNK = 20_000
PENDING_EVERY = 4  # every 4th upload is waiting for approval
PARTIAL_EVERY = 20  # every 20th upload is half approved
DEFAULT_PROFILE_EVERY = 50  # every 50th approved device sits in the Default Profile
USER_EVERY = 3  # every 3rd device is associated with an end user

DEVICE_COLUMNS = (
    "imei",
    "serial",
    "model",
    "upload_id",
    "approval",
    "profile_id",
    "end_user_id",
    "attributes",
    "kme_device_id",
    "kme_status",
    "version",
    "created_at",
    "updated_at",
)
MODELS = ("SM-G991B", "SM-A536B", "SM-T870", "SM-S911B", "SM-X200", "SM-G736B")


def upload_state(index: int) -> UploadStatus:
    """pending, partial or approved for the upload at 0-based `index`."""
    if index % PENDING_EVERY == 0:
        return UploadStatus.PENDING
    if index % PARTIAL_EVERY == 1:
        return UploadStatus.PARTIAL
    return UploadStatus.APPROVED


def _free_imei_prefix(session: Session) -> tuple[str, str]:
    """A run tag and an IMEI prefix ("99" + 3 digits) no earlier run used."""
    for _ in range(50):
        n = secrets.randbelow(1000)
        prefix = f"99{n:03d}"
        taken = session.scalar(select(Device.id).where(Device.imei.like(prefix + "%")).limit(1))
        if taken is None:
            return f"{n:03d}{secrets.token_hex(1)}", prefix
    raise RuntimeError("no free IMEI prefix left for seed-scale")


def _bulk_insert(session: Session, table: Any, rows: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            session.execute(table.insert(), batch)
            batch = []
    if batch:
        session.execute(table.insert(), batch)


def _copy_devices(session: Session, rows: Iterator[dict[str, Any]]) -> None:
    """PostgreSQL COPY of the device rows (the fastest bulk path psycopg offers)."""
    raw = session.connection().connection.driver_connection
    cols = ", ".join(DEVICE_COLUMNS)
    with raw.cursor() as cur, cur.copy(f"COPY device ({cols}) FROM STDIN") as copy:
        for row in rows:
            values = [row[c] for c in DEVICE_COLUMNS]
            values[DEVICE_COLUMNS.index("attributes")] = "{}"
            # UTCDateTime stores naive UTC.
            for c in ("created_at", "updated_at"):
                i = DEVICE_COLUMNS.index(c)
                values[i] = values[i].replace(tzinfo=None)
            copy.write_row(values)


def seed_scale(
    session: Session,
    uploads: int = 1000,
    devices: int = 1_000_000,
    profiles: int = 1000,
    users: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Create the rows described in the module docstring in the caller's transaction.

    Returns {"run", "uploads", "devices", "pending_devices", "profiles", "users",
    "resellers", "seconds"}. Flushes; the caller commits. Raises ValueError for counts below
    one upload or negative numbers.
    """
    if uploads < 1 or devices < 0 or profiles < 0:
        raise ValueError("seed-scale needs at least one upload and no negative counts")
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    now = datetime.now(UTC)
    run, imei_prefix = _free_imei_prefix(session)
    serial_prefix = "S" + run.upper()
    n_users = users if users is not None else max(profiles, devices // 100, 1)

    default = ensure_default_profile(session)
    session.flush()

    def user_rows() -> Iterator[dict[str, Any]]:
        for i in range(n_users):
            yield {
                "username": f"scale-{run}-user{i:06d}",
                "email": f"user{i:06d}.{run}@scale.example.com",
                "display_name": f"Scale User {i:06d}",
            }

    _bulk_insert(session, EndUser.__table__, user_rows())
    user_ids = list(
        session.scalars(
            select(EndUser.id)
            .where(EndUser.username.like(f"scale-{run}-user%"))
            .order_by(EndUser.id)
        )
    )
    say(f"{len(user_ids):,} end users")

    def profile_rows() -> Iterator[dict[str, Any]]:
        for i in range(profiles):
            yield {
                "name": f"Scale {run} profile {i:04d}",
                "description": f"Seeded by seed-scale run {run}",
                "kind": ProfileKind.KME,
                "kme_profile_id": f"scale-{run}-p{i:04d}",
                "end_user_id": user_ids[i % len(user_ids)] if user_ids and i % 10 == 0 else None,
                "token": secrets.token_urlsafe(24),
                "token_expires_at": now + timedelta(days=7 + i % 365),
                "without_token": False,
                "config": {},
                "sync_state": "synced",
                "last_synced_at": now,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }

    _bulk_insert(session, Profile.__table__, profile_rows())
    profile_ids = list(
        session.scalars(
            select(Profile.id)
            .where(Profile.kme_profile_id.like(f"scale-{run}-p%"))
            .order_by(Profile.id)
        )
    )
    say(f"{len(profile_ids):,} profiles")

    n_resellers = max(1, uploads // 50)
    _bulk_insert(
        session,
        Reseller.__table__,
        (
            {
                "kme_reseller_id": f"SCALE{run.upper()}R{i:04d}",
                "name": f"Scale Reseller {i:04d}",
            }
            for i in range(n_resellers)
        ),
    )
    reseller_ids = list(
        session.scalars(
            select(Reseller.id)
            .where(Reseller.kme_reseller_id.like(f"SCALE{run.upper()}R%"))
            .order_by(Reseller.id)
        )
    )

    per_upload, extra = divmod(devices, uploads)
    sizes = [per_upload + (1 if i < extra else 0) for i in range(uploads)]
    _bulk_insert(
        session,
        Upload.__table__,
        (
            {
                "kme_upload_id": f"SCALE-{run}-{i:06d}",
                "reseller_id": reseller_ids[i % len(reseller_ids)],
                "order_number": f"PO-{run}-{i:06d}",
                "uploaded_at": now - timedelta(minutes=(uploads - i) * 525),
                "device_count": sizes[i],
                "status": upload_state(i),
            }
            for i in range(uploads)
        ),
    )
    upload_ids = list(
        session.scalars(
            select(Upload.id).where(Upload.kme_upload_id.like(f"SCALE-{run}-%")).order_by(Upload.id)
        )
    )
    say(f"{len(reseller_ids):,} resellers, {len(upload_ids):,} uploads")

    counts = {"pending": 0}

    def device_rows() -> Iterator[dict[str, Any]]:
        n = 0
        approved_n = 0
        for u, size in enumerate(sizes):
            state = upload_state(u)
            pending_from = {UploadStatus.PENDING: 0, UploadStatus.PARTIAL: size // 2}.get(
                state, size
            )
            for k in range(size):
                body = f"{imei_prefix}{n:09d}"
                pending = k >= pending_from
                if pending:
                    counts["pending"] += 1
                    profile_id = None
                elif not profile_ids or approved_n % DEFAULT_PROFILE_EVERY == 0:
                    profile_id = default.id
                    approved_n += 1
                else:
                    profile_id = profile_ids[approved_n % len(profile_ids)]
                    approved_n += 1
                yield {
                    "imei": body + str(luhn_check_digit(body)),
                    "serial": f"{serial_prefix}{n:09d}",
                    "model": MODELS[n % len(MODELS)],
                    "upload_id": upload_ids[u],
                    "approval": Approval.PENDING if pending else Approval.APPROVED,
                    "profile_id": profile_id,
                    "end_user_id": (
                        user_ids[n % len(user_ids)] if user_ids and n % USER_EVERY == 0 else None
                    ),
                    "attributes": {},
                    "kme_device_id": f"scale-{run}-d{n:09d}",
                    "kme_status": "Pending Approval" if pending else "Profile Assigned",
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                n += 1
                if n % 200_000 == 0:
                    say(f"{n:,} devices")

    if session.get_bind().dialect.name == "postgresql":
        _copy_devices(session, device_rows())
    else:
        _bulk_insert(session, Device.__table__, device_rows())
    session.flush()
    # What a pull leaves for each device it read: synced, and what KME held of it.
    device = Device.__table__
    outbox.write_device_sync(
        session,
        device.c.kme_device_id.like(f"scale-{run}-d%"),
        sync_state=SyncState.SYNCED,
        kme_seen_approval=device.c.approval,
        kme_seen_profile_id=device.c.profile_id,
        kme_seen_at=now,
    )
    kept_counts.recount(session)
    _analyze(session)
    seconds = time.monotonic() - started
    say(f"{devices:,} devices ({counts['pending']:,} pending) in {seconds:.1f} s")
    return {
        "run": run,
        "uploads": len(upload_ids),
        "devices": devices,
        "pending_devices": counts["pending"],
        "profiles": len(profile_ids),
        "users": len(user_ids),
        "resellers": len(reseller_ids),
        "seconds": round(seconds, 1),
    }


def _analyze(session: Session) -> None:
    tables = ("device", "device_sync", "upload", "profile", "end_user", "reseller")
    if session.get_bind().dialect.name == "postgresql":
        for table in tables:
            session.execute(text(f"ANALYZE {table}"))
    else:
        session.execute(text("ANALYZE"))


def device_total(session: Session) -> int:
    """How many devices the database holds (the command's closing line)."""
    return session.scalar(select(func.count()).select_from(Device)) or 0


def vacuum_analyze(engine: Any) -> None:
    """PostgreSQL: VACUUM ANALYZE the seeded tables after the commit, as autovacuum soon would,
    so index-only scans (pending counts per upload) see a current visibility map."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("device", "upload", "profile", "end_user", "reseller"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
