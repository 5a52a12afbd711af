"""Append-only audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import has_request_context, request
from sqlalchemy import Connection, Select, bindparam, func, insert, select
from sqlalchemy.orm import Session

from kmeweb.audit.models import AuditEvent
from kmeweb.redact import redact_details
from kmeweb.sqlutil import DriverStatement, connection_of


def record(
    session: Session,
    actor: Any,
    action: str,
    target_type: str | None = None,
    target_id: Any = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Add one audit event to the session (the caller's transaction commits it).

    `actor` is an AdminUser, or a string such as "sync" or "device". `details` are kept
    without secrets (kmeweb.redact: secret keys hidden, webhook URLs masked): viewers read them.
    """
    if isinstance(actor, str):
        actor_name, actor_id = actor, None
    else:
        actor_name, actor_id = actor.email, actor.id
    if ip is None and has_request_context():
        ip = request.remote_addr
    event = AuditEvent(
        actor=actor_name,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=redact_details(details or {}),
        ip=ip,
    )
    session.add(event)
    return event


def record_device_event(
    session: Session | Connection,
    action: str,
    device_id: int,
    details: dict[str, Any],
    ip: str | None,
) -> None:
    """`record` for the device side (actor "device"), as one INSERT statement on the driver's
    cursor, without an ORM object: enrollment writes one per registered device and is the hot
    path, on a Session's connection or on a Connection of its own."""
    _DEVICE_EVENT.rowcount(
        connection_of(session),
        {
            "at": datetime.now(UTC),
            "action": action,
            "target_id": str(device_id),
            "details": redact_details(details),
            "ip": ip,
        },
    )


_DEVICE_EVENT = DriverStatement(
    insert(AuditEvent.__table__).values(
        at=bindparam("at"),
        actor="device",
        actor_id=None,
        action=bindparam("action"),
        target_type="device",
        target_id=bindparam("target_id"),
        details=bindparam("details"),
        ip=bindparam("ip"),
    )
)


def query_events(
    actor: str | None = None,
    action: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    *,
    at_from: datetime | None = None,
    at_to: datetime | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> Select:
    """Events newest first, filtered by actor (substring), action (exact), the inclusive date
    range `date_from`..`date_to` (whole UTC days), the time range `at_from` (inclusive) to
    `at_to` (exclusive; a time without a zone is UTC), and the object: `target_type` and
    `target_id` (exact)."""
    stmt = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if actor:
        # autoescape: a typed % or _ matches itself, not any text.
        stmt = stmt.where(AuditEvent.actor.icontains(actor, autoescape=True))
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if date_from:
        stmt = stmt.where(AuditEvent.at >= datetime.combine(date_from, time.min, tzinfo=UTC))
    if date_to:
        end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)
        stmt = stmt.where(AuditEvent.at < end)
    if at_from is not None:
        stmt = stmt.where(AuditEvent.at >= _utc(at_from))
    if at_to is not None:
        stmt = stmt.where(AuditEvent.at < _utc(at_to))
    if target_type:
        stmt = stmt.where(AuditEvent.target_type == target_type)
    if target_id:
        stmt = stmt.where(AuditEvent.target_id == target_id)
    return stmt


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iter_events(session: Session, stmt: Select, chunk: int = 1000) -> Iterator[AuditEvent]:
    """The events of `stmt` (a query_events select), newest id first, read `chunk` at a time
    by id (WHERE id < last LIMIT chunk): an export of millions of events holds one chunk in
    memory, never the whole log."""
    stmt = stmt.order_by(None).order_by(AuditEvent.id.desc()).limit(chunk)
    last: int | None = None
    while True:
        page = stmt if last is None else stmt.where(AuditEvent.id < last)
        rows = list(session.scalars(page))
        yield from rows
        if len(rows) < chunk:
            return
        last = rows[-1].id


#: The Audit log counts its events up to this many (then "more than 10,000").
COUNT_LIMIT = 10_000


def known_actions(session: Session) -> list[str]:
    """Every action in the log, sorted, read from the action index one value at a time (a loose
    index scan: a few dozen index probes, however many millions of events).

    The walk goes down from the highest action: the last index entries of an action are its
    newest events, alive even while the history purge deletes its oldest ones, so no probe
    wades through the dead entries a purge leaves until vacuum."""
    table = AuditEvent.__table__
    walk = select(func.max(table.c.action).label("action")).cte("known_action", recursive=True)
    below = select(func.max(table.c.action)).where(table.c.action < walk.c.action).scalar_subquery()
    walk = walk.union_all(select(below).where(walk.c.action.is_not(None)))
    stmt = select(walk.c.action).where(walk.c.action.is_not(None)).order_by(walk.c.action)
    return list(session.scalars(stmt))
