"""Each alert condition fires when its state arises and not otherwise, within each
destination's thresholds and subscriptions, once per event; a cleared condition sends nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from kmeweb.alerts import services
from kmeweb.alerts.models import AlertDelivery, AlertDestination
from kmeweb.extensions import utcnow
from kmeweb.integration.models import Integration
from kmeweb.operations import services as operations
from tests.factories import make_default_profile, make_profile, make_reseller, make_upload

ALL_EVENTS = ["token_expiring", "token_expired", "operation_failed", "integration_error",
              "upload_waiting"]  # fmt: skip


def _destination(session, name: str = "Ops", **over) -> AlertDestination:
    data = {"name": name, "url": "https://hooks.example.com/x", "events": ALL_EVENTS, **over}
    destination = services.create_destination(session, data, "test")
    session.commit()
    return destination


def _evaluate(session, now, public_url: str = "") -> list[AlertDelivery]:
    """Run one evaluation and return the deliveries it added."""
    new_ids = services.evaluate(session, now, public_url)
    session.commit()
    if not new_ids:
        return []
    return list(
        session.scalars(
            select(AlertDelivery).where(AlertDelivery.id.in_(new_ids)).order_by(AlertDelivery.id)
        )
    )


def _failed_operation(session, label: str, finished_at, error: str = "KME refused it"):
    operation = operations.create_operation(session, "device.move", label, 3, "test")
    operation.status, operation.error, operation.finished_at = "failed", error, finished_at
    session.commit()
    return operation


def test_token_expiring_fires_within_the_destinations_days_only(session):
    now = utcnow()
    inside = make_profile(
        session, name="Inside", token_expires_at=now + timedelta(days=3), waiting_devices=1
    )
    edge = make_profile(
        session, name="Edge", token_expires_at=now + timedelta(days=6, hours=23), waiting_devices=1
    )
    make_profile(
        session,
        name="Outside",
        token_expires_at=now + timedelta(days=7, hours=1),
        waiting_devices=1,
    )
    make_profile(session, name="Never", token_expires_at=None, waiting_devices=1)
    make_default_profile(session)  # the Default Profile has no token of its own
    _destination(session, token_days=7)

    added = _evaluate(session, now)

    assert sorted(d.payload["subject"]["name"] for d in added) == ["Edge", "Inside"]
    assert {d.event for d in added} == {"token_expiring"}
    by_name = {d.payload["subject"]["name"]: d for d in added}
    assert by_name["Inside"].event_key.startswith(f"token_expiring:{inside.id}:")
    assert by_name["Inside"].payload["severity"] == "warning"
    assert "expires in 3 days" in by_name["Inside"].payload["text"]
    assert "expires in 7 days" in by_name["Edge"].payload["text"]
    assert by_name["Edge"].payload["subject"]["id"] == edge.id


def test_token_expired_fires_whatever_the_days_and_only_for_subscribers(session):
    now = utcnow()
    gone = make_profile(
        session, name="Gone", token_expires_at=now - timedelta(minutes=5), waiting_devices=1
    )
    make_profile(session, name="Fine", token_expires_at=now + timedelta(days=90), waiting_devices=1)
    short = _destination(session, "Short", token_days=1)
    _destination(session, "Uploads only", events=["upload_waiting"])

    added = _evaluate(session, now)

    assert [(d.destination_id, d.event) for d in added] == [(short.id, "token_expired")]
    expired = added[0]
    assert expired.event_key.startswith(f"token_expired:{gone.id}:")
    assert expired.payload["severity"] == "critical"
    assert expired.payload["title"] == "Enrollment token expired: Gone"
    assert "devices cannot enroll with it" in expired.payload["text"]


def test_operation_failed_fires_for_new_failures_and_again_when_a_retry_fails(session):
    now = utcnow()
    destination = _destination(session)
    # The destination has existed for three days: failures since then are news, within a day.
    destination.created_at = now - timedelta(days=3)
    session.commit()
    broken = _failed_operation(session, "Move 3 devices", now - timedelta(hours=1))
    _failed_operation(session, "Old news", now - timedelta(days=2))
    done = operations.create_operation(session, "device.move", "Went fine", 1, "test")
    done.status, done.finished_at = "done", now - timedelta(minutes=5)
    session.commit()

    added = _evaluate(session, now)

    assert [d.payload["title"] for d in added] == ["Operation failed: Move 3 devices"]
    assert added[0].payload["subject"] == {
        "type": "operation", "id": broken.id, "label": "Move 3 devices", "error": "KME refused it"
    }  # fmt: skip
    assert "Retry it on the Operations page" in added[0].payload["text"]
    assert _evaluate(session, now + timedelta(minutes=1)) == []
    # Retried, and it failed again: a new failure, a new alert.
    broken.finished_at = now + timedelta(minutes=2)
    session.commit()
    again = _evaluate(session, now + timedelta(minutes=3))
    assert [d.payload["subject"]["id"] for d in again] == [broken.id]


def test_a_new_destination_does_not_hear_of_failures_from_before_it_existed(session):
    now = utcnow()
    _failed_operation(session, "Before", now - timedelta(minutes=30))
    _destination(session)
    assert _evaluate(session, utcnow()) == []
    _failed_operation(session, "After", utcnow() + timedelta(seconds=1))
    added = _evaluate(session, utcnow() + timedelta(seconds=2))
    assert [d.payload["subject"]["label"] for d in added] == ["After"]


def test_integration_error_alerts_once_per_error_since_the_last_good_pull(session):
    now = utcnow()
    integration = Integration(name="Knox", last_pull_at=now - timedelta(hours=1))
    session.add(integration)
    session.commit()
    _destination(session)
    assert _evaluate(session, now) == []  # no error, no alert

    integration.last_error, integration.last_error_at = "401 Unauthorized from KME", now
    session.commit()
    first = _evaluate(session, now)
    assert [d.event for d in first] == ["integration_error"]
    assert first[0].payload["subject"]["error"] == "401 Unauthorized from KME"
    assert "reports an error: 401 Unauthorized from KME" in first[0].payload["text"]
    # The same error on the next failed pulls: nothing new.
    integration.last_error_at = now + timedelta(minutes=15)
    session.commit()
    assert _evaluate(session, now + timedelta(minutes=15)) == []
    # Another error: a new alert.
    integration.last_error = "KME answered 503"
    session.commit()
    assert [d.event for d in _evaluate(session, now + timedelta(minutes=16))] == [
        "integration_error"
    ]
    # A good pull clears it (no alert for that); the first error coming back is news again.
    integration.last_error, integration.last_pull_at = None, now + timedelta(minutes=30)
    session.commit()
    assert _evaluate(session, now + timedelta(minutes=30)) == []
    integration.last_error = "401 Unauthorized from KME"
    session.commit()
    assert len(_evaluate(session, now + timedelta(minutes=45))) == 1


def test_upload_waiting_fires_after_the_destinations_hours_for_unapproved_uploads(session):
    now = utcnow()
    reseller = make_reseller(session, name="Acme Phones")
    late = make_upload(
        session, pending=3, reseller_id=reseller.id, uploaded_at=now - timedelta(hours=25)
    )
    partial = make_upload(session, status="partial", uploaded_at=now - timedelta(hours=30))
    make_upload(session, uploaded_at=now - timedelta(hours=23))  # not yet
    make_upload(session, status="approved", uploaded_at=now - timedelta(hours=48))
    make_upload(session, uploaded_at=None)  # time unknown: never "waiting too long"
    _destination(session, upload_hours=24)

    added = _evaluate(session, now)

    assert sorted(d.payload["subject"]["id"] for d in added) == sorted([late.id, partial.id])
    by_id = {d.payload["subject"]["id"]: d for d in added}
    assert by_id[late.id].event_key == f"upload_waiting:{late.id}"
    assert by_id[late.id].payload["text"] == (
        f"[kmeweb] Upload {late.kme_upload_id} from Acme Phones (3 devices) has been waiting for "
        "approval for 25 hours. Approve it on Admin › Knox Integration › Uploads."
    )


def test_a_paused_destination_gets_nothing_until_it_is_resumed(session):
    now = utcnow()
    make_profile(session, name="Gone", token_expires_at=now - timedelta(hours=1), waiting_devices=1)
    paused = _destination(session, enabled=False)
    assert _evaluate(session, now) == []
    paused.enabled = True
    session.commit()
    assert [d.event for d in _evaluate(session, now)] == ["token_expired"]


def test_a_cleared_condition_sends_nothing_and_a_new_expiry_alerts_again(session):
    now = utcnow()
    profile = make_profile(
        session, name="Sales", token_expires_at=now + timedelta(days=2), waiting_devices=1
    )
    upload = make_upload(session, uploaded_at=now - timedelta(days=2))
    destination = _destination(session, token_days=7)
    assert sorted(d.event for d in _evaluate(session, now)) == ["token_expiring", "upload_waiting"]

    # The admin extends the token past the window and approves the upload: no "resolved"
    # alert, and nothing more about either on later evaluations.
    profile.token_expires_at = now + timedelta(days=60)
    upload.status = "approved"
    session.commit()
    assert _evaluate(session, now + timedelta(hours=1)) == []
    assert _evaluate(session, now + timedelta(hours=2)) == []
    # Weeks later the extended token nears its end: a new expiry, so a new alert.
    later = now + timedelta(days=55)
    again = _evaluate(session, later)
    assert [d.event for d in again] == ["token_expiring"]
    assert (
        again[0].event_key
        == f"token_expiring:{profile.id}:{int(profile.token_expires_at.timestamp())}"
    )
    rows = session.scalars(
        select(AlertDelivery.event).where(AlertDelivery.destination_id == destination.id)
    )
    assert sorted(rows) == ["token_expiring", "token_expiring", "upload_waiting"]


def test_each_destination_gets_its_own_copy_once(session):
    now = utcnow()
    make_profile(session, name="Gone", token_expires_at=now - timedelta(hours=1), waiting_devices=1)
    first, second = _destination(session, "First"), _destination(session, "Second")
    added = _evaluate(session, now)
    assert sorted(d.destination_id for d in added) == [first.id, second.id]
    assert len({d.event_key for d in added}) == 1
    for _ in range(3):
        assert _evaluate(session, now + timedelta(minutes=1)) == []
    assert len(list(session.scalars(select(AlertDelivery)))) == 2


def test_the_alert_links_to_the_console_page_when_the_public_url_is_known(session):
    now = utcnow()
    profile = make_profile(
        session, name="Gone", token_expires_at=now - timedelta(hours=1), waiting_devices=1
    )
    _destination(session, "Linked")
    [linked] = _evaluate(session, now, "https://console.example.com")
    assert linked.payload["url"] == f"https://console.example.com/profiles/{profile.id}"
    assert linked.payload["text"].endswith(f" https://console.example.com/profiles/{profile.id}")
    _destination(session, "Plain")
    [plain] = _evaluate(session, now, "")
    assert plain.payload["url"] is None
    assert "https://" not in plain.payload["text"]
