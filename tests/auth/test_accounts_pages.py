"""Admin › Accounts over HTTP: admins only (a viewer gets 403 and no menu entry), the list,
Add account with its link shown once, refusals next to their field, the actions' dialogs,
the set-password link page (public, CSRF, rate-limited), without JavaScript too."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.auth import accounts
from kmeweb.auth.models import AdminUser
from tests.conftest import PASSWORD, csrf_token_from
from tests.factories import count_rows

NEW_PASSWORD = "a long new passphrase"
LINK_RE = re.compile(r'data-testid="secret-value">http://localhost(/auth/set-password/[^<]+)<')


def _account(session, email: str) -> AdminUser:
    session.expire_all()
    return session.scalar(select(AdminUser).where(AdminUser.email == email))


def _row(page: str, email: str) -> str:
    rows = page.split('data-testid="account-row"')[1:]
    return next(row.split("</tr>")[0] for row in rows if email in row)


def _add(actions, **data):
    form = {"email": "jane@example.com", "name": "Jane Doe", "role": "viewer"}
    form.update(sign_in="password", credential="link")
    form.update(data)
    return actions.post("/admin/accounts/new", form)


def test_a_viewer_gets_403_everywhere_and_no_menu_entry(client, login, make_admin, actions):
    admin = make_admin("boss@example.com", "admin")
    login("viewer")
    menu = client.get("/audit/").get_data(as_text=True)
    assert ">API tokens</a>" in menu and ">Accounts</a>" not in menu
    for path in (
        "/admin/accounts/",
        "/admin/accounts/new",
        f"/admin/accounts/{admin.id}",
        f"/admin/accounts/{admin.id}/deactivate",
    ):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Only an admin can see or change this." in response.get_data(as_text=True)
    assert _add(actions).status_code == 403


def test_the_list_shows_each_account_and_an_admin_sees_the_menu_entry(
    client, login, session, make_admin
):
    boss = login("admin")
    make_admin("ops@example.com", "viewer", name="Olive Operator")
    waiting = accounts.add_account(session, boss, "new@example.com").account
    idp = accounts.add_account(session, boss, "idp@example.com", sign_in="oidc").account
    accounts.set_break_glass(session, boss, waiting, True)
    accounts.deactivate(session, boss, idp)
    session.commit()
    page = client.get("/admin/accounts/").get_data(as_text=True)
    assert re.search(r'href="/admin/accounts/"[^>]*>Accounts</a>', page)  # the menu entry
    you = _row(page, "admin@example.com")
    assert ">you<" in you and ">Admin<" in you and ">Password<" in you and ">Active<" in you
    assert re.search(r"\d{4}-\d\d-\d\d</span> <span[^>]*>\d\d:\d\d UTC", you)  # last sign-in
    ops = _row(page, "ops@example.com")
    assert "Olive Operator" in ops and ">Viewer<" in ops and "never" in ops
    new = _row(page, "new@example.com")
    assert ">Waiting for a password<" in new and ">break-glass<" in new
    assert "Reset password…" in new and "Remove break-glass…" in new
    gone = _row(page, "idp@example.com")
    assert ">Identity provider<" in gone and ">Deactivated<" in gone
    assert "Reactivate…" in gone and "Reset password…" not in gone and "break-glass" not in gone

    found = client.get("/admin/accounts/?q=OLIVE").get_data(as_text=True)
    assert found.count('data-testid="account-row"') == 1 and "ops@example.com" in found
    waiting_only = client.get("/admin/accounts/?status=waiting").get_data(as_text=True)
    assert waiting_only.count('data-testid="account-row"') == 1
    one = client.get("/admin/accounts/?per_page=1&page=2").get_data(as_text=True)
    assert one.count('data-testid="account-row"') == 1 and "2–2 of 4" in one
    assert "No account matches." in client.get("/admin/accounts/?q=zzz").get_data(as_text=True)
    fragment = client.get("/admin/accounts/?q=ops", headers={"HX-Request": "true"})
    assert "<html" not in fragment.get_data(as_text=True)
    assert "HX-Request" in fragment.headers["Vary"]


def test_add_account_shows_the_link_once_and_the_link_sets_a_password(
    client, login, actions, session, app
):
    login("admin")
    response = _add(actions)
    body = response.get_data(as_text=True)
    assert response.status_code == 200, body
    assert response.headers["Cache-Control"] == "no-store"
    assert "Copy the link now: it will not be shown again." in body
    path = LINK_RE.search(body).group(1)
    jane = _account(session, "jane@example.com")
    assert jane.password_link_hash == accounts.hash_link_token(path.rsplit("/", 1)[1])
    assert path not in client.get("/admin/accounts/").get_data(as_text=True)

    visitor = app.test_client()  # another browser, signed out
    page = visitor.get(path)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = page.get_data(as_text=True)
    assert "Choose a password" in html and "jane@example.com" in html
    token = csrf_token_from(html)

    weak = visitor.post(path, data={"csrf_token": token, "password": "short", "confirm": "short"})
    assert weak.status_code == 422
    assert re.search(r'id="password-error">the password needs at least 12', weak.text)
    mistyped = {"csrf_token": token, "password": NEW_PASSWORD, "confirm": "something else"}
    response = visitor.post(path, data=mistyped)
    assert response.status_code == 422
    assert 'id="confirm-error">The two passwords are not the same.' in response.text

    good = {"csrf_token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    done = visitor.post(path, data=good)
    assert done.status_code == 303 and done.headers["Location"] == "/auth/login"
    assert "Your password is set: sign in with it." in visitor.get("/auth/login").text
    used = visitor.get(path)
    assert used.status_code == 404 and "used already" in used.text
    assert visitor.post(path, data=good).status_code == 404
    login_token = csrf_token_from(visitor.get("/auth/login").text)
    signed_in = visitor.post(
        "/auth/login",
        data={"email": "jane@example.com", "password": NEW_PASSWORD, "csrf_token": login_token},
    )
    assert signed_in.status_code == 303
    assert count_rows(session, AuditEvent, AuditEvent.action == "admin.password_set") == 1


def test_an_expired_link_page_says_so(client, app, session, make_admin):
    boss = make_admin("boss@example.com")
    added = accounts.add_account(session, boss, "jane@example.com")
    added.account.password_link_expires_at = added.account.created_at.replace(year=2020)
    session.commit()
    page = client.get(f"/auth/set-password/{added.secret.value}")
    assert page.status_code == 404
    assert "It expired on 2020-" in page.text and "Ask an admin for a new one." in page.text


def test_add_account_refusals_show_next_to_their_field(client, login, actions, htmx, session):
    login("admin")
    dialog = htmx.get("/admin/accounts/new").text
    assert "<html" not in dialog and 'id="form-dialog-title">Add account' in dialog
    assert 'id="credential-link" checked' in dialog.replace(
        'aria-describedby="credential-link-help" ', ""
    )
    page = client.get("/admin/accounts/new").text
    assert "<html" in page and "kme-dialog-card" in page  # without JavaScript

    token = actions.token("/admin/accounts/")
    bad = htmx.post(
        "/admin/accounts/new",
        data={"csrf_token": token, "email": "not an email", "role": "root", "sign_in": "password"},
    )
    assert bad.status_code == 422 and "<html" not in bad.text
    assert 'id="email-error">not a valid email address' in bad.text
    assert 'id="role-error">Choose admin or viewer.' in bad.text
    taken = htmx.post(
        "/admin/accounts/new",
        data={"csrf_token": token, "email": "ADMIN@example.com", "role": "viewer",
              "sign_in": "password", "credential": "link"},
    )  # fmt: skip
    assert taken.status_code == 409
    assert 'id="email-error">An account for admin@example.com already exists.' in taken.text
    assert count_rows(session, AdminUser) == 1


def test_an_identity_provider_account_is_added_without_a_secret(client, login, actions, session):
    login("admin")
    response = _add(actions, email="idp@example.com", sign_in="oidc", credential="")
    assert response.status_code == 303
    page = client.get("/admin/accounts/").text
    assert "idp@example.com was added: they sign in with the identity provider." in page
    assert not _account(session, "idp@example.com").has_password


def test_the_last_admin_cannot_demote_themselves_and_the_refusal_shows_by_the_field(
    client, login, actions, htmx, session, make_admin
):
    me = login("admin")
    dialog = htmx.get(f"/admin/accounts/{me.id}/role").text
    assert 'id="role-admin" checked' in dialog.replace('aria-describedby="role-admin-help" ', "")
    token = actions.token("/admin/accounts/")
    refused = htmx.post(
        f"/admin/accounts/{me.id}/role", data={"csrf_token": token, "role": "viewer"}
    )
    assert refused.status_code == 409 and "<html" not in refused.text
    assert 'id="role-error">You are the last active admin' in refused.text
    deactivate = actions.post(f"/admin/accounts/{me.id}/deactivate")
    assert deactivate.status_code == 409
    assert "You are the last active admin" in deactivate.text
    assert _account(session, "admin@example.com").role == "admin"

    make_admin("second@example.com", "admin")
    demoted = actions.post(f"/admin/accounts/{me.id}/role", {"role": "viewer"})
    assert demoted.status_code == 303 and demoted.headers["Location"] == "/"  # no longer admin
    assert "admin@example.com is now a viewer." in client.get("/").text
    assert client.get("/admin/accounts/").status_code == 403


def test_deactivate_asks_first_then_ends_the_accounts_sessions(
    client, login, actions, htmx, session, app, make_admin
):
    login("admin")
    ops = make_admin("ops@example.com", "viewer")
    theirs = app.test_client()
    token = csrf_token_from(theirs.get("/auth/login").text)
    theirs.post("/auth/login", data={"email": "ops@example.com", "password": PASSWORD,
                                     "csrf_token": token})  # fmt: skip
    assert theirs.get("/audit/").status_code == 200

    dialog = htmx.get(f"/admin/accounts/{ops.id}/deactivate").text
    assert "Deactivate <strong>ops@example.com</strong>?" in dialog and "<html" not in dialog
    assert theirs.get("/audit/").status_code == 200  # asking changed nothing
    page = client.get(f"/admin/accounts/{ops.id}/deactivate").text
    assert "<html" in page and "kme-dialog-card" in page  # without JavaScript

    done = actions.post(f"/admin/accounts/{ops.id}/deactivate")
    assert done.status_code == 303 and done.headers["Location"] == "/admin/accounts/"
    assert theirs.get("/audit/").status_code == 302
    listed = client.get("/admin/accounts/").text
    assert "ops@example.com is deactivated: its sessions have ended." in listed
    assert ">Deactivated<" in _row(listed, "ops@example.com")

    assert actions.post(f"/admin/accounts/{ops.id}/activate").status_code == 303
    assert _account(session, "ops@example.com").active


def test_reset_end_sessions_and_break_glass_through_their_dialogs(
    client, login, actions, session, make_admin
):
    login("admin")
    ops = make_admin("ops@example.com", "viewer")
    reset = actions.post(f"/admin/accounts/{ops.id}/reset-password", {"credential": "password"})
    assert reset.status_code == 200 and reset.headers["Cache-Control"] == "no-store"
    assert "Copy the password now: it will not be shown again." in reset.text
    password = reset.text.split('data-testid="secret-value">')[1].split("<")[0]
    assert _account(session, "ops@example.com").check_password(password)

    before = _account(session, "ops@example.com").session_token
    assert actions.post(f"/admin/accounts/{ops.id}/end-sessions").status_code == 303
    assert _account(session, "ops@example.com").session_token != before

    marked = actions.post(f"/admin/accounts/{ops.id}/break-glass", {"break_glass": "1"})
    assert marked.status_code == 303
    assert "ops@example.com is break-glass." in client.get("/admin/accounts/").text
    assert _account(session, "ops@example.com").break_glass is True
    detail = client.get(f"/admin/accounts/{ops.id}").text
    assert "Remove break-glass…" in detail and "End sessions…" in detail
    actions_logged = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions_logged[-3:] == [
        "admin.password_reset",
        "admin.sessions_end",
        "admin.break_glass",
    ]


@pytest.mark.parametrize("path", ["/admin/accounts/new", "/auth/set-password/{token}"])
def test_posts_without_a_csrf_token_are_refused(client, login, session, path):
    boss = login("admin")
    token = accounts.add_account(session, boss, "jane@example.com").secret.value
    session.commit()
    data = {"email": "x@example.com", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    response = client.post(path.format(token=token), data=data)
    assert response.status_code == 400
    assert "Your session expired; reload the page." in response.text
    assert not _account(session, "jane@example.com").has_password


def test_the_link_page_is_rate_limited_like_sign_in(app, client, make_admin, session):
    app.config["LOGIN_IP_RATE_LIMIT"] = "3 per minute"
    boss = make_admin("boss@example.com")
    path = f"/auth/set-password/{accounts.add_account(session, boss, 'j@example.com').secret.value}"
    session.commit()
    token = csrf_token_from(client.get(path).text)
    data = {"csrf_token": token, "password": "short", "confirm": "short"}
    statuses = [client.post(path, data=data).status_code for _ in range(4)]
    assert statuses == [422, 422, 422, 429]
    unknown = client.post("/auth/set-password/guess", data=data)
    assert unknown.status_code == 429  # per address, whatever the link
