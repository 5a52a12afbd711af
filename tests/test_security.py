"""Login on every page, CSRF on every state change, viewer is read-only."""

from __future__ import annotations

from kmeweb.security import PUBLIC_BLUEPRINTS, PUBLIC_ENDPOINTS


def _protected_rules(app):
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rsplit(".", 1)[0] if "." in rule.endpoint else None
        if rule.endpoint in PUBLIC_ENDPOINTS or blueprint in PUBLIC_BLUEPRINTS:
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", "1")
            for conv in ("int", "string", "path", "uuid"):
                path = path.replace(f"<{conv}:{arg}>", "1")
        yield rule, path


def test_every_url_rule_redirects_anonymous_users_to_login(app, client, actions):
    rules = list(_protected_rules(app))
    assert len(rules) >= 3  # the audit log, logout and home at least
    token = actions.token()
    for rule, path in rules:
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET":
                response = client.get(path)
            else:
                response = client.open(path, method=method, data={"csrf_token": token})
            assert response.status_code == 302, (method, path, response.status_code)
            assert response.headers["Location"].startswith("/auth/login"), (method, path)


def test_login_page_and_static_files_are_public(client):
    assert client.get("/auth/login").status_code == 200
    assert client.get("/static/vendor/htmx.min.js").status_code == 200


def test_post_without_csrf_token_is_refused(client, login, session):
    login("admin")
    response = client.post("/auth/logout")
    assert response.status_code == 400
    assert "Your session expired; reload the page." in response.get_data(as_text=True)
    # still signed in: the refused logout changed nothing
    assert client.get("/audit/").status_code == 200


def test_htmx_post_carries_the_csrf_token_in_a_header(client, login):
    login("admin")
    page = client.get("/audit/").get_data(as_text=True)
    from tests.conftest import csrf_token_from

    token = csrf_token_from(page)
    assert 'hx-headers=\'{"X-CSRFToken":' in page
    response = client.post("/auth/logout", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 303
    assert client.get("/audit/").status_code == 302


def test_viewer_gets_403_on_state_changes_but_reads_pages(app, client, login, actions):
    login("viewer")
    assert client.get("/audit/").status_code == 200
    # A state-changing route added for the check: every non-GET is refused for viewers.
    for rule in app.url_map.iter_rules():
        methods = rule.methods - {"GET", "HEAD", "OPTIONS"}
        if not methods or rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint == "auth.logout":
            continue
        if rule.endpoint.split(".")[0] in PUBLIC_BLUEPRINTS:
            continue  # the device side (POST /enroll): no accounts, so no roles
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "1")
        for method in methods:
            response = client.open(path, method=method, data={"csrf_token": actions.token()})
            assert response.status_code == 403, (method, path)


def test_viewer_is_refused_a_write_that_an_admin_may_make(app, client, login, actions):
    @app.post("/_test/write")
    def _test_write():
        return "written"

    login("viewer", "viewer@example.com")
    assert actions.post("/_test/write").status_code == 403
    client.post("/auth/logout", data={"csrf_token": actions.token("/audit/")})
    login("admin", "boss@example.com")
    response = actions.post("/_test/write")
    assert response.status_code == 200 and response.get_data(as_text=True) == "written"


def test_login_is_rate_limited_per_account(client, make_admin, actions):
    make_admin("target@example.com")
    statuses = [actions.login("target@example.com", "wrong password").status_code for _ in range(6)]
    assert statuses[:5] == [422] * 5
    assert statuses[5] == 429
    # the right password is refused too while the account is throttled
    assert actions.login("target@example.com").status_code == 429


def test_login_rate_limit_per_account_does_not_lock_out_other_accounts(client, make_admin, actions):
    make_admin("a@example.com")
    make_admin("b@example.com")
    for _ in range(5):
        actions.login("a@example.com", "nope")
    assert actions.login("a@example.com", "nope").status_code == 429
    assert actions.login("b@example.com").status_code == 303


def test_security_headers_and_cookie_flags(client, login):
    login("admin")
    response = client.get("/audit/")
    assert response.headers["X-Frame-Options"] == "DENY"
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
