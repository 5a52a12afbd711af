"""CSRF on every state change and sign-in on every page, checked over the whole URL map,
so a route added later is covered without a new test."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from kmeweb.security import TOKEN_BLUEPRINTS
from tests.conftest import PASSWORD, csrf_token_from

# Every endpoint that answers without sign-in. Adding one is a decision: change this list.
# /metrics is open in development (tests) and asks for KMEWEB_METRICS_TOKEN otherwise.
PUBLIC = {
    "auth.login",
    "auth.login_post",
    # Sign-in with the identity provider: the redirect there, and its answer (state-checked).
    "auth.oidc_start",
    "auth.oidc_callback",
    # The one-time set-password link: the token in its URL is the credential.
    "accounts.set_password",
    "accounts.set_password_post",
    "static",
    "favicon",  # /favicon.ico: the icon browsers ask for on every page
    "ops.healthz",
    "ops.readyz",
    "ops.metrics",
    "enroll.enroll",
}
# State changes without a CSRF token: the device side, which has no session or cookie to ride.
CSRF_EXEMPT = {"enroll.enroll"}


def _token_checked(rule) -> bool:
    """A rule of the JSON API: a bearer token, never a session, authorises it, so it needs no
    CSRF token and answers 401 rather than the sign-in page (tests/api/test_api_auth.py)."""
    return rule.endpoint.split(".")[0] in TOKEN_BLUEPRINTS


def _path(rule) -> str:
    path = rule.rule
    for arg in rule.arguments:
        path = re.sub(rf"<(?:[a-z]+(?:\([^)]*\))?:)?{arg}>", "1", path)
    return path


def _state_changing(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            yield rule, method, _path(rule)


def _signed_in(app, email: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    response = client.post(
        "/auth/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303
    return client, csrf_token_from(client.get("/audit/").get_data(as_text=True))


def test_every_state_change_refuses_a_missing_or_foreign_csrf_token(app, make_admin):
    make_admin("a@example.com")
    make_admin("b@example.com")
    alice, _ = _signed_in(app, "a@example.com")
    _bob, bobs_token = _signed_in(app, "b@example.com")
    checked = 0
    for rule, method, path in _state_changing(app):
        if rule.endpoint == "auth.login_post":
            continue  # checked below without a session
        if rule.endpoint in CSRF_EXEMPT or _token_checked(rule):
            continue
        for data, headers in (
            ({}, {}),
            ({"csrf_token": bobs_token}, {}),
            ({}, {"HX-Request": "true", "X-CSRFToken": bobs_token}),
        ):
            response = alice.open(path, method=method, data=data, headers=headers)
            assert response.status_code == 400, (method, path, data, headers)
            checked += 1
    assert checked >= 3  # logout and operations retry at least
    assert alice.get("/audit/").status_code == 200  # nothing signed Alice out


def test_sign_in_refuses_a_missing_csrf_token(client, make_admin):
    make_admin()
    response = client.post("/auth/login", data={"email": "admin@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/audit/").status_code == 302


def test_only_the_listed_endpoints_answer_without_sign_in(app, client):
    """Anonymous requests (state changes with a valid anonymous CSRF token, so the sign-in
    check is what answers) reach exactly the endpoints in PUBLIC."""
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    public = set()
    for rule in app.url_map.iter_rules():
        path = "/static/vendor/htmx.min.js" if rule.endpoint == "static" else _path(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = None if method == "GET" else {"csrf_token": token}
            response = client.open(path, method=method, data=data)
            if _token_checked(rule):
                assert response.status_code == 401, (method, path)
                continue
            location = response.headers.get("Location", "")
            if not (response.status_code == 302 and location.startswith("/auth/login")):
                public.add(rule.endpoint)
    assert public == PUBLIC, f"answering without sign-in: {sorted(public)}"
