"""Every error answer to htmx reaches the flash area; a plain request gets a page."""

from __future__ import annotations

import pytest
from flask import abort
from sqlalchemy import func, select

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.extensions import db
from tests.conftest import csrf_token_from

HX = {"HX-Request": "true"}


def _flash(response) -> str:
    body = response.get_data(as_text=True)
    assert 'id="flash-area"' in body and 'hx-swap-oob="true"' in body, body
    assert "<html" not in body
    assert response.headers["HX-Reswap"] == "none"  # the target stays as it was
    return body


@pytest.fixture
def routes(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.post("/_test/abort/<int:code>")
    def _abort(code: int):
        abort(code)

    @app.post("/_test/boom")
    def _boom():
        audit.record(db.session, "test", "half.done")
        db.session.flush()
        raise RuntimeError("secret internals")

    return app


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (400, "The request was not understood"),
        (404, "That item no longer exists"),
        (405, "That action is not available here"),
        (413, "That upload is too large"),
        (429, "Too many attempts"),
    ],
)
def test_http_errors_reach_the_flash_area(client, login, routes, code, message):
    login("admin")
    token = csrf_token_from(client.get("/audit/").get_data(as_text=True))
    response = client.post(f"/_test/abort/{code}", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == code
    assert message in _flash(response)


def test_csrf_failure_says_the_session_expired(client, login):
    login("admin")
    response = client.post("/auth/logout", headers=HX)
    assert response.status_code == 400
    assert "Your session expired; reload the page." in _flash(response)
    plain = client.post("/auth/logout")
    assert plain.status_code == 400 and "<html" in plain.get_data(as_text=True)
    assert "Your session expired; reload the page." in plain.get_data(as_text=True)


def test_viewer_write_says_the_role_can_only_look(client, login, routes):
    login("viewer")
    token = csrf_token_from(client.get("/audit/").get_data(as_text=True))
    response = client.post("/_test/abort/400", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 403
    assert "Your role can look but not change anything." in _flash(response)


def test_unknown_url_from_htmx_is_a_flash(client, login):
    login("admin")
    response = client.get("/operations/424242", headers=HX)
    assert response.status_code == 404
    _flash(response)


def test_500_shows_the_request_id_and_rolls_back(client, login, routes, session):
    login("admin")
    token = csrf_token_from(client.get("/audit/").get_data(as_text=True))
    response = client.post("/_test/boom", headers={**HX, "X-CSRFToken": token})
    assert response.status_code == 500
    body = _flash(response)
    assert response.headers["X-Request-Id"] in body and "secret internals" not in body
    # the request's session was rolled back: a later commit does not write the half-done row
    db.session.commit()
    count = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "half.done")
    )
    assert count == 0


def test_htmx_without_a_session_is_sent_to_sign_in(client):
    response = client.get(
        "/operations/", headers={**HX, "HX-Current-URL": "http://localhost/audit/?actor=x"}
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/auth/login?next=/audit/?actor%3Dx"
    assert response.get_data(as_text=True) == ""  # never the sign-in page in the target


def test_boosted_request_gets_the_whole_page(client, login):
    login("admin")
    boosted = client.get("/audit/", headers={**HX, "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)
    fragment = client.get("/audit/", headers=HX)
    assert "<html" not in fragment.get_data(as_text=True)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123", True), ("A" * 64, True), ("A" * 65, False), ("x y", False), ("<b>", False)],
)
def test_client_request_id_is_used_only_when_it_is_a_short_token(client, sent, kept):
    response = client.get("/auth/login", headers={"X-Request-Id": sent})
    assert (response.headers["X-Request-Id"] == sent) is kept
    assert len(response.headers["X-Request-Id"]) <= 64
