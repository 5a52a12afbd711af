"""Delivery of alerts to a real webhook on 127.0.0.1: the body and signature a receiver checks,
retries with backoff, failures a receiver cannot see (unreachable, redirect, lost key), and
each delivery sent once however often its job runs or is lost."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from datetime import timedelta

from rq.job import Job
from sqlalchemy import select

from kmeweb.alerts import jobs, services
from kmeweb.alerts.models import AlertDelivery, AlertDestination
from kmeweb.audit.models import AuditEvent
from kmeweb.extensions import utcnow
from kmeweb.operations import queue
from tests.alerts.conftest import ALERT_TEST_CONFIG
from tests.factories import count_rows, make_profile

SECRET = "shared-with-the-receiver"


def _destination(session, url: str, **over) -> AlertDestination:
    data = {"name": "Ops", "url": url, "events": ["token_expiring", "token_expired"], **over}
    destination = services.create_destination(session, data, "test")
    session.commit()
    return destination


def _expired_alert(session, destination: AlertDestination) -> AlertDelivery:
    """One pending delivery (a token that expired an hour ago) for `destination`."""
    make_profile(
        session,
        name="Field Sales",
        token_expires_at=utcnow() - timedelta(hours=1),
        waiting_devices=1,
    )
    [delivery_id] = services.evaluate(session, utcnow())
    session.commit()
    return session.get(AlertDelivery, delivery_id)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_real_event_reaches_the_webhook_signed_with_the_documented_body(
    app, session, receiver, work
):
    app.config["PUBLIC_URL"] = "https://console.example.com"
    destination = _destination(session, receiver.url, secret=SECRET, token_days=7)
    profile = make_profile(
        session,
        name="Field Sales",
        token_expires_at=utcnow() + timedelta(days=3),
        waiting_devices=1,
    )
    queue.enqueue("kmeweb.alerts.jobs.evaluate_alerts_job", queue="maintenance")
    work()

    [received] = receiver.requests
    expected = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["X-Kmeweb-Signature"] == expected  # over the exact bytes sent
    assert received.headers["Content-Type"] == "application/json; charset=utf-8"
    assert received.headers["X-Kmeweb-Event"] == "token_expiring"
    document = json.loads(received.body.decode("utf-8"))
    delivery = session.scalar(select(AlertDelivery))
    assert received.headers["X-Kmeweb-Delivery"] == str(delivery.id) == str(document["delivery_id"])
    assert set(document) == {"attempt", "delivery_id", "event", "event_key", "severity",
                             "sent_at", "subject", "test", "text", "title", "url"}  # fmt: skip
    assert document["event"] == "token_expiring" and document["test"] is False
    assert document["attempt"] == 1 and document["severity"] == "warning"
    assert document["event_key"] == delivery.event_key
    assert document["subject"]["id"] == profile.id
    assert document["subject"]["name"] == "Field Sales"
    assert document["url"] == f"https://console.example.com/profiles/{profile.id}"
    assert document["text"].startswith("[kmeweb] The enrollment token of profile “Field Sales”")
    assert "“" in received.body.decode("utf-8")  # UTF-8 as is, not \u escapes
    assert delivery.status == "delivered" and delivery.delivered_at is not None
    session.refresh(destination)
    assert destination.last_delivered_at is not None and destination.failing is False


def test_without_a_shared_secret_the_alert_is_unsigned(session, receiver, work):
    destination = _destination(session, receiver.url)
    jobs.enqueue_delivery(_expired_alert(session, destination).id)
    work()
    [received] = receiver.requests
    assert "X-Kmeweb-Signature" not in received.headers
    assert json.loads(received.body)["event"] == "token_expired"


def test_an_unreachable_webhook_is_retried_then_its_destination_marked_failing(
    client, login, session, work
):
    destination = _destination(session, f"http://127.0.0.1:{_closed_port()}/hook")
    delivery = _expired_alert(session, destination)
    jobs.enqueue_delivery(delivery.id)
    work()  # RQ retries at once (ALERT_RETRY_BASE_S=0) until the attempts run out
    session.refresh(delivery)
    session.refresh(destination)
    assert delivery.status == "failed"
    assert delivery.attempts == ALERT_TEST_CONFIG["ALERT_MAX_ATTEMPTS"]
    assert delivery.last_error == "could not reach 127.0.0.1: ConnectionError"
    assert destination.failing is True
    assert destination.last_error == "could not reach 127.0.0.1: ConnectionError"
    assert count_rows(session, AuditEvent, AuditEvent.action == "alert.failed") == 1
    assert count_rows(session, AuditEvent, AuditEvent.action == "alert.delivered") == 0
    login("viewer")
    page = client.get("/admin/alerts/").get_data(as_text=True)
    assert 'data-testid="destination-state">Failing<' in page
    assert "could not reach 127.0.0.1: ConnectionError" in page


def test_a_redirect_is_not_followed_and_counts_as_a_failure(session, receiver, work):
    receiver.always = 302
    destination = _destination(session, receiver.url)
    delivery = _expired_alert(session, destination)
    jobs.enqueue_delivery(delivery.id)
    work()
    assert [r.path for r in receiver.requests] == ["/hook"] * ALERT_TEST_CONFIG[
        "ALERT_MAX_ATTEMPTS"
    ]
    session.refresh(delivery)
    assert delivery.status == "failed" and delivery.last_error.startswith("HTTP 302")


def test_a_failed_attempt_waits_for_the_backoff_before_the_next(app, session, receiver):
    app.config.update(ALERT_RETRY_BASE_S=30, ALERT_MAX_ATTEMPTS=5)
    receiver.always = 500
    delivery = _expired_alert(session, _destination(session, receiver.url))
    jobs.enqueue_delivery(delivery.id)
    job = Job.fetch(f"alert-{delivery.id}", connection=queue.redis_connection())
    assert job.origin == "default"
    assert (job.retries_left, job.retry_intervals) == (4, [30, 60, 120, 240])

    before = utcnow()
    attempt = services.deliver(session, delivery.id, app.config)
    assert (attempt.outcome, attempt.error) == ("retry", "HTTP 500: receiver is down")
    session.refresh(delivery)
    assert delivery.status == "pending" and delivery.attempts == 1
    assert before + timedelta(seconds=30) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= utcnow() + timedelta(seconds=30)
    # Still healthy: one failed attempt with others left is not "failing".
    assert session.get(AlertDestination, delivery.destination_id).failing is False


def test_a_delivery_is_sent_once_however_often_its_job_runs(app, session, receiver, work):
    delivery = _expired_alert(session, _destination(session, receiver.url))
    jobs.enqueue_delivery(delivery.id)
    jobs.enqueue_delivery(delivery.id)  # while the first job waits: no second job
    assert len(queue.get_queue("default")) == 1
    work()
    assert len(receiver.requests) == 1
    jobs.enqueue_delivery(delivery.id)  # the job finished: a new one runs, and sends nothing
    work()
    assert len(receiver.requests) == 1
    job = Job.fetch(f"alert-{delivery.id}", connection=queue.redis_connection())
    assert job.return_value() == "skipped"
    assert count_rows(session, AuditEvent, AuditEvent.action == "alert.delivered") == 1


def test_a_delivery_held_by_another_worker_waits_for_its_lease(app, session, receiver):
    delivery = _expired_alert(session, _destination(session, receiver.url))
    delivery.status, delivery.attempts = "sending", 1
    delivery.next_attempt_at = utcnow() + timedelta(minutes=1)
    session.commit()
    assert services.deliver(session, delivery.id, app.config).outcome == "skipped"
    assert receiver.requests == []
    # That worker died mid-send: once its lease has run out another worker sends it.
    delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert services.deliver(session, delivery.id, app.config).outcome == "delivered"
    assert len(receiver.requests) == 1
    assert json.loads(receiver.requests[0].body)["attempt"] == 2


def test_a_delivery_whose_job_was_lost_is_sent_by_the_next_evaluation(
    app, session, receiver, work, redis_url
):
    delivery = _expired_alert(session, _destination(session, receiver.url))
    jobs.enqueue_delivery(delivery.id)
    queue.redis_connection().flushdb()  # Redis lost every job
    # Due long enough ago that the evaluation treats it as stranded.
    delivery.next_attempt_at = utcnow() - timedelta(minutes=5)
    session.commit()
    assert jobs.evaluate_alerts_job() == {"new": 0, "requeued": 1}
    assert jobs.evaluate_alerts_job() == {"new": 0, "requeued": 0}  # its job waits now
    work()
    assert len(receiver.requests) == 1
    session.refresh(delivery)
    assert delivery.status == "delivered"


def test_a_secret_that_cannot_be_decrypted_sends_nothing_unsigned(app, session, receiver):
    destination = _destination(session, receiver.url, secret=SECRET)
    destination.secret_enc = "gAAAAA-not-a-fernet-token-under-this-key"
    session.commit()
    delivery = _expired_alert(session, destination)
    attempt = services.deliver(session, delivery.id, app.config)
    assert attempt.outcome == "retry"
    assert attempt.error == "the shared secret cannot be decrypted (KMEWEB_ENCRYPTION_KEY changed?)"
    assert receiver.requests == []
