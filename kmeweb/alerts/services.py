"""Alert destinations, the events that trigger alerts, and sending one signed alert.

How an alert travels: the scheduler's `evaluate_alerts_job` (kmeweb.alerts.jobs) looks at what
is true now (tokens about to expire or expired, failed operations, the integration's last
error, uploads waiting too long) and, for each enabled destination that takes that event,
inserts one `alert_delivery` row keyed by (destination, event key), skipping keys that already
have a row. Only rows it inserted are enqueued: however many ticks and workers evaluate the
same event, the database holds one row for it, and a worker claims a row before it sends it,
so each event reaches each destination once. `deliver_job` sends it as a JSON POST signed
with the destination's shared secret, retried with backoff by RQ; a delivery that uses up
every attempt marks its destination failing (shown on the Overview) until one succeeds again.

Wire format (also on Admin › Alerts and in docs/alerts.md): the body is UTF-8 JSON with a
`text` field (what Slack and Microsoft Teams incoming webhooks display) and structured fields;
with a shared secret, `X-Kmeweb-Signature: <hex>` carries the lowercase hex HMAC-SHA256 of the
exact body bytes under the secret (64 characters, no prefix).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kmeweb import crypto, text
from kmeweb.alerts.models import (
    ALWAYS_SENT,
    EVENT_LABELS,
    TOKEN_DAYS_ALERT_DEFAULT,
    AlertDelivery,
    AlertDestination,
    AlertEvent,
    DeliveryStatus,
)
from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.auth.services import BREAK_GLASS_ACTION
from kmeweb.errors import NotFound, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.integration.models import Integration, Reseller, Upload, UploadStatus
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.profiles.models import Profile
from kmeweb.profiles.services import token_needed

SIGNATURE_HEADER = "X-Kmeweb-Signature"
EVENT_HEADER = "X-Kmeweb-Event"
DELIVERY_HEADER = "X-Kmeweb-Delivery"
NAME_MAX, URL_MAX, SECRET_MAX = 100, 2000, 500
TOKEN_DAYS_RANGE = (1, 365)
UPLOAD_HOURS_RANGE = (1, 720)
#: Operations that failed longer ago than this are history, not news, for a new destination.
OPERATION_LOOKBACK = timedelta(days=1)
ERROR_MAX = 500


# --- destinations -------------------------------------------------------------------------


def get_destination_or_404(session: Session, destination_id: int) -> AlertDestination:
    """Raises NotFound."""
    destination = session.get(AlertDestination, destination_id)
    if destination is None:
        raise NotFound("No such alert destination.")
    return destination


def list_destinations(session: Session) -> list[AlertDestination]:
    return list(session.scalars(select(AlertDestination).order_by(AlertDestination.name)))


def failing_destinations(session: Session) -> list[AlertDestination]:
    return list(
        session.scalars(
            select(AlertDestination)
            .where(AlertDestination.failing.is_(True))
            .order_by(AlertDestination.name)
        )
    )


def validate_url(value: Any) -> str:
    """An absolute http or https URL with a host. Raises ValidationError(field "url")."""
    url = str(value or "").strip()
    if not url:
        raise ValidationError("Enter the webhook URL.", field="url")
    if len(url) > URL_MAX:
        raise ValidationError(f"The URL is longer than {URL_MAX} characters.", field="url")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError:
        raise ValidationError("This is not a valid URL.", field="url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationError(
            "Use an http:// or https:// URL (an incoming webhook of Slack, Teams or your own).",
            field="url",
        )
    if not host or any(c.isspace() for c in url):
        raise ValidationError("The URL needs a host name, like https://hooks.example.com/…", "url")
    return url


def _bounded_int(value: Any, field: str, label: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValidationError(
            f"{label}: enter a whole number from {low} to {high}.", field
        ) from None
    if not low <= number <= high:
        raise ValidationError(f"{label}: enter a whole number from {low} to {high}.", field)
    return number


def _validate(
    session: Session, data: Mapping[str, Any], destination: AlertDestination | None
) -> dict[str, Any]:
    name = str(data.get("name") or "").strip()
    if not name:
        raise ValidationError("Enter a name for this destination.", field="name")
    if len(name) > NAME_MAX:
        raise ValidationError(f"The name is longer than {NAME_MAX} characters.", field="name")
    clash = select(AlertDestination.id).where(AlertDestination.name == name)
    if destination is not None:
        clash = clash.where(AlertDestination.id != destination.id)
    if session.scalar(clash) is not None:
        raise ValidationError(f"A destination called “{name}” exists already.", field="name")
    url = validate_url(data.get("url"))
    events = [e for e in dict.fromkeys(data.get("events") or []) if e in EVENT_LABELS]
    unknown = [e for e in data.get("events") or [] if e not in EVENT_LABELS]
    if unknown:
        raise ValidationError(f"Unknown event: {unknown[0]}.", field="events")
    if not events:
        raise ValidationError("Choose at least one event to send.", field="events")
    secret = data.get("secret") or ""
    if len(secret) > SECRET_MAX:
        raise ValidationError(
            f"The shared secret is longer than {SECRET_MAX} characters.", field="secret"
        )
    return {
        "name": name,
        "url": url,
        "events": events,
        "token_days": _bounded_int(
            data.get("token_days", TOKEN_DAYS_ALERT_DEFAULT),
            "token_days",
            "Days before expiry",
            TOKEN_DAYS_RANGE,
        ),
        "upload_hours": _bounded_int(
            data.get("upload_hours", 24), "upload_hours", "Hours waiting", UPLOAD_HOURS_RANGE
        ),
        "enabled": bool(data.get("enabled", True)),
        "secret": secret,
        "clear_secret": bool(data.get("clear_secret")),
    }


def _apply(destination: AlertDestination, values: dict[str, Any]) -> list[str]:
    """Set the values; returns the names of what changed (never the secret itself)."""
    changed = []
    for key in ("name", "url", "events", "token_days", "upload_hours", "enabled"):
        if getattr(destination, key) != values[key]:
            setattr(destination, key, values[key])
            changed.append(key)
    if values["secret"]:
        destination.secret_enc = crypto.encrypt(values["secret"])
        changed.append("secret")
    elif values["clear_secret"] and destination.secret_enc:
        destination.secret_enc = None
        changed.append("secret removed")
    return changed


def create_destination(session: Session, data: Mapping[str, Any], actor: Any) -> AlertDestination:
    """Add a destination from `data` (name, url, secret, events, token_days, upload_hours,
    enabled). Records audit "alert.destination_create". Flushes.
    Raises ValidationError (fields name, url, secret, events, token_days, upload_hours)."""
    values = _validate(session, data, None)
    destination = AlertDestination(failing=False)
    _apply(destination, values)
    session.add(destination)
    session.flush()
    audit.record(
        session,
        actor,
        "alert.destination_create",
        "alert_destination",
        destination.id,
        {"name": destination.name, "url": destination.url, "events": destination.events},
    )
    return destination


def update_destination(
    session: Session, destination_id: int, data: Mapping[str, Any], actor: Any
) -> AlertDestination:
    """Save a destination; an empty secret keeps the stored one, `clear_secret` removes it.
    Records audit "alert.destination_update". Flushes. Raises NotFound or ValidationError."""
    destination = get_destination_or_404(session, destination_id)
    values = _validate(session, data, destination)
    changed = _apply(destination, values)
    session.flush()
    audit.record(
        session,
        actor,
        "alert.destination_update",
        "alert_destination",
        destination.id,
        {"name": destination.name, "changed": changed},
    )
    return destination


def delete_destination(session: Session, destination_id: int, actor: Any) -> str:
    """Delete a destination and its delivery history; returns its name.
    Records audit "alert.destination_delete". Flushes. Raises NotFound."""
    destination = get_destination_or_404(session, destination_id)
    name = destination.name
    session.execute(delete(AlertDelivery).where(AlertDelivery.destination_id == destination.id))
    session.delete(destination)
    audit.record(
        session,
        actor,
        "alert.destination_delete",
        "alert_destination",
        destination_id,
        {"name": name},
    )
    session.flush()
    return name


def recent_deliveries(session: Session, limit: int = 20) -> list[tuple[AlertDelivery, str]]:
    """The newest deliveries with their destination's name."""
    return list(
        session.execute(
            select(AlertDelivery, AlertDestination.name)
            .join(AlertDestination, AlertDestination.id == AlertDelivery.destination_id)
            .order_by(AlertDelivery.id.desc())
            .limit(limit)
        ).all()
    )


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something an admin should hear about; `key` names it uniquely and stably."""

    kind: str
    key: str
    title: str
    text: str
    severity: str  # info | warning | critical
    subject: dict[str, Any]
    path: str | None = None  # the console page that deals with it
    at: datetime | None = None  # when it happened (for events that happen, not states)
    #: token_expiring: days left; upload_waiting: hours waiting (compared with each destination)
    amount: float = 0


def _ts(value: datetime | None) -> str:
    return str(int(value.timestamp())) if value is not None else "none"


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def current_events(
    session: Session, now: datetime, token_days: int, upload_hours: int
) -> list[Event]:
    """What is alert-worthy now, for the widest thresholds of the destinations (each
    destination then keeps those within its own). Tokens count only while devices still need
    them (profiles.services.token_needed). Reads indexed rows, never loads devices."""
    events: list[Event] = []
    horizon = now + timedelta(days=token_days)
    profiles = session.execute(
        select(Profile.id, Profile.name, Profile.token_expires_at)
        .where(
            token_needed(),
            Profile.token_expires_at.is_not(None),
            Profile.token_expires_at <= horizon,
        )
        .order_by(Profile.token_expires_at)
    ).all()
    for pid, name, expires in profiles:
        subject = {"type": "profile", "id": pid, "name": name, "expires_at": expires.isoformat()}
        if expires <= now:
            events.append(
                Event(
                    AlertEvent.TOKEN_EXPIRED,
                    f"token_expired:{pid}:{_ts(expires)}",
                    f"Enrollment token expired: {name}",
                    f"The enrollment token of profile “{name}” expired on {_when(expires)}: "
                    "devices cannot enroll with it until it is extended or refreshed.",
                    "critical",
                    subject,
                    f"/profiles/{pid}",
                )
            )
        else:
            left = (expires - now).total_seconds() / 86400
            days = max(1, int(left + 0.999))
            events.append(
                Event(
                    AlertEvent.TOKEN_EXPIRING,
                    f"token_expiring:{pid}:{_ts(expires)}",
                    f"Enrollment token expiring: {name}",
                    f"The enrollment token of profile “{name}” expires in {days} "
                    f"day{'s' if days != 1 else ''} ({_when(expires)}). Extend it on the "
                    "profile page before devices are refused.",
                    "warning",
                    subject,
                    f"/profiles/{pid}",
                    amount=left,
                )
            )
    failed = session.execute(
        select(Operation.id, Operation.label, Operation.error, Operation.finished_at)
        .where(
            Operation.status == OperationStatus.FAILED,
            Operation.finished_at >= now - OPERATION_LOOKBACK,
        )
        .order_by(Operation.id)
    ).all()
    for oid, label, error, finished in failed:
        events.append(
            Event(
                AlertEvent.OPERATION_FAILED,
                f"operation_failed:{oid}:{_ts(finished)}",
                f"Operation failed: {label}",
                f"The operation “{label}” failed: {error or 'no reason recorded'}. "
                "Retry it on the Operations page.",
                "critical",
                {"type": "operation", "id": oid, "label": label, "error": error},
                f"/operations/{oid}",
                at=finished,
            )
        )
    integration = session.scalar(select(Integration).order_by(Integration.id).limit(1))
    if integration is not None and integration.last_error:
        digest = hashlib.sha256(integration.last_error.encode()).hexdigest()[:12]
        events.append(
            Event(
                AlertEvent.INTEGRATION_ERROR,
                # One alert per error since the last successful pull, not one per failed pull.
                f"integration_error:{_ts(integration.last_pull_at)}:{digest}",
                "Knox integration error",
                f"The Knox integration reports an error: {integration.last_error}",
                "critical",
                {
                    "type": "integration",
                    "id": integration.id,
                    "name": integration.name,
                    "error": integration.last_error,
                    "error_at": integration.last_error_at.isoformat()
                    if integration.last_error_at
                    else None,
                },
                "/integration/",
            )
        )
    waiting = session.execute(
        select(
            Upload.id, Upload.kme_upload_id, Upload.uploaded_at, Upload.device_count, Reseller.name
        )
        .join(Reseller, Reseller.id == Upload.reseller_id, isouter=True)
        .where(
            Upload.status.in_((UploadStatus.PENDING, UploadStatus.PARTIAL)),
            Upload.uploaded_at.is_not(None),
            Upload.uploaded_at <= now - timedelta(hours=upload_hours),
        )
        .order_by(Upload.uploaded_at)
    ).all()
    for uid, kme_id, uploaded, count, reseller in waiting:
        hours = (now - uploaded).total_seconds() / 3600
        source = f" from {reseller}" if reseller else ""
        events.append(
            Event(
                AlertEvent.UPLOAD_WAITING,
                f"upload_waiting:{uid}",
                f"Upload waiting for approval: {kme_id}",
                f"Upload {kme_id}{source} ({text.count(count, 'device')}) has been waiting for "
                "approval for "
                f"{int(hours)} hours. Approve it on Admin › Knox Integration › Uploads.",
                "warning",
                {"type": "upload", "id": uid, "kme_upload_id": kme_id, "reseller": reseller},
                f"/integration/uploads/{uid}",
                amount=hours,
            )
        )
    events.extend(_break_glass_sign_ins(session, now))
    return events


def _break_glass_sign_ins(session: Session, now: datetime) -> list[Event]:
    """Each sign-in of a break-glass account (audit action BREAK_GLASS_ACTION) of the last day."""
    rows = session.execute(
        select(AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.actor_id, AuditEvent.ip)
        .where(
            AuditEvent.action == BREAK_GLASS_ACTION,
            AuditEvent.at >= now - OPERATION_LOOKBACK,
        )
        .order_by(AuditEvent.id)
    ).all()
    return [
        Event(
            AlertEvent.BREAK_GLASS,
            f"break_glass:{audit_id}",
            f"Break-glass sign-in: {actor}",
            f"The break-glass account {actor} signed in with its password on {_when(at)}"
            f"{f' from {ip}' if ip else ''}. If nobody expected it, deactivate the account on "
            "Admin › Accounts and check the audit log.",
            "critical",
            {"type": "admin_user", "id": actor_id, "email": actor, "ip": ip},
            "/audit/?action=auth.break_glass",
            at=at,
        )
        for audit_id, at, actor, actor_id, ip in rows
    ]


def _wanted(destination: AlertDestination, event: Event) -> bool:
    if event.kind in ALWAYS_SENT:
        return event.at is not None and event.at >= destination.created_at
    if event.kind not in (destination.events or []):
        return False
    if event.kind == AlertEvent.TOKEN_EXPIRING:
        return event.amount <= destination.token_days
    if event.kind == AlertEvent.UPLOAD_WAITING:
        return event.amount >= destination.upload_hours
    if event.kind == AlertEvent.OPERATION_FAILED:
        # A new destination hears of failures from its creation on, not of older history.
        return event.at is not None and event.at >= destination.created_at
    return True


def payload(event: Event, public_url: str = "") -> dict[str, Any]:
    """The JSON document of an alert (without the per-send fields)."""
    url = f"{public_url}{event.path}" if public_url and event.path else None
    text = f"[kmeweb] {event.text}"
    if url:
        text += f" {url}"
    return {
        "text": text,
        "event": event.kind,
        "event_key": event.key,
        "severity": event.severity,
        "title": event.title,
        "subject": event.subject,
        "url": url,
    }


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert delivery rows, skipping any (destination, event key) that exists; returns the
    ids of the rows this call inserted (a concurrent evaluation gets none of them)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        make(AlertDelivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["destination_id", "event_key"])
        .returning(AlertDelivery.id)
    )
    return list(session.scalars(stmt))


def evaluate(session: Session, now: datetime | None = None, public_url: str = "") -> list[int]:
    """Add a pending delivery for every event each enabled destination wants and has not got
    yet; returns the new deliveries' ids (to enqueue after the commit). Flushes."""
    now = now or utcnow()
    destinations = list(
        session.scalars(select(AlertDestination).where(AlertDestination.enabled.is_(True)))
    )
    if not destinations:
        return []
    events = current_events(
        session,
        now,
        max(d.token_days for d in destinations),
        min(d.upload_hours for d in destinations),
    )
    rows = [
        {
            "destination_id": d.id,
            "event": e.kind,
            "event_key": e.key,
            "payload": payload(e, public_url),
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for d in destinations
        for e in events
        if _wanted(d, e)
    ]
    new_ids: list[int] = []
    for start in range(0, len(rows), 500):
        new_ids += _insert_ignoring_duplicates(session, rows[start : start + 500])
    return new_ids


def stranded_deliveries(session: Session, now: datetime, grace: timedelta) -> list[int]:
    """Deliveries that should be moving but whose job may be gone (Redis flushed, worker
    killed): pending past their due time, or held by a worker past its lease."""
    return list(
        session.scalars(
            select(AlertDelivery.id)
            .where(
                AlertDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.SENDING)),
                AlertDelivery.next_attempt_at < now - grace,
            )
            .order_by(AlertDelivery.id)
            .limit(200)
        )
    )


