"""The API's door: who a request acts as (a bearer token, never a session), what it may do
(its scopes, cut by its owner's account now), how often (the rate limit), and a POST retried
with an Idempotency-Key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from kmeweb.apitokens import services as tokens
from kmeweb.apitokens.models import READ_SCOPES, ApiToken, IdempotencyKey, Scope
from kmeweb.apitokens.views import EXAMPLE_CALLS
from kmeweb.audit.models import AuditEvent
from kmeweb.auth.models import AdminUser
from kmeweb.errors import PROBLEM_MIMETYPE, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.outbox.models import ChangeKind
from kmeweb.sync import jobs
from tests.factories import count_rows

READ = [Scope.OPERATIONS_READ.value]
WRITE = [Scope.OPERATIONS_READ.value, Scope.OPERATIONS_WRITE.value]


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_MIMETYPE
    body = response.get_json()
    assert body["status"] == status and body["code"] == code, body
    return body


def _failed_operation(session) -> Operation:
    operation = Operation(
        kind=ChangeKind.DEVICE_MOVE, label="Move 1 device", status=OperationStatus.FAILED, total=1
    )
    session.add(operation)
    session.commit()
    return operation


def _token(session, secret: str) -> ApiToken:
    session.expire_all()
    stmt = select(ApiToken).where(ApiToken.secret_hash == tokens.hash_secret(secret))
    return session.scalar(stmt)


def _owner(session, email: str) -> AdminUser:
    return session.scalar(select(AdminUser).where(AdminUser.email == email))


def _audits(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# Who: a bearer token, nothing else.


def test_no_authorization_is_401_with_a_challenge(client):
    response = client.get("/api/v1/operations")
    body = _problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in body["detail"]


def test_an_unknown_token_is_401_invalid_token(api_as):
    api = api_as()
    api.secret = tokens.SECRET_PREFIX + "not-a-token-of-ours"
    response = api.get("/operations")
    _problem(response, 401, "invalid_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_console_session_never_authorises_an_api_call(client, login):
    login("admin")
    assert client.get("/operations/").status_code == 200  # the session works for the pages
    _problem(client.get("/api/v1/operations"), 401, "unauthorized")


def test_an_api_post_needs_no_csrf_token(client, api, session):
    assert client.post("/auth/login", data={}).status_code == 400  # the pages do need one
    operation = _failed_operation(session)
    response = api.post(f"/operations/{operation.id}/retry")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["status"] == OperationStatus.QUEUED
    assert response.headers["Location"].endswith(f"/api/v1/operations/{operation.id}")


def test_a_missing_scope_is_403_naming_it(api_as, session):
    operation = _failed_operation(session)
    api = api_as(scopes=READ)
    response = api.post(f"/operations/{operation.id}/retry")
    body = _problem(response, 403, "insufficient_scope")
    assert Scope.OPERATIONS_WRITE.value in body["detail"]
    assert f'scope="{Scope.OPERATIONS_WRITE.value}"' in response.headers["WWW-Authenticate"]
    session.expire_all()
    assert session.get(Operation, operation.id).status == OperationStatus.FAILED


# Until when: revocation, expiry, the owner's account.


def test_a_revoked_token_is_refused_at_once(api_as, session):
    api = api_as(scopes=READ)
    assert api.get("/operations").status_code == 200
    token = _token(session, api.secret)
    tokens.revoke_token(session, _owner(session, "admin-api@example.com"), token.id)
    session.commit()
    _problem(api.get("/operations"), 401, "invalid_token")


def test_an_expired_token_is_refused(api_as, session):
    api = api_as(scopes=READ)
    token = _token(session, api.secret)
    token.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    _problem(api.get("/operations"), 401, "invalid_token")


def test_a_deactivated_owners_token_stops_working(api_as, session):
    api = api_as(scopes=READ)
    assert api.get("/operations").status_code == 200
    _owner(session, "admin-api@example.com").active = False
    session.commit()
    _problem(api.get("/operations"), 401, "invalid_token")


def test_an_admin_demoted_to_viewer_keeps_only_the_read_scopes(api_as, session):
    operation = _failed_operation(session)
    api = api_as(scopes=WRITE)
    _owner(session, "admin-api@example.com").role = "viewer"
    session.commit()
    assert api.get("/operations").status_code == 200
    _problem(api.post(f"/operations/{operation.id}/retry"), 403, "insufficient_scope")


def test_a_viewer_cannot_make_a_token_with_a_write_scope(session, make_admin):
    viewer = make_admin("viewer@example.com", "viewer")
    with pytest.raises(ValidationError) as refused:
        tokens.create_token(session, viewer, "nightly", WRITE)
    assert refused.value.field == "scopes"
    assert Scope.OPERATIONS_WRITE.value in refused.value.message


def test_a_service_client_outlives_the_admin_who_made_it(api_as, session):
    operation = _failed_operation(session)
    api = api_as(scopes=WRITE, service=True, email="leaver@example.com", name="service desk")
    _owner(session, "leaver@example.com").active = False
    session.commit()
    response = api.post(f"/operations/{operation.id}/retry")
    assert response.status_code == 202, response.get_data(as_text=True)
    (event,) = _audits(session, "operation.retry")
    assert event.actor == "service client service desk (created by leaver@example.com)"


def test_last_use_is_recorded_with_the_address(api_as, session):
    api = api_as(scopes=READ)
    assert _token(session, api.secret).last_used_at is None
    before = utcnow()
    response = api.get("/operations", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert response.status_code == 200
    token = _token(session, api.secret)
    assert token.last_used_ip == "203.0.113.7"
    assert token.last_used_at >= before - timedelta(seconds=1)


@pytest.fixture
def three_per_minute(app_config: dict) -> None:
    """The app under test allows 3 API requests a minute per token (set before it is built)."""
    app_config["API_RATE_LIMIT"] = "3 per minute"


def test_the_rate_limit_answers_429_with_retry_after(three_per_minute, api_as):
    api = api_as(scopes=READ)
    assert [api.get("/operations").status_code for _ in range(3)] == [200, 200, 200]
    response = api.get("/operations")
    _problem(response, 429, "rate_limited")
    assert 0 < int(response.headers["Retry-After"]) <= 60
    # The limit counts per token: another script's token is not held back.
    assert api_as(scopes=READ, email="other@example.com").get("/operations").status_code == 200


def test_the_audit_of_a_write_names_the_token_and_its_owner(api_as, session):
    operation = _failed_operation(session)
    api = api_as(scopes=WRITE, name="offboarding")
    assert api.post(f"/operations/{operation.id}/retry").status_code == 202
    (event,) = _audits(session, "operation.retry")
    assert event.actor == "admin-api@example.com (API token offboarding)"
    assert event.actor_id == _owner(session, "admin-api@example.com").id


# Idempotency-Key: a retried POST gets the first answer, never a second action.


def test_the_same_key_and_body_replays_the_first_answer(api, session):
    operation = _failed_operation(session)
    headers = {"Idempotency-Key": "retry-7f3a"}
    first = api.post(f"/operations/{operation.id}/retry", headers=headers)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = api.post(f"/operations/{operation.id}/retry", headers=headers)
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert len(_audits(session, "operation.retry")) == 1  # one action, not two


def test_the_same_key_with_another_body_is_422(api, session):
    one, other = _failed_operation(session), _failed_operation(session)
    headers = {"Idempotency-Key": "retry-reused"}
    assert api.post(f"/operations/{one.id}/retry", headers=headers).status_code == 202
    response = api.post(f"/operations/{other.id}/retry", headers=headers)
    body = _problem(response, 422, "idempotency_key_reused")
    assert body["errors"][0]["field"] == "Idempotency-Key"
    session.expire_all()
    assert session.get(Operation, other.id).status == OperationStatus.FAILED


def test_a_failed_first_attempt_releases_the_key(api, session):
    operation = Operation(kind=ChangeKind.DEVICE_MOVE, status=OperationStatus.RUNNING, total=1)
    session.add(operation)
    session.commit()
    headers = {"Idempotency-Key": "retry-after-409"}
    _problem(api.post(f"/operations/{operation.id}/retry", headers=headers), 409, "conflict")
    assert count_rows(session, IdempotencyKey) == 0
    operation.status = OperationStatus.FAILED  # the script waits for it to fail, then retries
    session.commit()
    response = api.post(f"/operations/{operation.id}/retry", headers=headers)
    assert response.status_code == 202 and "Idempotent-Replayed" not in response.headers


def test_a_key_longer_than_255_characters_is_422(api, session):
    operation = _failed_operation(session)
    response = api.post(f"/operations/{operation.id}/retry", headers={"Idempotency-Key": "k" * 256})
    body = _problem(response, 422, "invalid")
    assert body["errors"][0]["field"] == "Idempotency-Key"
    session.expire_all()
    assert session.get(Operation, operation.id).status == OperationStatus.FAILED


def test_the_sweeper_forgets_keys_after_24_hours(api, session):
    for key in ("old", "new"):
        operation = _failed_operation(session)
        headers = {"Idempotency-Key": key}
        assert api.post(f"/operations/{operation.id}/retry", headers=headers).status_code == 202
    stale = session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "old"))
    stale.created_at = utcnow() - timedelta(hours=25)
    session.commit()
    assert jobs.sweep_job()["idempotency_keys_forgotten"] == 1
    session.expire_all()
    assert [k.key for k in session.scalars(select(IdempotencyKey))] == ["new"]


def test_the_example_call_of_each_read_scope_answers_to_that_scope_alone(api_as):
    """The curl example shown with a new token (Admin › API tokens) works for every read
    scope, a scope added later included."""
    assert set(EXAMPLE_CALLS) == set(READ_SCOPES)
    for scope, path in EXAMPLE_CALLS.items():
        only = api_as(scopes=[scope.value], email=f"{scope.name.lower()}@example.com")
        r = only.get(path)
        assert r.status_code == 200, (scope, r.get_data(as_text=True))
