"""Signing in and out, with every attempt in the audit log."""

from __future__ import annotations

from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.auth.models import AdminUser


def _actions(session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_login_with_right_password_lands_in_the_console(client, make_admin, actions, session):
    make_admin("Admin@Example.com")
    response = actions.login("admin@example.com")
    assert response.status_code == 303
    page = client.get(response.headers["Location"], follow_redirects=True)
    assert "Audit log" in page.get_data(as_text=True)
    assert "admin@example.com" in page.get_data(as_text=True)
    user = session.scalar(select(AdminUser))
    assert user.last_login_at is not None
    assert _actions(session) == ["admin.create", "auth.login"]


def test_wrong_password_shows_the_error_next_to_the_field(client, make_admin, actions, session):
    make_admin()
    response = actions.login("admin@example.com", "not it")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'id="password-error">Email or password is not correct.' in body
    assert client.get("/audit/").status_code == 302
    assert _actions(session)[-1] == "auth.login_failed"


def test_unknown_account_is_recorded_without_revealing_it(make_admin, actions, session):
    response = actions.login("nobody@example.com", "whatever1")
    assert response.status_code == 422
    assert "Email or password is not correct." in response.get_data(as_text=True)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.login_failed"))
    assert event.actor == "nobody@example.com"


def test_login_form_has_clean_fields(client):
    body = client.get("/auth/login").get_data(as_text=True)
    assert 'placeholder="None"' not in body and "autofocus" in body
    assert 'type="email"' in body and 'type="password"' in body


def test_empty_form_shows_required_errors(actions):
    response = actions.client.post(
        "/auth/login", data={"email": "", "password": "", "csrf_token": actions.token()}
    )
    assert response.status_code == 422
    assert 'id="email-error"' in response.get_data(as_text=True)


def test_inactive_account_cannot_sign_in(make_admin, actions, session):
    user = make_admin()
    user.active = False
    session.commit()
    assert actions.login("admin@example.com").status_code == 422


def test_logout_signs_out_and_is_audited(client, login, actions, session):
    login("admin")
    response = client.post("/auth/logout", data={"csrf_token": actions.token("/audit/")})
    assert response.status_code == 303
    assert client.get("/audit/").status_code == 302
    assert _actions(session)[-1] == "auth.logout"


def test_next_parameter_only_follows_local_paths(make_admin, actions):
    make_admin()
    token = actions.token()
    data = {"email": "admin@example.com", "password": "correct horse battery", "csrf_token": token}
    response = actions.client.post("/auth/login", data={**data, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/"


def test_create_admin_command_generates_a_password(runner, session):
    result = runner.invoke(
        args=["create-admin", "ops@example.com", "--role", "viewer", "--generate"]
    )
    assert result.exit_code == 0, result.output
    password = result.output.split("password: ")[1].strip()
    user = session.scalar(select(AdminUser).where(AdminUser.email == "ops@example.com"))
    assert user.role == "viewer" and user.check_password(password)


def test_create_admin_command_refuses_a_duplicate(runner, make_admin):
    make_admin("dup@example.com")
    result = runner.invoke(args=["create-admin", "dup@example.com", "--password", "longenough"])
    assert result.exit_code != 0
    assert "already exists" in result.output
