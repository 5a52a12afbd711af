"""Import devices: Confirm import, and the job that writes every device all or nothing.

`start_import` (only for a preview without errors) adds the operation whose job (`import_job`)
checks the rows against the database again, with progress, and then writes every device in one
transaction: a failure half way leaves the database as it was. Passwords are stored encrypted
(kmeweb.crypto) and never shown or exported again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, bindparam, literal, select, update
from sqlalchemy.exc import CompileError, IntegrityError
from sqlalchemy.orm import Session

from kmeweb import crypto, gcpause
from kmeweb.audit import services as audit
from kmeweb.auth.models import AdminUser
from kmeweb.csvimport import ImportRejected, RowError
from kmeweb.devices import history
from kmeweb.devices.importer.check import ACTIONS, CHUNK, Plan, get_profile, plan_import
from kmeweb.devices.importer.parse import ParsedRow
from kmeweb.devices.importer.preview import forget_preview, load_preview, read_preview, row_count
from kmeweb.devices.models import Approval, Device, DeviceEventKind
from kmeweb.errors import Conflict, NotFound
from kmeweb.extensions import db, utcnow
from kmeweb.operations import dispatch
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation, OperationKind, OperationStatus
from kmeweb.operations.queue import JOB_FAILURES
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles.models import Profile
from kmeweb.sqlutil import chunks
from kmeweb.text import count

NOT_WRITTEN = ("password", "clear_password", "was_profile_id", "was_user_id")
PROGRESS_S = 0.5  # seconds between two progress commits
STALE = "The devices changed since the preview"
ROWS_PER_INSERT = 100  # rows to an INSERT statement (4 parameters each, far below the limits)


def start_import(session: Session, profile_id: int, token: str, actor: Any) -> Operation:
    """Confirm import: the operation whose job applies the preview (enqueued after the commit).

    Confirming the same preview twice gives the same operation. Records audit
    "device.import.start". Raises NotFound (expired) or ImportRejected (422: the preview has
    errors, listed by row, or no rows).
    """
    profile = get_profile(session, profile_id)
    data = load_preview(token, profile.id, actor)
    n = row_count(data)
    if data["errors"] or not n:
        raise ImportRejected(
            "This file has errors; correct it and upload it again.",
            [RowError(*e) for e in data["errors"]],
        )
    dedup = f"import:{token}"[:100]
    existing = session.scalar(select(Operation).where(Operation.dedup_key == dedup).limit(1))
    if existing is not None:
        return existing
    operation = operations.create_operation(
        session,
        OperationKind.DEVICE_IMPORT,
        f"Import {count(n, 'device')} into {profile.name}",
        n,
        actor,
        dedup_key=dedup,
    )
    audit.record(
        session,
        actor,
        "device.import.start",
        "profile",
        profile.id,
        {
            "file": data["filename"],
            "rows": n,
            "counts": data["counts"],
            "operation_id": operation.id,
        },
    )
    dispatch.after_commit(session, operation)
    return operation


def apply_plan(session: Session, profile: Profile, plan: Plan) -> datetime:
    """Write every device of the plan (one executemany per statement shape). Flushes, never
    commits. Returns the time written as the new devices' `created_at`. Raises Conflict when a
    device changed since the plan was made."""
    now = utcnow()
    shift = kept_counts.moving(
        session,
        [c["b_id"] for c in plan.changes if c["was_profile_id"] != profile.id],
        profile.id,
    )
    shift.add(profile.id, len(plan.new))
    if plan.new:
        constants = {
            "model": None,
            "approval": str(Approval.APPROVED),
            "profile_id": profile.id,
            "attributes": {},
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        insert_rows(
            session,
            Device.__table__,
            ("imei", "serial", "end_user_id", "enrollment_password_enc"),
            (
                (r.imei, r.serial, user_id, crypto.encrypt(r.password) if r.password else None)
                for r, user_id in plan.new
            ),
            constants,
        )
    table = Device.__table__
    with_password = []
    keep_password = []
    for c in plan.changes:
        values = {k: v for k, v in c.items() if k not in NOT_WRITTEN}
        if c["password"] or c["clear_password"]:
            values["b_password"] = crypto.encrypt(c["password"]) if c["password"] else None
            with_password.append(values)
        else:
            keep_password.append(values)
    changed = 0
    for params, extra in (
        (with_password, {"enrollment_password_enc": bindparam("b_password")}),
        (keep_password, {}),
    ):
        if not params:
            continue
        result = session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.version == bindparam("b_version"))
            .values(
                profile_id=bindparam("profile_id"),
                imei=bindparam("imei"),
                serial=bindparam("serial"),
                end_user_id=bindparam("end_user_id"),
                version=table.c.version + 1,
                updated_at=now,
                **extra,
            ),
            params,
        )
        changed += result.rowcount if result.rowcount is not None else 0
    if plan.changes and session.get_bind(mapper=Device).dialect.supports_sane_multi_rowcount:
        if changed != len(plan.changes):
            raise Conflict(f"{STALE}: {len(plan.changes) - changed:,} were changed meanwhile.")
    elif plan.changes:
        expected = {c["b_id"]: c["b_version"] + 1 for c in plan.changes}
        ok = 0
        for chunk in chunks(list(expected), CHUNK):
            for device_id, version in session.execute(
                select(Device.id, Device.version).where(Device.id.in_(chunk))
            ):
                ok += version == expected[device_id]
        if ok != len(expected):
            raise Conflict(f"{STALE}: {len(expected) - ok:,} were changed meanwhile.")
    kept_counts.apply(session, shift)
    session.flush()
    return now


def insert_rows(
    session: Session,
    table: Any,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    constants: dict[str, Any],
) -> None:
    """One driver-level executemany of `rows` (plain values for `columns`, no type to apply)
    plus `constants` (the same for every row: rendered once as SQL literals of their types),
    ROWS_PER_INSERT rows to a statement (one VALUES list of that many rows; the last
    statement takes the rest): a one-row statement per row cost more, binding and stepping
    it, than the rows' own writes (SQLite) or a round of the server's per-statement work
    (PostgreSQL)."""
    conn = session.connection(bind_arguments={"mapper": Device})
    dialect = conn.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    marks = [mark] * len(columns)
    for name, value in constants.items():
        marks.append(_sql_literal(dialect, table.c[name].type, value))
    names = [*columns, *constants]
    head = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
    one = f"({', '.join(marks)})"
    params = list(rows)
    whole = len(params) - len(params) % ROWS_PER_INSERT
    width = len(columns) * ROWS_PER_INSERT
    if whole:
        flat = [value for row in params[:whole] for value in row]
        conn.exec_driver_sql(
            head + ", ".join([one] * ROWS_PER_INSERT),
            [tuple(flat[i : i + width]) for i in range(0, len(flat), width)],
        )
    if whole < len(params):
        rest = params[whole:]
        conn.exec_driver_sql(
            head + ", ".join([one] * len(rest)), tuple(v for row in rest for v in row)
        )


def _sql_literal(dialect: Any, type_: Any, value: Any) -> str:
    """`value` of a column of `type_` as SQL text, rendered by SQLAlchemy (quoted, escaped)."""

    def render(v: Any, t: Any) -> str:
        return str(literal(v, t).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    try:
        return render(value, type_)
    except CompileError:  # a type without a literal form (JSON, an untyped foreign key)
        if isinstance(value, dict | list):
            return render(json.dumps(value), String())  # a JSON column takes its text
        if isinstance(value, int) and not isinstance(value, bool):
            return render(value, Integer())
        raise


class _Progress:
    """Rows checked, added to the operation's count at most every PROGRESS_S (a commit
    costs). After a rollback (`restart`), rows counted again are added only past those whose
    count was committed."""

    def __init__(self, session: Session, operation_id: int | None) -> None:
        self.session = session
        self.operation_id = operation_id
        self.pending = 0  # counted, not added yet
        self.committed = 0
        self.skip = 0
        self.at = time.monotonic()

    def __call__(self, n: int) -> None:
        if self.skip:
            skipped = min(n, self.skip)
            self.skip -= skipped
            n -= skipped
        self.pending += n
        if self.operation_id is not None and time.monotonic() - self.at >= PROGRESS_S:
            operations.add_progress(self.session, self.operation_id, self.pending)
            self.session.commit()
            self.committed += self.pending
            self.pending = 0
            self.at = time.monotonic()

    def add_rest(self) -> None:
        """Add what is not added yet, in the current transaction (it commits with the
        devices)."""
        if self.operation_id is not None and self.pending:
            operations.add_progress(self.session, self.operation_id, self.pending)

    def restart(self) -> None:
        self.skip = self.committed
        self.pending = 0


def run_import(
    session: Session,
    profile_id: int,
    data: dict[str, Any],
    actor: Any,
    operation_id: int | None = None,
) -> dict[str, int]:
    """Check the stored rows against the database again and write them all, or raise and
    write nothing. Progress (rows checked) is committed as it goes; the devices and the audit
    event "device.import" are flushed in the caller's transaction. Returns the counts.
    Raises NotFound/Conflict (profile gone, devices changed since the preview).

    The rows that the preview found in the database (its "found") are read again; the others
    are written as new devices, and should a device have appeared since for one of them, the
    unique IMEI and serial refuse the insert: that attempt is rolled back (progress commits
    aside, it wrote nothing) and every row is checked again, as for a preview without
    "found"."""
    rows = list(map(ParsedRow._make, data["rows"]))
    progress = _Progress(session, operation_id)
    found = data.get("found")
    if found is not None:
        try:
            return _import(session, profile_id, rows, data, actor, operation_id, progress, found)
        except IntegrityError:
            session.rollback()
            progress.restart()
    return _import(session, profile_id, rows, data, actor, operation_id, progress, None)


def _import(
    session: Session,
    profile_id: int,
    rows: list[ParsedRow],
    data: dict[str, Any],
    actor: Any,
    operation_id: int | None,
    progress: _Progress,
    found: list[int] | None,
) -> dict[str, int]:
    profile = get_profile(session, profile_id)
    look_up = None if found is None else set(found)
    plan = plan_import(session, profile, rows, data["has_user"], progress, look_up)
    progress.add_rest()
    if plan.errors:
        first = plan.errors[0]
        raise Conflict(
            f"{STALE} ({len(plan.errors):,} rows no longer fit, e.g. row {first.row}: "
            f"{first.reason}). Upload the file again; nothing was imported."
        )
    created = apply_plan(session, profile, plan)
    _record_history(session, profile, plan, created, data["filename"], actor, operation_id)
    counts = {action: plan.counts.get(action, 0) for action in ACTIONS}
    audit.record(
        session,
        actor,
        "device.import",
        "profile",
        profile.id,
        {
            "file": data["filename"],
            "counts": counts,
            "moved_from": {str(pid): n for pid, n in plan.moved_from.items()},
            "passwords": sum(1 for r in rows if r.password),
            "operation_id": operation_id,
        },
    )
    session.flush()
    return counts


def _record_history(
    session: Session,
    profile: Profile,
    plan: Plan,
    created: datetime,
    filename: str,
    actor: Any,
    operation_id: int | None,
) -> None:
    """Each device's history: "Imported from a CSV file" for the new ones (found by the
    `created_at` apply_plan gave them: one INSERT ... SELECT), and a move or a user change for
    the devices the file changed (one executemany each)."""
    if plan.new:
        new_ids = select(Device.id).where(
            Device.profile_id == profile.id, Device.created_at == created
        )
        history.record_events(
            session,
            DeviceEventKind.UPLOADED,
            new_ids,
            actor,
            {"import": filename, "profile_id": profile.id},
            operation_id=operation_id,
            at=created,
        )
    moved = [
        (c["b_id"], {"from": c["was_profile_id"], "to": profile.id}, None)
        for c in plan.changes
        if c["was_profile_id"] != profile.id
    ]
    users = [
        (
            c["b_id"],
            {"from": c["was_user_id"], "to": c["end_user_id"], "password": bool(c["password"])},
            None,
        )
        for c in plan.changes
        if c["was_user_id"] != c["end_user_id"] or c["password"]
    ]
    history.record_each(session, DeviceEventKind.MOVED, moved, actor, operation_id)
    history.record_each(session, DeviceEventKind.USER, users, actor, operation_id)


@dataclass(frozen=True)
class ImportActor:
    """Who an import job records as its actor: the admin who previewed it, named as then (an
    API token's calls read "owner (API token name)")."""

    id: int
    email: str


def _actor(admin: AdminUser | None, data: dict[str, Any]) -> Any:
    if admin is None:
        return "system"
    return ImportActor(admin.id, data.get("actor") or admin.email)


def import_job(operation_id: int) -> dict[str, int] | None:
    """Apply a confirmed preview (RQ job on the default queue). All or nothing: the devices,
    the audit event and the operation's "done" commit together; on any failure the operation
    is marked failed with the reason and nothing else is written. Idempotent: an operation
    that is no longer queued is left alone."""
    session = db.session
    operation = session.get(Operation, operation_id)
    if operation is None or operation.status != OperationStatus.QUEUED:
        session.rollback()
        return None
    token = (operation.dedup_key or "").removeprefix("import:")
    admin = session.get(AdminUser, operation.created_by) if operation.created_by else None
    operations.mark_running(session, operation_id)
    session.commit()
    try:
        with gcpause.paused():
            data = read_preview(token)
            if data is None:
                raise NotFound("The preview expired before the import ran; upload the file again.")
            actor = _actor(admin, data)
            counts = run_import(session, data["profile_id"], data, actor, operation_id)
            operations.finish(session, operation_id)
            session.commit()
    except JOB_FAILURES as exc:  # RQ's timeout too: say why it stopped
        session.rollback()
        message = getattr(exc, "message", None) or f"The import failed: {exc}"
        operations.finish(session, operation_id, message)
        session.commit()
        if isinstance(exc, NotFound | Conflict):
            return None
        raise
    forget_preview(token)
    return counts
