"""Sign-in with a real OpenID provider (node's oidc-provider on loopback, tests/oidc_fixtures.py).

kmeweb is driven through its test client and the provider's own pages through `requests`, the
way a browser follows them (tests/browser/test_oidc_browser.py does it in Chromium): the
redirect to the provider, its login and consent forms, and the redirect back with the code.
Each refusal the issue lists is one test: tampered or expired ID token, wrong audience or
issuer, nonce mismatch, a replayed state, an email outside the allowed domains, a user removed
from every mapped group, a user the provider refuses, and the provider down.
"""

from __future__ import annotations

import html
import os
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from sqlalchemy import select

from kmeweb import crypto
from kmeweb.audit.models import AuditEvent
from kmeweb.auth.models import AdminUser, SignIn
from tests.conftest import PASSWORD, csrf_token_from

BASE = "http://127.0.0.1:5999"  # where the test client says kmeweb is (the redirect URI's host)
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S)
ACTION = re.compile(r'action="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def oidc_settings(provider) -> dict:
    """The app settings of a console signing in with `provider` (as KMEWEB_OIDC_* give them)."""
    return {
        "OIDC_ISSUER": provider.issuer,
        "OIDC_NAME": "Test IdP",
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": crypto.encrypt(
            provider.client_secret, key=os.environ["KMEWEB_ENCRYPTION_KEY"]
        ),
        "OIDC_SCOPES": "openid email profile groups",
        "OIDC_ROLE_MAP": {"kme-admins": "admin", "kme-viewers": "viewer"},
        "OIDC_ALLOWED_DOMAINS": ["example.com"],
    }


@pytest.fixture
def app_config(app_config: dict, oidc_provider) -> dict:
    return {**app_config, **oidc_settings(oidc_provider)}


class Journey:
    """kmeweb's test client and a `requests` session for the provider, sharing one journey."""

    def __init__(self, client) -> None:
        self.client = client
        self.provider = requests.Session()

    def get(self, path: str, **kw):
        return self.client.get(path, base_url=BASE, **kw)

    def start(self) -> str:
        """Press "Sign in with Test IdP": the provider URL kmeweb redirects to."""
        answer = self.get("/auth/oidc")
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return answer.headers["Location"]

    def at_provider(self, url: str, login: str, password: str = "pw") -> str:
        """Follow the provider's redirects and forms (login, then consent) until it sends the
        browser back to kmeweb; returns that URL."""
        answer = self.provider.get(url, allow_redirects=False, timeout=10)
        for _ in range(12):
            if answer.is_redirect:
                url = urljoin(url, answer.headers["Location"])
                if url.startswith(BASE):
                    return url
                answer = self.provider.get(url, allow_redirects=False, timeout=10)
                continue
            form = FORM.search(answer.text)
            assert form, answer.text[:500]
            url = urljoin(url, html.unescape(ACTION.search(form.group(1)).group(1)))
            data = dict(HIDDEN.findall(form.group(2)))
            if url.endswith("/login"):  # the login page
                data.update(login=login, password=password)
            elif 'name="logout"' in answer.text:  # "Yes, sign me out"
                data["logout"] = "yes"
            answer = self.provider.post(url, data=data, allow_redirects=False, timeout=10)
        raise AssertionError(f"the provider never sent the browser back: {url}")

    def back(self, url: str):
        """The provider's redirect back to kmeweb's callback."""
        parts = urlsplit(url)
        return self.get(f"{parts.path}?{parts.query}")

    def sign_in(self, login: str, password: str = "pw"):
        return self.back(self.at_provider(self.start(), login, password))

    def whoami(self) -> str | None:
        page = self.get("/")
        if page.status_code != 200:
            return None
        match = re.search(r'class="whoami[^"]*"[^>]*>(.*?)</', page.get_data(as_text=True), re.S)
        return match.group(1).strip() if match else ""


@pytest.fixture
def journey(client) -> Journey:
    return Journey(client)


def _account(session, email: str) -> AdminUser | None:
    return session.scalar(select(AdminUser).where(AdminUser.email == email))


def _refusals(session) -> list[str]:
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "auth.login_failed").order_by(AuditEvent.id)
    )
    return [e.details.get("reason", "") for e in events]


def _refused(answer, reason: str) -> None:
    assert answer.status_code == 403
    [shown] = re.findall(r'id="sign-in-refusal">([^<]*)<', answer.get_data(as_text=True))
    assert html.unescape(shown).startswith("Sign-in refused: ")
    assert reason in html.unescape(shown)


