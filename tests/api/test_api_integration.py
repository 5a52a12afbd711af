"""The integration routes as a script calls them: status without secrets, Test connection
against the simulator, Sync now."""

from __future__ import annotations

from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.integration.models import get_integration
from kmeweb.operations.models import Operation, OperationKind
from tests.factories import count_rows


def test_status_before_setup_says_not_configured(api):
    r = api.get("/integration")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["configured"] is False and body["active"] is False
    assert body["name"] is None and body["sync_operation"] is None


def test_status_shows_the_page_facts_and_never_a_secret(api, session, integration, sim):
    integration.last_error = "KME refused it (4000000 INJECTED_FAULT)"
    session.commit()
    r = api.get("/integration")
    assert r.status_code == 200
    body = r.get_json()
    assert body["configured"] is True and body["active"] is True
    assert body["name"] == "Demo KME" and body["description"] == "simulator"
    assert body["auth_mode"] == "oauth" and body["region"] == "custom"
    assert body["base_url"] == sim.url and body["customer_id"] == sim.creds["customer_id"]
    assert body["sync_interval_s"] == 900 and body["activated_at"].endswith("Z")
    assert body["last_error"].startswith("KME refused it")
    assert body["pending_changes"] == 0 and body["failed_changes"] == 0
    text = r.get_data(as_text=True)
    for secret in (
        sim.creds["oauth_client_secret"],
        sim.creds["oauth_client_id"],
        get_integration(session).secret_enc,
    ):
        assert secret not in text
    assert not {"secret", "secret_enc", "client_secret", "client_id"} & set(body)


def test_test_connection_reaches_the_simulator(api, session, integration):
    r = api.post("/integration/test-connection")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json() == {
        "ok": True,
        "message": "Connected to Samsung Knox: the tenant holds 1,450 devices.",
        "device_count": 1450,
    }


def test_test_connection_says_why_it_failed(api, session, integration, sim):
    integration.customer_id = "NOSUCHCUSTOMER"
    session.commit()
    r = api.post("/integration/test-connection")
    assert r.status_code == 200
    body = r.get_json()
    assert body["ok"] is False and body["device_count"] is None
    assert "Samsung does not know customer id NOSUCHCUSTOMER" in body["message"]
    assert sim.creds["oauth_client_secret"] not in r.get_data(as_text=True)


def test_test_connection_before_setup_is_a_conflict(api):
    r = api.post("/integration/test-connection")
    assert r.status_code == 409
    assert r.get_json()["code"] == "conflict"


def test_sync_now_answers_202_with_the_pull_and_then_the_same_one(api, session, integration):
    first = api.post("/integration/sync")
    assert first.status_code == 202, first.get_data(as_text=True)
    body = first.get_json()
    assert body["kind"] == OperationKind.PULL and body["status"] == "queued"
    assert first.headers["Location"] == body["url"] == f"/api/v1/operations/{body['id']}"
    assert api.get(first.headers["Location"].removeprefix("/api/v1")).status_code == 200

    second = api.post("/integration/sync")
    assert second.status_code == 202 and second.get_json()["id"] == body["id"]
    assert count_rows(session, Operation, Operation.kind == OperationKind.PULL) == 1
    assert api.get("/integration").get_json()["sync_operation"]["id"] == body["id"]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "sync.start"))
    assert event.actor == "admin-api@example.com (API token script)"


def test_sync_now_while_inactive_is_a_conflict(api, session, integration):
    integration.active = False
    session.commit()
    r = api.post("/integration/sync")
    assert r.status_code == 409
    assert "Activate the Knox integration" in r.get_json()["detail"]


def test_write_routes_need_the_integration_write_scope(api_as, session, integration):
    reader = api_as(scopes=["kme.integration:read"])
    assert reader.get("/integration").status_code == 200
    for path in ("/integration/test-connection", "/integration/sync"):
        r = reader.post(path)
        assert r.status_code == 403, path
        assert r.get_json()["code"] == "insufficient_scope"
    assert count_rows(session, Operation) == 0
