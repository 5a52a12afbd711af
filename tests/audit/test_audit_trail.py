"""The audit trail: every admin service writes its event in the caller's transaction (a
rollback leaves neither change nor event), actor and address come from the request, and the
Audit log page finds, pages and shows events safely for admins and viewers alike."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from kmeweb.alerts import services as alerts
from kmeweb.alerts.models import AlertDestination
from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.auth import services as auth
from kmeweb.auth.models import AdminUser
from kmeweb.directory import services as directory
from kmeweb.directory.models import EndUser
from kmeweb.operations import queue
from kmeweb.operations import services as operations
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change
from kmeweb.profiles import services as profiles
from kmeweb.profiles.models import Profile
from tests.conftest import PASSWORD
from tests.factories import KME_CONFIG, count_rows, make_default_profile


def _alert_destination(session, actor) -> Any:
    data = {"name": "Ops", "url": "https://hooks.example.com/x", "events": ["token_expired"]}
    return alerts.create_destination(session, data, actor)


def _end_user(session, actor) -> Any:
    return directory.create_user(session, {"username": "jdoe", "email": "j@example.com"}, actor)


def _admin_account(session, actor) -> Any:
    return auth.create_admin(session, "new@example.com", PASSWORD, "viewer", actor=actor)[0]


def _kme_profile(session, actor) -> Any:
    data = {"name": "Field Sales", "kind": "kme", "config": KME_CONFIG}
    return profiles.create_profile(session, data, actor)


def _retried_operation(session, actor) -> Any:
    failed = operations.create_operation(session, "device.move", "Move 2 devices", 2, actor)
    failed.status, failed.error = "failed", "KME refused it"
    session.add(Change(kind="device.move", payload={"device_ids": []}, status="failed",
                       attempts=3, operation_id=failed.id))  # fmt: skip
    session.flush()
    return operations.retry_operation(session, failed.id, actor)


SERVICES = [
    # action, service call, the table it changes, whether it queues work for after the commit
    pytest.param(
        "alert.destination_create", _alert_destination, AlertDestination, False, id="alert"
    ),
    pytest.param("end_user.create", _end_user, EndUser, False, id="end_user"),
    pytest.param("admin.create", _admin_account, AdminUser, False, id="admin"),
    pytest.param("profile.create", _kme_profile, Profile, True, id="profile"),
    pytest.param("operation.retry", _retried_operation, Operation, True, id="retry"),
]


def _events(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def _waiting_jobs() -> list[str]:
    return [job_id for name in queue.QUEUES for job_id in queue.get_queue(name).job_ids]


@pytest.mark.parametrize(("action", "call", "model", "queues_work"), SERVICES)
def test_each_admin_service_writes_its_event_in_the_same_transaction(
    session, make_admin, action: str, call: Callable, model: type, queues_work: bool
):
    admin = make_admin("actor@example.com")  # itself audited: "admin.create" by "cli"
    make_default_profile(session)
    earlier = {e.id for e in _events(session, action)}

    def new_events() -> list[AuditEvent]:
        return [e for e in _events(session, action) if e.id not in earlier]

    rows = count_rows(session, model)
    call(session, admin)
    assert len(new_events()) == 1  # in the transaction, beside the change
    session.rollback()
    assert count_rows(session, model) == rows
    assert new_events() == []
    assert _waiting_jobs() == []  # nor any work it would have queued

    target = call(session, admin)
    session.commit()
    [event] = new_events()
    assert (event.actor, event.actor_id) == (admin.email, admin.id)
    assert event.target_id == str(target.id)
    assert bool(_waiting_jobs()) is queues_work
    assert event.ip is None  # no request: no address made up


def test_actor_and_address_come_from_the_request_not_from_client_headers(
    client, actions, make_admin, session
):
    user = make_admin("ops@example.com")
    spoofed = {"X-Forwarded-For": "10.6.6.6"}  # no proxy is configured: not to be believed
    address = {"REMOTE_ADDR": "203.0.113.5"}
    actions.login("ops@example.com", "wrong password")
    token = actions.token()
    response = client.post(
        "/auth/login",
        data={"email": "ops@example.com", "password": PASSWORD, "csrf_token": token},
        headers=spoofed,
        environ_base=address,
    )
    assert response.status_code == 303
    failed, signed_in = _events(session, "auth.login_failed"), _events(session, "auth.login")
    assert [(e.actor, e.actor_id) for e in failed] == [("ops@example.com", None)]
    assert [(e.actor, e.actor_id, e.ip) for e in signed_in] == [
        ("ops@example.com", user.id, "203.0.113.5")
    ]


def test_the_log_shows_each_event_and_escapes_what_it_recorded(client, login, session):
    login("viewer")
    audit.record(session, "sync", "device.changed_in_portal", "device", 42,
                 {"name": "<script>alert(1)</script>", "old": "A", "new": "B"},
                 ip="192.0.2.9")  # fmt: skip
    session.commit()
    audit.record_device_event(session, "device.enroll", 43, {"model": "SM-G991B"}, "192.0.2.10")
    session.commit()
    body = client.get("/audit/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert html.escape("<script>alert(1)</script>", quote=False) in body
    rows = body.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")
    enroll = next(r for r in rows if "device.enroll" in r)
    assert ">device<" in enroll and "device 43" in enroll and "192.0.2.10" in enroll
    assert "SM-G991B" in enroll
    changed = next(r for r in rows if "device.changed_in_portal" in r)
    assert ">sync<" in changed and "device 42" in changed and "192.0.2.9" in changed
    assert rows.index(enroll) < rows.index(changed)  # newest first


def test_actor_search_is_case_insensitive_and_takes_wildcards_literally(client, login, session):
    login("admin")
    for actor in ("ann_lee@example.com", "annxlee@example.com", "Bob@Example.com", "100%@x.io"):
        audit.record(session, actor, "profile.update", "profile", actor[:3])
    session.commit()

    def actors(query: str) -> set[str]:
        body = client.get("/audit/", query_string={"actor": query, "action": "profile.update"})
        return set(re.findall(r'<td class="text-nowrap">([^<@]+@[^<]+)</td>', body.get_data(True)))

    assert actors("ann_") == {"ann_lee@example.com"}  # "_" is not "any character"
    assert actors("%") == {"100%@x.io"}
    assert actors("bob@EXAMPLE") == {"Bob@Example.com"}
    assert actors("  ann  ") == {"ann_lee@example.com", "annxlee@example.com"}


def test_the_action_filter_offers_the_recorded_actions(client, login, session):
    login("admin")
    audit.record(session, "sync", "profile.update", "profile", 1)
    audit.record(session, "sync", "device.move", "device", 2)
    session.commit()
    body = client.get("/audit/?action=device.move").get_data(as_text=True)
    options = re.findall(r'<option[^>]*value="([^"]*)"', body)
    # make_admin and the sign-in recorded the first two
    assert options == ["", "admin.create", "auth.login", "device.move", "profile.update"]
    assert re.search(r'<option[^>]*\bselected\b[^>]*value="device.move"', body)
    table = body.split("<tbody>")[1]
    assert "device.move" in table and "profile.update" not in table
    nothing = client.get("/audit/?action=no.such").get_data(as_text=True)
    assert "No events match these filters." in nothing


def test_a_to_date_before_the_from_date_is_refused_and_other_filters_still_apply(
    client, login, session
):
    login("admin")
    audit.record(session, "alice@example.com", "profile.update", "profile", 1)
    session.commit()
    response = client.get("/audit/?actor=alice&date_from=2026-11-05&date_to=2026-11-01")
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "“To” is before “From”." in body
    table = body.split("<tbody>")[1]
    assert "alice@example.com" in table and "admin@example.com" not in table


def test_paging_keeps_the_filters_and_a_page_past_the_end_shows_the_last(client, login, session):
    login("viewer")
    base = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(25):
        at = base + timedelta(minutes=i)
        session.add(AuditEvent(at=at, actor="sync", action="device.move", target_id=str(i),
                               target_type="device"))  # fmt: skip
    session.commit()
    body = client.get("/audit/?action=device.move&per_page=10").get_data(as_text=True)
    assert "1–10 of 25" in body and "Page 1 of 3" in body
    next_link = re.search(r'href="([^"]*page=2[^"]*)"', body).group(1)
    assert "action=device.move" in html.unescape(next_link)
    last = client.get("/audit/?action=device.move&per_page=10&page=99").get_data(as_text=True)
    assert "Page 3 of 3" in last and "21–25 of 25" in last
    shown = re.findall(r"device (\d+)(?:</a>)?</td>", last)  # linked to the device page
    assert shown == ["4", "3", "2", "1", "0"]


def test_the_log_is_append_only(app):
    """No page edits or deletes an event: the one write under /audit saves the retention
    setting, and the purge it governs runs in a job, never in a request."""
    routes = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("audit.")]
    assert routes
    writes = {r.endpoint for r in routes if r.methods - {"GET", "HEAD", "OPTIONS"}}
    assert writes == {"audit.update_retention"}
