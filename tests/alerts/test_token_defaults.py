"""Defaults that agree (issue 19, item 9): a new profile's token outlives the alert threshold,
Admin › Alerts says how they relate, and only tokens that devices still need warn."""

from __future__ import annotations

from datetime import timedelta

from kmeweb.alerts import services as alerts
from kmeweb.alerts.models import AlertEvent
from kmeweb.extensions import utcnow
from kmeweb.overview.services import needs_attention
from kmeweb.profiles import services as profiles
from tests.factories import make_device, make_profile

NEW_PROFILE = {"kind": "kme", "name": "Field Sales", "config": {"kme": {"supported_mdm": "m"}}}


def _token_events(session, now, token_days: int = 3) -> set[str]:
    events = alerts.current_events(session, now, token_days=token_days, upload_hours=24)
    kinds = {AlertEvent.TOKEN_EXPIRING, AlertEvent.TOKEN_EXPIRED}
    return {e.subject["name"] for e in events if e.kind in kinds}


def test_a_new_profile_with_default_settings_warns_nobody(session):
    admin = "admin@example.com"
    destination = alerts.create_destination(
        session,
        {"name": "Ops", "url": "https://hooks.example.com/x", "events": ["token_expiring"]},
        admin,
    )
    profile = profiles.create_profile(session, NEW_PROFILE, admin)
    session.commit()
    make_device(session, profile)  # a device waits to enroll with the new token
    assert destination.token_days < profiles.TOKEN_DAYS_DEFAULT
    now = utcnow()
    days = destination.token_days
    assert _token_events(session, now, days) == set()
    assert needs_attention(session, now).tokens == []
    later = profile.token_expires_at - timedelta(days=days - 1)
    assert _token_events(session, later, days) == {"Field Sales"}  # it warns in time, later


def test_only_tokens_that_devices_still_need_warn(session):
    soon = utcnow() + timedelta(days=2)
    make_profile(session, name="Empty", token_expires_at=soon)
    done = make_profile(session, name="All registered", token_expires_at=soon)
    make_device(session, done, registered_at=utcnow())
    tokenless = make_profile(session, name="Tokenless", token_expires_at=soon, without_token=True)
    make_device(session, tokenless)
    make_profile(session, name="Waiting", token_expires_at=soon, waiting_devices=1)
    gone = make_profile(session, name="Expired", token_expires_at=utcnow() - timedelta(hours=1))
    make_device(session, gone)
    now = utcnow()
    assert _token_events(session, now) == {"Waiting", "Expired"}
    attention = needs_attention(session, now)
    assert {t["name"] for t in attention.tokens} == {"Waiting", "Expired"}
    assert attention.tokens_total == 2


def test_admin_alerts_says_how_the_threshold_meets_the_token_life(client, login):
    login("admin")
    page = client.get("/admin/alerts/").get_data(as_text=True)
    assert "A new profile's enrollment token lasts 7 days" in page
    assert "quiet for its first 4 days" in page
    assert "devices that have not registered yet" in page
    form = client.get("/admin/alerts/new").get_data(as_text=True)
    assert "token lasts 7 days, so with 3 the alert comes 4 days after" in form