def send_test(session: Session, destination_id: int, actor: Any, public_url: str = "") -> int:
    """Queue a test alert to one destination (sent even when it is paused); returns the
    delivery id to enqueue after the commit. Records audit "alert.test". Flushes.
    Raises NotFound."""
    destination = get_destination_or_404(session, destination_id)
    now = utcnow()
    who = getattr(actor, "email", str(actor))
    event = Event(
        AlertEvent.TEST,
        f"test:{now.timestamp():.6f}",
        "Test alert",
        f"Test alert from kmeweb to “{destination.name}”, sent by {who}: this destination "
        "receives kmeweb's alerts.",
        "info",
        {"type": "alert_destination", "id": destination.id, "name": destination.name},
        "/admin/alerts/",
    )
    delivery = AlertDelivery(
        destination_id=destination.id,
        event=event.kind,
        event_key=event.key,
        payload=payload(event, public_url),
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    audit.record(
        session,
        actor,
        "alert.test",
        "alert_destination",
        destination.id,
        {"name": destination.name, "delivery_id": delivery.id},
    )
    return delivery.id


# --- sending ------------------------------------------------------------------------------


def body_bytes(document: Mapping[str, Any]) -> bytes:
    """The exact bytes that are sent and signed."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    """The X-Kmeweb-Signature value: the lowercase hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class DeliveryFailed(Exception):
    """One attempt failed; RQ retries the job while attempts are left."""


@dataclass
class Attempt:
    outcome: str  # delivered | retry | failed | skipped
    error: str | None = None


def backoff_intervals(config: Mapping[str, Any]) -> list[int]:
    """Seconds between the attempts of one delivery: base, 2 x base, 4 x base, ..."""
    base = int(config["ALERT_RETRY_BASE_S"])
    return [base * 2**i for i in range(max(0, int(config["ALERT_MAX_ATTEMPTS"]) - 1))]


def _claim(session: Session, delivery_id: int, now: datetime, lease: timedelta) -> bool:
    """Take the delivery for one attempt (one worker wins); commits."""
    claimed = session.execute(
        update(AlertDelivery)
        .where(
            AlertDelivery.id == delivery_id,
            or_(
                AlertDelivery.status == DeliveryStatus.PENDING,
                # A worker that died mid-send lets go when its lease ends.
                (AlertDelivery.status == DeliveryStatus.SENDING)
                & (AlertDelivery.next_attempt_at < now),
            ),
        )
        .values(
            status=DeliveryStatus.SENDING,
            attempts=AlertDelivery.attempts + 1,
            next_attempt_at=now + lease,
        )
    ).rowcount
    session.commit()
    return bool(claimed)


def _post(destination: AlertDestination, delivery: AlertDelivery, timeout: float) -> str | None:
    """POST the alert; returns None on a 2xx answer, else why it failed."""
    document = {
        **delivery.payload,
        "delivery_id": delivery.id,
        "attempt": delivery.attempts,
        "sent_at": utcnow().isoformat(),
        "test": delivery.event == AlertEvent.TEST,
    }
    body = body_bytes(document)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "kmeweb-alerts/1",
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
    }
    try:
        secret = crypto.decrypt(destination.secret_enc) if destination.secret_enc else None
    except ValueError:
        return "the shared secret cannot be decrypted (KMEWEB_ENCRYPTION_KEY changed?)"
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        response = requests.post(
            destination.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        return f"could not reach {urlsplit(destination.url).hostname}: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return None
    answer = " ".join(response.text.split())[:200]
    return f"HTTP {response.status_code}" + (f": {answer}" if answer else "")


def deliver(session: Session, delivery_id: int, config: Mapping[str, Any]) -> Attempt:
    """Make one attempt at sending a delivery, and record its outcome (commits).

    Delivered: the destination is healthy again, audit "alert.delivered". Failed with attempts
    left: back to pending with the error ("retry"). Failed on the last attempt: the delivery is
    failed, its destination marked failing, audit "alert.failed". A delivery another worker
    holds, or one already finished, is "skipped" (nothing is sent).
    """
    now = utcnow()
    timeout = float(config["ALERT_TIMEOUT_S"])
    lease = timedelta(seconds=3 * timeout + 30)
    if not _claim(session, delivery_id, now, lease):
        return Attempt("skipped")
    delivery = session.get(AlertDelivery, delivery_id)
    destination = session.get(AlertDestination, delivery.destination_id)
    error = _post(destination, delivery, timeout)
    now = utcnow()
    details = {
        "destination": destination.name,
        "event": delivery.event,
        "event_key": delivery.event_key,
        "attempts": delivery.attempts,
    }
    if error is None:
        delivery.status, delivery.delivered_at, delivery.last_error = (
            DeliveryStatus.DELIVERED,
            now,
            None,
        )
        destination.failing, destination.last_delivered_at = False, now
        audit.record(session, "alerts", "alert.delivered", "alert_delivery", delivery.id, details)
        session.commit()
        return Attempt("delivered")
    delivery.last_error = error[:ERROR_MAX]
    destination.last_error, destination.last_error_at = error[:ERROR_MAX], now
    if delivery.attempts >= int(config["ALERT_MAX_ATTEMPTS"]):
        delivery.status = DeliveryStatus.FAILED
        destination.failing = True
        audit.record(
            session,
            "alerts",
            "alert.failed",
            "alert_delivery",
            delivery.id,
            {**details, "error": error},
        )
        session.commit()
        return Attempt("failed", error)
    intervals = backoff_intervals(config)
    wait = intervals[min(delivery.attempts - 1, len(intervals) - 1)] if intervals else 0
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now + timedelta(seconds=wait)
    session.commit()
    return Attempt("retry", error)


def event_labels(events: Sequence[str]) -> list[str]:
    return [EVENT_LABELS.get(e, e) for e in events]
