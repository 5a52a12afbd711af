"""KMEWEB_PROXY_HOPS: behind a trusted proxy the client's address and scheme come from
X-Forwarded-For/-Proto (sign-in limit, audit log, secure cookies); without one, a client
cannot claim another address by sending X-Forwarded-For itself."""

from __future__ import annotations

import pytest
from flask import request

from kmeweb.audit.models import AuditEvent
from kmeweb.extensions import db
from tests.conftest import PASSWORD, csrf_token_from


@pytest.fixture
def app_config(app_config: dict, request) -> dict:
    return {**app_config, "PROXY_HOPS": request.param, "LOGIN_IP_RATE_LIMIT": "3 per minute"}


def _sign_in(client, email: str, password: str, forwarded_for: str):
    headers = {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"}
    page = client.get("/auth/login", headers=headers)
    token = csrf_token_from(page.get_data(as_text=True))
    # Over https Flask-WTF also wants a same-origin Referer, as a browser sends.
    return client.post(
        "/auth/login",
        data={"email": email, "password": password, "csrf_token": token},
        headers={**headers, "Referer": "https://localhost/auth/login"},
    )


def _login_ips(session) -> list[str | None]:
    db.session.expire_all()
    rows = session.scalars(db.select(AuditEvent).order_by(AuditEvent.id)).all()
    return [e.ip for e in rows if e.action.startswith("auth.login") or "login" in e.action]


@pytest.mark.parametrize("app_config", [1], indirect=True)
def test_behind_one_proxy_the_forwarded_client_is_seen(app, client, session, make_admin):
    make_admin("ops@example.com")
    response = _sign_in(client, "ops@example.com", PASSWORD, "203.0.113.7")
    assert response.status_code == 303
    assert _login_ips(session)[-1] == "203.0.113.7"
    # The per-IP sign-in limit counts each forwarded client on its own.
    for n in range(3):
        assert (
            _sign_in(app.test_client(), f"x{n}@example.com", "wrong", "198.51.100.1").status_code
            != 429
        )
    assert _sign_in(app.test_client(), "y@example.com", "wrong", "198.51.100.1").status_code == 429
    assert _sign_in(app.test_client(), "z@example.com", "wrong", "198.51.100.2").status_code != 429


@pytest.mark.parametrize("app_config", [0], indirect=True)
def test_without_a_proxy_a_client_sent_forwarded_for_is_ignored(app, client, session, make_admin):
    make_admin("ops@example.com")
    assert _sign_in(client, "ops@example.com", PASSWORD, "203.0.113.7").status_code == 303
    assert _login_ips(session)[-1] == "127.0.0.1"
    for n in range(2):
        assert (
            _sign_in(app.test_client(), f"x{n}@example.com", "wrong", f"10.0.0.{n}").status_code
            != 429
        )
    # Claiming yet another address does not escape the limit: it is all one client.
    assert _sign_in(app.test_client(), "y@example.com", "wrong", "10.9.9.9").status_code == 429


@pytest.mark.parametrize(
    ("app_config", "scheme", "addr"),
    [(1, "https", "203.0.113.7"), (0, "http", "127.0.0.1")],
    indirect=["app_config"],
)
def test_the_scheme_and_address_the_app_sees(app, scheme, addr):
    @app.get("/_test/whoami")
    def _whoami():
        return {"scheme": request.scheme, "addr": request.remote_addr, "secure": request.is_secure}

    from kmeweb.security import PUBLIC_ENDPOINTS

    PUBLIC_ENDPOINTS.add("_whoami")
    try:
        body = (
            app.test_client()
            .get(
                "/_test/whoami",
                headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
            )
            .get_json()
        )
    finally:
        PUBLIC_ENDPOINTS.discard("_whoami")
    assert body == {"scheme": scheme, "addr": addr, "secure": scheme == "https"}
