"""Sign-in limits shared through Redis and surviving its loss; numbers and text that
must never reach the database as a 500."""

from __future__ import annotations

import logging

import pytest

from kmeweb import create_app
from kmeweb.operations.models import Operation
from tests.conftest import PASSWORD, Actions


def _attempt(client, email: str, password: str = "wrong password", ip: str = "10.0.0.1"):
    actions = Actions(client)
    token = actions.token()
    return client.post(
        "/auth/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_sign_in_is_limited_per_client_ip(app_config, make_admin, app):
    app.config["LOGIN_IP_RATE_LIMIT"] = "3 per minute"
    client = app.test_client()
    for n in range(3):
        make_admin(f"user{n}@example.com")
    statuses = [_attempt(client, f"user{n}@example.com").status_code for n in range(3)]
    assert statuses == [422, 422, 422]
    # a fourth account from the same address is refused; another address is not
    assert _attempt(client, "someone@example.com").status_code == 429
    assert _attempt(client, "user0@example.com", PASSWORD, ip="10.0.0.2").status_code == 303


def test_limits_are_shared_by_app_instances_through_redis(app_config, make_admin, app):
    """Two web processes (here two app instances) count one account's attempts together."""
    make_admin("target@example.com")
    other = create_app(app_config)
    first, second = app.test_client(), other.test_client()
    statuses = [
        _attempt(first if n % 2 else second, "target@example.com").status_code for n in range(6)
    ]
    assert statuses == [422] * 5 + [429]


def test_sign_in_works_with_redis_down_and_still_limits_per_process(app_config, make_admin, caplog):
    app_config.update(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    make_admin("target@example.com")
    down = create_app(app_config)
    client = down.test_client()
    with caplog.at_level(logging.WARNING):
        assert _attempt(client, "target@example.com", PASSWORD).status_code == 303
    assert any("falling back to in-memory" in r.getMessage() for r in caplog.records)
    other = down.test_client()
    statuses = [_attempt(other, "target@example.com").status_code for _ in range(5)]
    assert statuses[-1] == 429  # the per-process limit still holds


@pytest.mark.parametrize(
    "path", ["/operations/99999999999999999999", "/operations/2147483648", "/operations/-1"]
)
def test_ids_past_the_integer_range_are_not_found(client, login, path):
    login("admin")
    response = client.get(path)
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["9223372036854775807", "99999999999999999999999", "-5", "x"])
@pytest.mark.parametrize("path", ["/audit/", "/operations/"])
def test_page_numbers_past_the_end_show_the_last_page(client, login, session, path, page):
    login("admin")
    for n in range(3):
        session.add(Operation(kind="pull", label=f"Pull {n}", status="done"))
    session.commit()
    response = client.get(f"{path}?per_page=2&page={page}")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Page 1 of" in body or "Page 2 of 2" in body


@pytest.mark.parametrize(
    "query", ["actor=a%00b", "action=%00", "date_from=2026-01-01%00", "x%00=1", "page=1%00"]
)
def test_nul_in_a_query_parameter_is_a_400(client, login, query):
    login("admin")
    response = client.get(f"/audit/?{query}")
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)


def test_nul_in_a_form_field_is_a_400(client, make_admin, actions):
    make_admin()
    token = actions.token()
    response = client.post(
        "/auth/login",
        data={"email": "admin\x00@example.com", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 400
    assert "NUL" in response.get_data(as_text=True)


def test_nul_in_the_path_is_a_400(client, login):
    login("admin")
    assert client.get("/audit/%00").status_code == 400


def test_actor_filter_matches_wildcards_literally(client, login, session):
    from kmeweb.audit import services as audit

    login("admin")
    audit.record(session, "under_score@example.com", "x.one")
    audit.record(session, "underXscore@example.com", "x.two")
    audit.record(session, "hundred%@example.com", "x.three")
    session.commit()
    body = client.get("/audit/?actor=under_score").get_data(as_text=True)
    assert "<code>x.one</code>" in body and "<code>x.two</code>" not in body
    body = client.get("/audit/?actor=%25").get_data(as_text=True)
    assert "<code>x.three</code>" in body and "<code>x.one</code>" not in body
