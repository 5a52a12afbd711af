"""Admin › Alerts: destinations validated and their secret write-only; signed alerts reach a
real HTTP receiver through real RQ workers, once per event per destination however many
scheduler ticks and workers run; a destination that keeps failing is retried, then marked."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import redis
from sqlalchemy import select

from kmeweb import crypto
from kmeweb.alerts import services
from kmeweb.alerts.models import AlertDelivery, AlertDestination
from kmeweb.audit.models import AuditEvent
from kmeweb.extensions import utcnow
from kmeweb.operations import queue
from kmeweb.operations import services as operations
from kmeweb.sync.schedule import PERIODIC, Scheduler
from tests.alerts.conftest import ALERT_TEST_CONFIG
from tests.factories import count_rows, make_profile, make_upload
from tests.sync_fixtures import wait_until

SECRET = "s3cret-shared-with-the-receiver"
ALL_EVENTS = ["token_expiring", "token_expired", "operation_failed", "integration_error",
              "upload_waiting"]  # fmt: skip


def _destination(session, url: str, **over) -> AlertDestination:
    data = {"name": "Ops", "url": url, "secret": SECRET, "events": ALL_EVENTS, **over}
    destination = services.create_destination(session, data, "test")
    session.commit()
    return destination


def _verified(received) -> dict:
    """The JSON body, after checking its signature as a receiver must."""
    expected = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["X-Kmeweb-Signature"], expected)
    assert received.headers["Content-Type"].startswith("application/json")
    return json.loads(received.body)


def test_destination_form_validates_and_keeps_the_secret_write_only(
    client, login, actions, session
):
    login("admin")
    typed = {"name": "Ops channel", "url": "ftp://hooks.example.com/x",
             "secret": "Tr0ub4dor-only-here",
             "token_days": "14", "upload_hours": "24", "enabled": "y"}  # fmt: skip
    response = actions.post("/admin/alerts/new", typed)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Use an http:// or https:// URL" in body and 'id="url-error"' in body
    assert 'value="Ops channel"' in body and 'value="ftp://hooks.example.com/x"' in body
    response = actions.post("/admin/alerts/new", {**typed, "url": "https://hooks.example.com/x"})
    assert response.status_code == 422
    assert "Choose at least one event" in response.get_data(as_text=True)
    response = actions.post(
        "/admin/alerts/new",
        {
            **typed,
            "url": "https://hooks.example.com/x",
            "events": ["token_expired"],
            "token_days": "0",
        },  # fmt: skip
    )
    assert "Days before expiry: enter a whole number from 1 to 365." in response.get_data(
        as_text=True
    )
    assert count_rows(session, AlertDestination) == 0  # nothing partial was written

    good = {**typed, "url": "https://hooks.example.com/x", "events": ["token_expired"]}
    assert actions.post("/admin/alerts/new", good).status_code == 303
    destination = session.scalar(select(AlertDestination))
    assert destination.secret_enc and "Tr0ub4dor" not in destination.secret_enc
    assert crypto.decrypt(destination.secret_enc) == "Tr0ub4dor-only-here"
    edit = client.get(f"/admin/alerts/{destination.id}/edit").get_data(as_text=True)
    assert "Tr0ub4dor-only-here" not in edit
    assert "A secret is stored" in edit
    # Saving with the field empty keeps the secret.
    saved = actions.post(f"/admin/alerts/{destination.id}/edit", {**good, "secret": ""})
    assert saved.status_code == 303
    session.expire_all()
    assert crypto.decrypt(destination.secret_enc) == "Tr0ub4dor-only-here"
    listing = client.get("/admin/alerts/").get_data(as_text=True)
    assert "Signed (shared secret set)" in listing and "X-Kmeweb-Signature" in listing
    actions_seen = set(session.scalars(select(AuditEvent.action)))
    assert {"alert.destination_create", "alert.destination_update"} <= actions_seen


def test_each_destination_gets_its_events_once(session):
    now = utcnow()
    soon = make_profile(
        session, name="Soon", token_expires_at=now + timedelta(days=10), waiting_devices=1
    )
    make_profile(session, name="Gone", token_expires_at=now - timedelta(hours=1), waiting_devices=1)
    make_upload(session, pending=2, uploaded_at=now - timedelta(hours=5))
    week = _destination(session, "https://a.example.com/", name="Week", token_days=7)
    month = _destination(session, "https://b.example.com/", name="Month", token_days=30,
                         upload_hours=4)  # fmt: skip
    first = services.evaluate(session, now)
    session.commit()
    keys = {(d.destination_id, d.event) for d in session.scalars(select(AlertDelivery))}
    assert keys == {
        (week.id, "token_expired"),
        (month.id, "token_expired"),
        (month.id, "token_expiring"),  # 10 days left: within 30, not within 7
        (month.id, "upload_waiting"),  # 5 hours: past 4, not past 24
    }
    assert len(first) == 4
    assert services.evaluate(session, now + timedelta(minutes=1)) == []  # nothing new
    # Extending the token makes a new expiry: a new event, once more.
    soon.token_expires_at = now + timedelta(days=20)
    session.commit()
    assert len(services.evaluate(session, now)) == 1


def test_send_test_alert_reaches_the_receiver_signed(
    client, login, actions, session, receiver, work
):
    login("admin")
    destination = _destination(session, receiver.url)
    response = actions.post(f"/admin/alerts/{destination.id}/test")
    assert response.status_code == 303
    work()
    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    document = _verified(received)
    assert received.path == "/hook"
    assert received.headers["X-Kmeweb-Event"] == "test"
    assert document["test"] is True and document["event"] == "test"
    assert document["text"].startswith("[kmeweb] Test alert from kmeweb to “Ops”")
    delivery = session.scalar(select(AlertDelivery))
    assert delivery.status == "delivered" and delivery.attempts == 1
    assert received.headers["X-Kmeweb-Delivery"] == str(delivery.id)
    assert {"alert.test", "alert.delivered"} <= set(session.scalars(select(AuditEvent.action)))
    page = client.get("/admin/alerts/").get_data(as_text=True)
    assert 'data-testid="delivery-status">delivered<' in page


def test_one_alert_per_event_across_two_ticks_and_two_workers(
    app, session, redis_url, receiver, worker_processes
):
    now = utcnow()
    destination = _destination(session, receiver.url)
    make_profile(
        session, name="Expired", token_expires_at=now - timedelta(hours=2), waiting_devices=1
    )
    failed = operations.create_operation(session, "device.move", "Move 3 devices", 3)
    failed.status, failed.error = "failed", "KME refused it"
    failed.finished_at = now + timedelta(seconds=1)  # after the destination was added
    make_upload(session, pending=4, uploaded_at=now - timedelta(days=2))
    session.commit()

    for key, value in ALERT_TEST_CONFIG.items():
        worker_processes.env[f"KMEWEB_{key}"] = str(value)
    worker_processes.start("alerts-1", scheduler=False)
    worker_processes.start("alerts-2", scheduler=False)
    conn = redis.Redis.from_url(redis_url)
    only_alerts = tuple(p for p in PERIODIC if p.name == "alerts")
    scheduler = Scheduler(app, conn, periodic=only_alerts)
    # First tick, and a second evaluation racing it on the other worker.
    assert scheduler.tick(now=1000.0) == ["alerts"]
    queue.enqueue(
        "kmeweb.alerts.jobs.evaluate_alerts_job", job_id="alerts-race", queue="maintenance"
    )
    wait_until(lambda: len(receiver.requests) >= 3, timeout=60, what="three alerts")
    wait_until(
        lambda: (
            queue.job_status("periodic-alerts") == "finished"
            and queue.job_status("alerts-race") == "finished"
        ),
        what="both evaluations",
    )
    # The second tick, once the interval has passed: the same events, nothing new.
    assert scheduler.tick(now=1000.0 + app.config["ALERT_INTERVAL_S"]) == ["alerts"]
    wait_until(lambda: queue.job_status("periodic-alerts") == "finished", what="second tick")
    deliveries = list(session.scalars(select(AlertDelivery)))
    assert sorted(d.event for d in deliveries) == [
        "operation_failed", "token_expired", "upload_waiting"
    ]  # fmt: skip
    assert all(d.status == "delivered" and d.attempts == 1 for d in deliveries)
    # Every delivery job has finished: nothing else can still be sent.
    for d in deliveries:
        assert queue.job_status(f"alert-{d.id}") == "finished"
    events = sorted(_verified(r)["event"] for r in receiver.requests)
    assert events == ["operation_failed", "token_expired", "upload_waiting"]
    assert len({r.headers["X-Kmeweb-Delivery"] for r in receiver.requests}) == 3
    assert count_rows(session, AuditEvent, AuditEvent.action == "alert.delivered") == 3
    assert destination.id == deliveries[0].destination_id


def test_a_failing_destination_is_retried_then_marked(
    client, login, actions, session, receiver, work
):
    login("admin")
    destination = _destination(session, receiver.url)
    receiver.always = 500
    actions.post(f"/admin/alerts/{destination.id}/test")
    work()  # RQ retries the job at once (ALERT_RETRY_BASE_S=0) until the attempts run out
    assert len(receiver.requests) == ALERT_TEST_CONFIG["ALERT_MAX_ATTEMPTS"] == 3
    assert len({r.headers["X-Kmeweb-Delivery"] for r in receiver.requests}) == 1
    assert [json.loads(r.body)["attempt"] for r in receiver.requests] == [1, 2, 3]
    delivery = session.scalar(select(AlertDelivery))
    assert delivery.status == "failed" and delivery.attempts == 3
    assert delivery.last_error == "HTTP 500: receiver is down"
    session.refresh(destination)
    assert destination.failing is True
    failed = session.scalar(select(AuditEvent).where(AuditEvent.action == "alert.failed"))
    assert failed.details["error"] == "HTTP 500: receiver is down"
    overview = client.get("/").get_data(as_text=True)
    assert "Alert destination “Ops” is failing" in overview
    assert 'data-testid="destination-state">Failing<' in client.get("/admin/alerts/").get_data(
        as_text=True
    )

    # It recovers: a failure, then success on the retry; the mark goes away.
    receiver.always, receiver.statuses = 200, [503]
    actions.post(f"/admin/alerts/{destination.id}/test")
    work()
    session.refresh(destination)
    assert destination.failing is False
    assert "is failing" not in client.get("/").get_data(as_text=True)


def test_a_viewer_sees_destinations_without_controls_or_their_url(client, login, actions, session):
    destination = _destination(session, "https://hooks.slack.com/services/T0/B0/SECRETPATH")
    login("viewer")
    page = client.get("/admin/alerts/").get_data(as_text=True)
    assert "Ops" in page and "https://hooks.slack.com/…PATH" in page
    assert "SECRETPATH" not in page
    assert "Send test alert<span" not in page and "Add destination" not in page
    edit = client.get(f"/admin/alerts/{destination.id}/edit").get_data(as_text=True)
    assert "SECRETPATH" not in edit
    assert actions.post(f"/admin/alerts/{destination.id}/test").status_code == 403
    assert actions.post(f"/admin/alerts/{destination.id}/delete").status_code == 403