def test_the_groups_give_the_role_at_each_sign_in(journey, session, oidc_provider):
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana Admin", ["kme-admins"])
    answer = journey.sign_in("ana")
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    ana = _account(session, "ana@example.com")
    assert (ana.role, ana.sign_in, ana.name, ana.oidc_subject) == (
        "admin",
        SignIn.OIDC,
        "Ana Admin",
        "ana",
    )
    assert ana.oidc_issuer == oidc_provider.issuer
    assert "Ana Admin" in journey.whoami()

    # removed from the admin group at the provider: a viewer from the next sign-in on
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana Admin", ["kme-viewers", "staff"])
    again = Journey(journey.client.application.test_client())
    assert again.sign_in("ana").status_code == 303
    session.expire_all()
    assert _account(session, "ana@example.com").role == "viewer"

    # and from every mapped group: no access, and no session
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana Admin", ["staff"])
    fresh = Journey(journey.client.application.test_client())
    _refused(fresh.sign_in("ana"), "in no group that may use this console")
    assert fresh.get("/").status_code == 302


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("tamper", "the ID token's signature does not match the provider's keys"),
        ("expired", "the ID token has expired"),
        ("wrong_aud", "the ID token's aud claim is not valid"),
        ("wrong_iss", "the ID token's iss claim is not valid"),
        ("wrong_nonce", "the ID token's nonce claim is not valid"),
        ("alg_none", "the ID token was refused"),
    ],
)
def test_a_spoiled_id_token_signs_nobody_in(journey, session, oidc_provider, mode, reason):
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana", ["kme-admins"])
    oidc_provider.misbehave(mode)
    _refused(journey.sign_in("ana"), reason)
    assert journey.get("/").status_code == 302  # still signed out
    assert _account(session, "ana@example.com") is None
    [why] = _refusals(session)
    assert reason in why


def test_a_replayed_or_foreign_state_is_refused(journey, session, client, oidc_provider):
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana", ["kme-admins"])
    back = journey.at_provider(journey.start(), "ana")
    assert journey.back(back).status_code == 303
    # the same answer again: its state was used up by the first
    _refused(journey.back(back), "does not belong to this browser session")

    # an answer meant for another journey, carried to this one
    other = Journey(client.application.test_client())
    stolen = other.at_provider(other.start(), "ana")
    victim = Journey(client.application.test_client())
    _refused(victim.back(stolen), "does not belong to this browser session")
    assert victim.get("/").status_code == 302


def test_an_email_outside_the_allowed_domains_is_refused(journey, session, oidc_provider):
    oidc_provider.add_account("eve", "pw", "eve@elsewhere.org", "Eve", ["kme-admins"])
    _refused(journey.sign_in("eve"), "Accounts of elsewhere.org may not sign in")
    assert _account(session, "eve@elsewhere.org") is None


def test_a_user_the_provider_refuses_cannot_sign_in(journey, session, oidc_provider):
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana", ["kme-admins"])
    oidc_provider.refuse("ana")
    _refused(journey.sign_in("ana"), "the identity provider refused the sign-in")
    assert _account(session, "ana@example.com") is None


def test_signing_keys_rotated_at_the_provider_are_fetched_again(journey, session, oidc_provider):
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana", ["kme-admins"])
    assert journey.sign_in("ana").status_code == 303
    old_kid = oidc_provider.kid
    oidc_provider.restart(rotate_key=True)
    assert oidc_provider.kid != old_kid
    again = Journey(journey.client.application.test_client())  # same app: keys it cached
    assert again.sign_in("ana").status_code == 303
    assert again.whoami()


def test_sign_out_ends_the_session_here_and_at_the_provider(journey, session, oidc_provider):
    oidc_provider.add_account("ana", "pw", "ana@example.com", "Ana", ["kme-admins"])
    journey.sign_in("ana")
    token = csrf_token_from(journey.get("/").get_data(as_text=True))
    out = journey.client.post("/auth/logout", data={"csrf_token": token}, base_url=BASE)
    assert out.status_code == 303
    end_session = out.headers["Location"]
    assert end_session.startswith(oidc_provider.issuer)
    query = parse_qs(urlsplit(end_session).query)
    assert query["post_logout_redirect_uri"] == [f"{BASE}/auth/login"]
    assert query["id_token_hint"]
    assert journey.get("/").status_code == 302  # signed out here at once
    # the provider ends its session and sends the journey back to the sign-in page
    assert journey.at_provider(end_session, "ana").startswith(f"{BASE}/auth/login")
    # so the next "Sign in with Test IdP" asks for the password again
    login_page = journey.provider.get(journey.start(), timeout=10)
    assert 'name="password"' in login_page.text


def test_provider_down_says_so_and_break_glass_still_signs_in(
    app, journey, session, make_admin, oidc_provider
):
    app.config["OIDC_ONLY"] = True
    keeper = make_admin("keeper@example.com")
    keeper.break_glass = True
    make_admin("ops@example.com")
    session.commit()
    oidc_provider.stop()

    page = journey.get("/auth/login").get_data(as_text=True)
    assert "Test IdP is not answering right now" in page
    assert "only break-glass accounts can sign in with a password" in page
    going = journey.get("/auth/oidc")
    assert going.status_code == 303 and going.headers["Location"] == "/auth/login"
    assert "Test IdP is not answering" in journey.get("/auth/login").get_data(as_text=True)

    def password(email: str):
        token = csrf_token_from(journey.get("/auth/login").get_data(as_text=True))
        data = {"email": email, "password": PASSWORD, "csrf_token": token}
        return journey.client.post("/auth/login", data=data, base_url=BASE)

    refused = password("ops@example.com")
    assert refused.status_code == 403
    assert "Password sign-in is turned off for this account: sign in with Test IdP." in (
        refused.get_data(as_text=True)
    )
    assert password("keeper@example.com").status_code == 303
    assert "keeper@example.com" in journey.whoami()
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["auth.login", "auth.break_glass"]
