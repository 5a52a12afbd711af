"""Admin › API tokens: the list, New token (the secret shown once), Revoke; what a viewer may
do with tokens of their own."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from kmeweb.apitokens import services as tokens
from kmeweb.apitokens.models import ApiToken, Scope
from kmeweb.audit.models import AuditEvent
from kmeweb.auth.models import AdminUser
from kmeweb.extensions import utcnow
from tests.factories import count_rows

READ = [Scope.DEVICES_READ.value, Scope.OPERATIONS_READ.value]  # in Scope order, as stored


def _make(session, email: str, name: str, scopes=READ, **kw) -> ApiToken:
    owner = session.scalar(select(AdminUser).where(AdminUser.email == email))
    new = tokens.create_token(session, owner, name, scopes, **kw)
    session.commit()
    return new.token


def _actions(session, action: str) -> int:
    session.expire_all()
    return count_rows(session, AuditEvent, AuditEvent.action == action)


def test_an_admin_creates_a_token_and_sees_its_secret_once(client, login, actions, session):
    login("admin")
    response = actions.post(
        "/admin/api-tokens/new",
        {"name": "offboarding", "kind": "personal", "scopes": READ, "expires_in_days": "30"},
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200, body
    assert response.headers["Cache-Control"] == "no-store"
    token = session.scalar(select(ApiToken))
    secret = body.split('data-testid="token-secret">')[1].split("<")[0]
    assert secret.startswith(tokens.SECRET_PREFIX) and token.secret_hash == tokens.hash_secret(
        secret
    )
    assert "it will not be shown again" in body
    assert f'curl -H "Authorization: Bearer {secret}" "http://localhost/api/v1/operations"' in body
    assert token.scopes == READ and token.owner_id is not None
    assert (token.expires_at - utcnow()).days in (29, 30)
    assert _actions(session, "api_token.create") == 1

    page = client.get("/admin/api-tokens/").get_data(as_text=True)
    row = page.split('data-testid="token-row"')[1].split("</tr>")[0]
    assert "offboarding" in row and "Personal token" in row and "admin@example.com" in row
    assert Scope.DEVICES_READ.value in row and "never" in row and ">active<" in row
    assert secret not in page and "Revoke" in row


def test_new_token_is_a_dialog_whose_refusals_show_inside_it(client, login, actions, htmx, session):
    login("admin")
    dialog = htmx.get("/admin/api-tokens/new").get_data(as_text=True)
    assert "<html" not in dialog and 'id="form-dialog-title">New token' in dialog
    assert "Service client" in dialog and Scope.DEVICES_WRITE.value in dialog
    assert 'value="90"' in dialog  # the default expiry
    page = client.get("/admin/api-tokens/new").get_data(as_text=True)
    assert "<html" in page and "kme-dialog-card" in page  # without JavaScript

    token = actions.token("/admin/api-tokens/")
    response = htmx.post(
        "/admin/api-tokens/new",
        data={"csrf_token": token, "name": "", "expires_in_days": "400"},
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in body
    assert "Enter a name." in body and "Choose at least one scope." in body
    assert "A token lasts 1 to 365 days." in body
    assert count_rows(session, ApiToken) == 0


def test_an_admin_creates_a_service_client(client, login, actions, session):
    login("admin")
    response = actions.post(
        "/admin/api-tokens/new",
        {"name": "service desk", "kind": "service", "scopes": [Scope.DEVICES_WRITE.value]},
    )
    assert response.status_code == 200
    token = session.scalar(select(ApiToken))
    assert token.is_service and token.owner_id is None
    assert '"http://localhost/api/v1/openapi.json"' in response.get_data(as_text=True)
    row = client.get("/admin/api-tokens/").get_data(as_text=True).split('"token-row"')[1]
    assert "Service client" in row and "created by admin@example.com" in row


def test_revoke_asks_then_takes_effect(client, login, actions, htmx, session, make_admin):
    login("admin")
    make_admin("someone@example.com", "admin")
    token = _make(session, "someone@example.com", "nightly report")
    dialog = htmx.get(f"/admin/api-tokens/{token.id}/revoke").get_data(as_text=True)
    assert "Revoke the token “nightly report”" in dialog and "<html" not in dialog
    assert _actions(session, "api_token.revoke") == 0  # asking changed nothing
    response = actions.post(f"/admin/api-tokens/{token.id}/revoke")
    assert response.status_code == 303
    session.expire_all()
    assert session.get(ApiToken, token.id).revoked_at is not None
    assert _actions(session, "api_token.revoke") == 1
    page = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert "The token “nightly report” was revoked" in page
    row = page.split('data-testid="token-row"')[1].split("</tr>")[0]
    assert ">revoked<" in row and "Revoke" not in row


def test_the_list_searches_pages_and_shows_expiry_and_last_use(client, login, session):
    admin = login("admin")
    old = _make(session, admin.email, "old export")
    old.expires_at = utcnow() - timedelta(days=1)
    used = _make(session, admin.email, "inventory sync")
    used.last_used_at, used.last_used_ip = utcnow(), "198.51.100.4"
    session.commit()
    page = client.get("/admin/api-tokens/?q=EXPORT").get_data(as_text=True)
    assert "old export" in page and "inventory sync" not in page
    row = page.split('data-testid="token-row"')[1].split("</tr>")[0]
    assert ">expired<" in row and "Revoke" not in row
    page = client.get("/admin/api-tokens/?q=inventory").get_data(as_text=True)
    assert "198.51.100.4" in page
    one = client.get("/admin/api-tokens/?per_page=1&page=2").get_data(as_text=True)
    assert one.count('data-testid="token-row"') == 1 and "2–2 of 2" in one
    assert "No token matches “nothing”" in client.get("/admin/api-tokens/?q=nothing").get_data(
        as_text=True
    )


def test_a_viewer_makes_and_revokes_read_only_tokens_of_their_own(
    client, login, actions, session, make_admin
):
    make_admin("boss@example.com", "admin")
    theirs = _make(session, "boss@example.com", "boss token")
    login("viewer")
    form = client.get("/admin/api-tokens/new").get_data(as_text=True)
    assert Scope.DEVICES_READ.value in form and Scope.DEVICES_WRITE.value not in form
    assert "Service client" not in form and "can only read" in form

    made = actions.post("/admin/api-tokens/new", {"name": "mine", "scopes": READ})
    assert made.status_code == 200 and "it will not be shown again" in made.get_data(as_text=True)
    write = actions.post(
        "/admin/api-tokens/new", {"name": "w", "scopes": [Scope.DEVICES_WRITE.value]}
    )
    assert write.status_code == 422
    assert "A viewer&#39;s token can only read" in write.get_data(as_text=True)
    service = actions.post(
        "/admin/api-tokens/new", {"name": "s", "kind": "service", "scopes": READ}
    )
    assert service.status_code == 409
    assert "Only an admin can create a service client." in service.get_data(as_text=True)
    assert count_rows(session, ApiToken) == 2

    page = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert "mine" in page and "boss token" not in page
    assert client.get(f"/admin/api-tokens/{theirs.id}/revoke").status_code == 404
    assert actions.post(f"/admin/api-tokens/{theirs.id}/revoke").status_code == 404
    session.expire_all()
    assert session.get(ApiToken, theirs.id).revoked_at is None

    mine = session.scalar(select(ApiToken).where(ApiToken.name == "mine"))
    assert actions.post(f"/admin/api-tokens/{mine.id}/revoke").status_code == 303
    session.expire_all()
    assert session.get(ApiToken, mine.id).revoked_at is not None
