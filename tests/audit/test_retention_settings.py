"""Audit log › Retention: how long the history is kept and the legal hold. Admins change it
(checked on the server, the error next to the field, each change audited); viewers read it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from kmeweb.audit import retention
from kmeweb.audit.models import AuditEvent, HistoryRetention
from kmeweb.errors import ValidationError
from kmeweb.extensions import utcnow
from kmeweb.ops.retention import purge_history
from tests.factories import count_rows


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("ninety", "Enter a whole number of days"),
        ("90.5", "Enter a whole number of days"),
        ("29", "Keep the history for 30 to 3,650 days"),
        ("-5", "Keep the history for 30 to 3,650 days"),
        ("3651", "Keep the history for 30 to 3,650 days"),
    ],
)
def test_the_retention_is_30_days_to_10_years_or_empty(session, typed, message):
    with pytest.raises(ValidationError, match=message) as refused:
        retention.save_retention(session, {"days": typed}, "test")
    assert refused.value.field == "days"


def test_defaults_keep_everything_and_each_change_is_audited(session, make_admin):
    admin = make_admin()
    assert retention.get_retention(session) == retention.Retention(days=None, legal_hold=False)
    retention.save_retention(session, {"days": " 90 "}, admin)
    retention.save_retention(session, {"days": "90", "legal_hold": True}, admin)
    retention.save_retention(session, {"days": "90", "legal_hold": True}, admin)  # no change
    retention.save_retention(session, {"days": "", "legal_hold": True}, admin)
    session.commit()
    saved = retention.get_retention(session)
    assert (saved.days, saved.legal_hold, saved.updated_by) == (None, True, admin.email)
    events = session.query(AuditEvent).filter_by(action="history.retention").order_by("id").all()
    assert [e.details["changed"] for e in events] == [
        {"retention_days": [None, 90]},
        {"legal_hold": [False, True]},
        {"retention_days": [90, None]},
    ]
    assert {e.actor for e in events} == {admin.email}
    assert count_rows(session, HistoryRetention) == 1


def test_the_page_says_everything_is_kept_until_an_admin_sets_a_retention(
    client, login, actions, session
):
    login("admin")
    page = client.get("/audit/").get_data(as_text=True)
    assert "Everything is kept" in page
    assert 'name="days"' in page and 'name="legal_hold"' in page
    saved = actions.post("/audit/retention", {"days": "365"})
    assert saved.status_code == 303 and saved.headers["Location"].endswith("/audit/")
    page = client.get("/audit/").get_data(as_text=True)
    assert "The retention settings were saved." in page
    assert "older than <strong>365 days</strong> is deleted" in page
    assert 'value="365"' in page
    # The change is in the log, as an admin reads it.
    assert "history.retention" in page and "Retention days: — → 365" in page


def test_a_refused_retention_shows_its_error_next_to_the_field(client, login, actions, htmx):
    login("admin")
    refused = actions.post("/audit/retention", {"days": "7"})
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert "<html" in body  # a plain post gets the whole page again, the typed value kept
    error = re.search(r'<p class="invalid-feedback[^"]*" id="days-error">([^<]*)</p>', body)
    assert error and "30 to 3,650 days" in error.group(1)
    assert re.search(r'<input[^>]*aria-invalid="true"[^>]*value="7"', body) or re.search(
        r'<input[^>]*value="7"[^>]*aria-invalid="true"', body
    )
    token = actions.token("/audit/")
    fragment = htmx.post("/audit/retention", data={"days": "abc", "csrf_token": token})
    assert fragment.status_code == 422
    body = fragment.get_data(as_text=True)
    assert "<html" not in body
    assert 'id="retention"' in body and "Enter a whole number of days" in body


def test_viewers_read_the_retention_and_cannot_change_it(client, login, actions, session):
    retention.save_retention(session, {"days": "400", "legal_hold": "y"}, "admin@example.com")
    session.commit()
    login("viewer")
    page = client.get("/audit/").get_data(as_text=True)
    assert "Legal hold" in page and "Nothing is deleted while the legal hold is on" in page
    assert "whatever the retention of 400 days says" in page
    assert 'name="days"' not in page
    assert "Only an admin can change the retention" in page
    refused = actions.post("/audit/retention", {"days": ""})
    assert refused.status_code == 403
    assert retention.get_retention(session).days == 400


def test_the_page_shows_the_last_purge(client, login, session):
    retention.save_retention(session, {"days": "30"}, "admin@example.com")
    for days in (40, 50, 60):
        session.add(AuditEvent(at=utcnow() - timedelta(days=days), actor="sync", action="x"))
    session.commit()
    login("viewer")
    assert "No purge has deleted anything yet." in client.get("/audit/").get_data(as_text=True)
    purge_history(session, "scheduler")
    page = client.get("/audit/").get_data(as_text=True)
    cutoff = (utcnow() - timedelta(days=30)).date().isoformat()
    assert f"3 audit events, 0 changes and 0 operations older than {cutoff}" in page
