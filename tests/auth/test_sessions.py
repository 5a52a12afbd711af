"""Sessions that end: logout, a password change and deactivation end every copy of a
session; sign-in starts a fresh one; `next` never leaves the site."""

from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from kmeweb.auth import services
from kmeweb.errors import ValidationError
from tests.conftest import PASSWORD, csrf_token_from


def _cookie_jar(client) -> dict[str, str]:
    return {c.key: c.value for c in client._cookies.values()}


def _restore(client, jar: dict[str, str]) -> None:
    client._cookies.clear()
    for key, value in jar.items():
        client.set_cookie(key, value)


def _logout(client) -> None:
    token = csrf_token_from(client.get("/audit/").get_data(as_text=True))
    assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 303


def test_a_session_cookie_copied_before_logout_is_refused_after_it(client, login):
    login("admin")
    copied = _cookie_jar(client)
    _logout(client)
    _restore(client, copied)
    assert client.get("/audit/").status_code == 302


def test_a_remember_me_cookie_is_refused_after_logout(client, make_admin, actions):
    make_admin()
    token = actions.token()
    client.post(
        "/auth/login",
        data={
            "email": "admin@example.com",
            "password": PASSWORD,
            "remember": "y",
            "csrf_token": token,
        },
    )
    remember = client.get_cookie("remember_token")
    assert remember is not None
    # the remember-me cookie alone signs in (a new browser session)...
    fresh = client.application.test_client()
    fresh.set_cookie("remember_token", remember.value)
    assert fresh.get("/audit/").status_code == 200
    # ...until the account logs out anywhere
    _logout(client)
    again = client.application.test_client()
    again.set_cookie("remember_token", remember.value)
    assert again.get("/audit/").status_code == 302


def test_a_password_change_ends_every_session(client, login, session):
    user = login("admin")
    assert client.get("/audit/").status_code == 200
    services.change_password(session, user, "a much longer passphrase", "test")
    session.commit()
    assert client.get("/audit/").status_code == 302


def test_deactivating_an_account_ends_its_sessions(client, login, session, runner):
    login("admin")
    result = runner.invoke(args=["deactivate-admin", "admin@example.com"])
    assert result.exit_code == 0, result.output
    assert client.get("/audit/").status_code == 302


def test_set_password_command_ends_sessions_and_audits(client, login, runner, session):
    login("admin")
    result = runner.invoke(args=["set-password", "admin@example.com", "--generate"])
    assert result.exit_code == 0, result.output
    assert client.get("/audit/").status_code == 302


def test_sign_in_rotates_the_csrf_token(client, make_admin, actions):
    make_admin()
    before = actions.token()
    actions.login("admin@example.com")
    after = csrf_token_from(client.get("/audit/").get_data(as_text=True))
    with client.session_transaction() as state:
        raw_after = state["csrf_token"]
    assert before != after
    # the token from the sign-in page no longer works for a state change
    response = client.post("/auth/logout", data={"csrf_token": before})
    assert response.status_code == 400
    assert raw_after


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/%09/evil.example",
        "/%2509/evil.example",
        "/\\evil.example",
        "/%5Cevil.example",
        "https://evil.example/",
        "http:/evil.example",
        "/\r\nSet-Cookie: x=1",
        "/%0d%0aLocation:%20https://evil.example",
        "\t//evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_next_never_leaves_the_site(make_admin, actions, target):
    make_admin()
    data = {"email": "admin@example.com", "password": PASSWORD, "csrf_token": actions.token()}
    response = actions.client.post("/auth/login", data={**data, "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_next_keeps_a_path_on_the_site(make_admin, actions):
    make_admin()
    data = {"email": "admin@example.com", "password": PASSWORD, "csrf_token": actions.token()}
    response = actions.client.post("/auth/login", data={**data, "next": "/audit/?actor=sync"})
    assert response.headers["Location"] == "/audit/?actor=sync"


def test_login_page_with_a_hostile_next_renders(client):
    response = client.get("/auth/login?next=%0d%0a//evil.example")
    assert response.status_code == 200


def test_a_signed_out_visit_comes_back_after_sign_in(client, make_admin, actions):
    make_admin()
    response = client.get("/audit/?actor=sync")
    assert response.status_code == 302
    login_url = response.headers["Location"]
    page = client.get(login_url).get_data(as_text=True)
    assert 'name="next" value="/audit/?actor=sync"' in page
    data = {
        "email": "admin@example.com",
        "password": PASSWORD,
        "csrf_token": csrf_token_from(page),
        "next": "/audit/?actor=sync",
    }
    assert client.post("/auth/login", data=data).headers["Location"] == "/audit/?actor=sync"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short pass", "at least 12 characters"),
        ("            ", "may not be blank"),
        ("Password1234", "common passwords"),
        ("  qwerty123456 ", "common passwords"),
    ],
)
def test_weak_passwords_are_refused(session, password, reason):
    with pytest.raises(ValidationError) as info:
        services.create_admin(session, "new@example.com", password)
    assert reason in info.value.message and info.value.field == "password"


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "x@example..com"])
def test_bad_emails_are_refused(session, email):
    with pytest.raises(ValidationError) as info:
        services.create_admin(session, email, "a long enough passphrase")
    assert info.value.field == "email"


def test_create_admin_command_refuses_a_weak_password(runner):
    result = runner.invoke(args=["create-admin", "ops@example.com", "--password", "password1234"])
    assert result.exit_code != 0 and "common passwords" in result.output


@pytest.mark.parametrize("configured", [None, "pbkdf2:sha256:1000"])
def test_unknown_accounts_are_checked_against_a_hash_of_the_same_kind(
    app, make_admin, session, configured
):
    """Same algorithm and cost as a real hash: as much work as a wrong password; by default
    werkzeug's scrypt, the method of the production configuration."""
    app.config["PASSWORD_HASH_METHOD"] = configured
    user = make_admin()
    method = user.password_hash.split("$", 1)[0]
    assert services._dummy_hash(services.hash_method()).split("$", 1)[0] == method
    if configured is None:
        assert method == generate_password_hash("x").split("$", 1)[0] == "scrypt:32768:8:1"
    else:
        assert method == configured


def test_the_production_configuration_hashes_with_scrypt():
    from config import from_env

    assert from_env({})["PASSWORD_HASH_METHOD"] == "scrypt"
