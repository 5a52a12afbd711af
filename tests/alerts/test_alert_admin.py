"""Admin › Alerts as an admin and a viewer use it: who may change what, CSRF, the audit trail
of every change, and the page that shows the destinations and what was sent."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kmeweb.alerts import services
from kmeweb.alerts.models import AlertDelivery, AlertDestination
from kmeweb.audit.models import AuditEvent
from tests.factories import count_rows

FORM = {"name": "Ops channel", "url": "https://hooks.example.com/services/T0/B0/XYZ",
        "events": ["token_expired", "upload_waiting"], "token_days": "14",
        "upload_hours": "24", "enabled": "y"}  # fmt: skip
ADMIN_IP = {"REMOTE_ADDR": "198.51.100.7"}


def _destination(session, name: str = "Ops", **over) -> AlertDestination:
    data = {"name": name, "url": "https://hooks.example.com/x", "events": ["token_expired"]}
    destination = services.create_destination(session, {**data, **over}, "test")
    session.commit()
    return destination


def _alert_events(session) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("alert.%")).order_by(AuditEvent.id)
        )
    )


def _path(action: str, destination_id: int) -> str:
    return "/admin/alerts/new" if action == "new" else f"/admin/alerts/{destination_id}/{action}"


@pytest.mark.parametrize("action", ["new", "edit", "delete", "test"])
def test_a_viewer_cannot_change_alert_settings(client, login, actions, session, action):
    destination = _destination(session)
    before = [(e.id, e.action) for e in _alert_events(session)]
    login("viewer")
    response = actions.post(_path(action, destination.id), {**FORM, "name": "Hijacked"})
    assert response.status_code == 403
    assert "Your role can look but not change anything." in response.get_data(as_text=True)
    session.expire_all()
    assert [(d.name, d.url) for d in session.scalars(select(AlertDestination))] == [
        ("Ops", "https://hooks.example.com/x")
    ]
    assert count_rows(session, AlertDelivery) == 0
    assert [(e.id, e.action) for e in _alert_events(session)] == before


@pytest.mark.parametrize("action", ["new", "edit", "delete", "test"])
def test_a_post_without_the_csrf_token_is_refused(client, login, session, action):
    destination = _destination(session)
    login("admin")
    response = client.post(_path(action, destination.id), data={**FORM, "name": "Forged"})
    assert response.status_code == 400
    assert "Your session expired; reload the page." in response.get_data(as_text=True)
    session.expire_all()
    assert [d.name for d in session.scalars(select(AlertDestination))] == ["Ops"]
    assert count_rows(session, AlertDelivery) == 0
    assert [e.action for e in _alert_events(session)] == ["alert.destination_create"]


def test_every_admin_change_is_audited_with_actor_and_address(client, login, actions, session):
    admin = login("admin")
    assert actions.post("/admin/alerts/new", {**FORM, "secret": "first-secret"},
                        environ_base=ADMIN_IP).status_code == 303  # fmt: skip
    destination = session.scalar(select(AlertDestination))
    edited = {**FORM, "token_days": "7", "secret": "second-secret"}
    path = f"/admin/alerts/{destination.id}"
    assert actions.post(f"{path}/edit", edited, environ_base=ADMIN_IP).status_code == 303
    assert actions.post(f"{path}/test", environ_base=ADMIN_IP).status_code == 303
    delivery = session.scalar(select(AlertDelivery))
    assert actions.post(f"{path}/delete", environ_base=ADMIN_IP).status_code == 303

    events = _alert_events(session)
    assert [e.action for e in events] == [
        "alert.destination_create",
        "alert.destination_update",
        "alert.test",
        "alert.destination_delete",
    ]
    assert {(e.actor, e.actor_id, e.ip) for e in events} == {
        ("admin@example.com", admin.id, "198.51.100.7")
    }
    assert {(e.target_type, e.target_id) for e in events} == {
        ("alert_destination", str(destination.id))
    }
    create, update, test, delete = (e.details for e in events)
    # The webhook URL's path is its credential: the log keeps its scheme and host.
    masked = "https://hooks.example.com/…"
    assert create == {"name": "Ops channel", "url": masked, "events": FORM["events"]}
    assert update == {"name": "Ops channel", "changed": ["token_days", "secret"]}
    assert test == {"name": "Ops channel", "delivery_id": delivery.id}
    assert delete == {"name": "Ops channel"}
    # The secret itself is never written to the log.
    assert "first-secret" not in str(create) and "second-secret" not in str(update)
    # Deleting a destination takes its delivery history with it, not its audit trail.
    assert count_rows(session, AlertDestination) == 0
    assert count_rows(session, AlertDelivery) == 0


def test_removing_the_secret_makes_the_destination_unsigned(client, login, actions, session):
    destination = _destination(session, secret="to-be-removed")
    login("admin")
    edit = client.get(f"/admin/alerts/{destination.id}/edit").get_data(as_text=True)
    assert "Remove the stored secret" in edit and "to-be-removed" not in edit
    data = {**FORM, "name": "Ops", "clear_secret": "y"}
    assert actions.post(f"/admin/alerts/{destination.id}/edit", data).status_code == 303
    session.expire_all()
    assert session.get(AlertDestination, destination.id).secret_enc is None
    assert _alert_events(session)[-1].details["changed"][-1] == "secret removed"
    page = client.get("/admin/alerts/").get_data(as_text=True)
    assert "Unsigned (no shared secret)" in page
    # A name another destination has is refused, and nothing is saved.
    _destination(session, "Other")
    clash = actions.post(f"/admin/alerts/{destination.id}/edit", {**FORM, "name": "Other"})
    assert clash.status_code == 422
    assert "A destination called “Other” exists already." in clash.get_data(as_text=True)
    session.expire_all()
    assert session.get(AlertDestination, destination.id).name == "Ops"


def test_the_alerts_page_shows_destinations_and_the_delivery_history(client, login, session):
    login("viewer")
    empty = client.get("/admin/alerts/").get_data(as_text=True)
    assert "No destinations yet." in empty and "No alerts sent yet." in empty

    ops = _destination(
        session,
        "Ops",
        events=["token_expiring", "upload_waiting"],
        token_days=7,
        upload_hours=12,
        secret="x",
    )
    quiet = _destination(session, "Quiet", enabled=False)
    delivered = AlertDelivery(destination_id=ops.id, event="token_expiring",
                              event_key="token_expiring:1:1", status="delivered", attempts=1,
                              payload={"title": "Enrollment token expiring: Sales"})  # fmt: skip
    failed = AlertDelivery(destination_id=quiet.id, event="test", event_key="test:1",
                           status="failed", attempts=3, last_error="HTTP 500: receiver is down",
                           payload={"title": "Test alert"})  # fmt: skip
    session.add_all([delivered, failed])
    session.commit()

    page = client.get("/admin/alerts/").get_data(as_text=True)
    rows = page.split('data-testid="destination-row"')[1:]
    assert [r.split('"fw-semibold">')[1].split("<")[0] for r in rows] == ["Ops", "Quiet"]
    assert "Token expiring (7 days before)" in rows[0]
    assert "Upload waiting for approval (after 12 h)" in rows[0]
    assert "Signed (shared secret set)" in rows[0]
    assert 'data-testid="destination-state">Active<' in rows[0]
    assert 'data-testid="destination-state">Paused<' in rows[1]
    assert "Unsigned (no shared secret)" in rows[1]
    history = page.split('data-testid="deliveries-table"')[1]
    # Newest first: the failed test alert, then the delivered expiry alert.
    assert history.index("Test alert") < history.index("Enrollment token expiring: Sales")
    assert "to Quiet" in history and "to Ops" in history
    assert 'data-testid="delivery-status">failed<' in history
    assert "HTTP 500: receiver is down" in history


def test_the_delivery_history_polls_itself_only_while_an_alert_is_on_its_way(
    client, login, htmx, session
):
    login("admin")
    destination = _destination(session)
    delivery = AlertDelivery(destination_id=destination.id, event="test", event_key="test:1",
                             status="pending", payload={"title": "Test alert"})  # fmt: skip
    session.add(delivery)
    session.commit()
    partial = htmx.get("/admin/alerts/deliveries").get_data(as_text=True)
    assert "<html" not in partial and 'id="alert-deliveries"' in partial
    assert 'hx-trigger="load delay:2s"' in partial
    assert 'data-testid="delivery-status">pending<' in partial
    delivery.status = "delivered"
    session.commit()
    partial = htmx.get("/admin/alerts/deliveries").get_data(as_text=True)
    assert "hx-trigger" not in partial
    assert 'data-testid="delivery-status">delivered<' in partial


def test_an_unknown_destination_is_404(client, login, actions, session):
    login("admin")
    assert client.get("/admin/alerts/999/edit").status_code == 404
    assert actions.post("/admin/alerts/999/test").status_code == 404
    assert actions.post("/admin/alerts/999/delete").status_code == 404
    assert count_rows(session, AlertDelivery) == 0
