"""The audit log page: newest first, paginated, filtered; viewers may read it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent


def _seed(session, n: int = 60) -> None:
    base = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for i in range(n):
        session.add(
            AuditEvent(
                at=base + timedelta(hours=i),
                actor="alice@example.com" if i % 2 else "sync",
                action="profile.update" if i % 3 else "device.move",
                target_type="profile",
                target_id=str(i),
                details={"n": i},
            )
        )
    session.commit()


def test_newest_first_and_paginated(client, login, session):
    login("viewer")
    _seed(session)
    body = client.get("/audit/?per_page=20").get_data(as_text=True)
    # newest seeded event (n=59) first; the login event itself is newer still
    assert body.index("profile 59") < body.index("profile 58")
    assert "Page 1 of" in body and "Next" in body
    page2 = client.get("/audit/?per_page=20&page=2").get_data(as_text=True)
    assert "profile 59" not in page2 and "Previous" in page2


def test_filters_by_actor_action_and_dates(client, login, session):
    login("admin")
    _seed(session)
    body = client.get(
        "/audit/?actor=alice&action=device.move&date_from=2026-11-02&date_to=2026-11-02&per_page=100"
    ).get_data(as_text=True)
    # alice (odd i), device.move (i % 3 == 0), on Nov 2 (i = 12..35): 15, 21, 27, 33
    shown = sorted(int(x) for x in re.findall(r"profile (\d+)", body))
    assert shown == [15, 21, 27, 33]


def test_bad_date_shows_an_error(client, login):
    login("admin")
    response = client.get("/audit/?date_from=yesterday")
    assert response.status_code == 422
    assert "Use a date like" in response.get_data(as_text=True)


def test_htmx_gets_the_table_fragment_only(client, login, htmx, session):
    login("admin")
    response = htmx.get("/audit/?actor=admin")
    body = response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]
    assert "<table" in body and "<html" not in body


def test_record_keeps_actor_and_ip(session, make_admin):
    user = make_admin()
    event = audit.record(session, user, "thing.do", "thing", 7, {"a": 1}, ip="10.1.2.3")
    session.commit()
    assert (event.actor, event.actor_id, event.target_id, event.ip) == (
        "admin@example.com",
        user.id,
        "7",
        "10.1.2.3",
    )


def test_a_log_of_millions_counts_to_10000_and_pages_on(client, login, session):
    """The count stops past 10,000 events (the log of a large fleet holds millions), and a
    page further on counts as far as it needs to."""
    login("viewer")
    base = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    rows = [
        {"at": base + timedelta(seconds=i), "actor": "sync", "action": f"step.{i % 3}"}
        for i in range(10_060)
    ]
    session.execute(insert(AuditEvent), rows)
    session.commit()
    first = client.get("/audit/?per_page=50").get_data(as_text=True)
    assert "1–50 of more than 10,000" in first
    assert "Page 1</span>" in first and "Next ›" in first
    # The action filter lists every action once, in order, read through the index.
    options = re.findall(r'<option value="([^"]*)"', first)
    assert options == ["", "admin.create", "auth.login", "step.0", "step.1", "step.2"]
    last = client.get("/audit/?per_page=50&page=202").get_data(as_text=True)
    summary = re.search(r'<span class="text-body-secondary me-auto">([^<]*)</span>', last)
    assert summary.group(1) == "10,051–10,062 of 10,062"  # the account's creation, sign-in
    assert "Page 202 of 202" in last
    assert "Next ›" not in last
