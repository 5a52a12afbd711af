"""The test OpenID provider as kmeweb's sign-in will meet it.

The relying party here is built the way kmeweb builds it, with Authlib: discovery, an
authorization code request with PKCE (S256), state and nonce, the code exchanged at the token
endpoint, and the ID token checked as Authlib's own `parse_id_token` checks it (signature
against the provider's keys, then CodeIDToken's claims), with the audience required too.
The browser is real Chromium on the provider's own pages; one tab serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from playwright.sync_api import Browser, Page, expect

from tests.browser.checks import check_a11y
from tests.oidc_fixtures import MISBEHAVIOURS, OidcAccount, OidcProvider, sign_in_at_provider
from tests.servers import serving, wsgi_server

PASSWORD = "alice's long password"
SCOPE = "openid email profile groups"
BACK_PAGE = b"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Client</title></head><body><main><h1>Back at the client</h1></main></body></html>"""


@pytest.fixture(scope="module")
def client_site() -> Iterator[str]:
    """A loopback site the provider sends the browser back to (every path answers)."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [BACK_PAGE]

    with serving(wsgi_server(app)) as url:
        yield url


@pytest.fixture(scope="module")
def module_tab(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def tab(module_tab: Page, oidc_provider: OidcProvider) -> Page:
    """The module's Chromium tab, with no cookie left by an earlier test."""
    module_tab.context.clear_cookies()
    return module_tab


@dataclass
class Authorization:
    """One authorization request, made as kmeweb makes it."""

    session: OAuth2Session
    url: str
    state: str
    nonce: str
    verifier: str


class RelyingParty:
    """kmeweb's side of the flow, with Authlib."""

    def __init__(self, provider: OidcProvider, redirect_uri: str) -> None:
        self.provider = provider
        self.redirect_uri = redirect_uri
        self.metadata = requests.get(provider.discovery_url, timeout=5).json()

    def authorization(self, auth_method: str = "client_secret_basic") -> Authorization:
        session = OAuth2Session(
            self.provider.client_id,
            self.provider.client_secret,
            token_endpoint_auth_method=auth_method,
            scope=SCOPE,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
        )
        verifier, nonce = generate_token(48), generate_token(20)
        url, state = session.create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        return Authorization(session, url, state, nonce, verifier)

    def token(self, auth: Authorization, callback_url: str) -> dict[str, Any]:
        """The code in `callback_url` exchanged at the token endpoint."""
        return auth.session.fetch_token(
            self.metadata["token_endpoint"],
            authorization_response=callback_url,
            state=auth.state,
            code_verifier=auth.verifier,
        )

    def decoded(self, id_token: str) -> jwt.Token:
        """The ID token, its signature checked against the provider's published keys."""
        keys = KeySet.import_key_set(requests.get(self.metadata["jwks_uri"], timeout=5).json())
        algorithms = self.metadata["id_token_signing_alg_values_supported"]
        return jwt.decode(id_token, keys, registry=JWSRegistry(algorithms=algorithms))

    def claims(self, auth: Authorization, token: dict[str, Any]) -> CodeIDToken:
        """The ID token's claims once signature, issuer, audience, expiry and nonce hold."""
        decoded = self.decoded(token["id_token"])
        options = {
            "iss": {"essential": True, "values": [self.metadata["issuer"]]},
            "aud": {"essential": True, "value": self.provider.client_id},
        }
        params = {
            "nonce": auth.nonce,
            "client_id": self.provider.client_id,
            "access_token": token["access_token"],
        }
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        claims.validate(leeway=120)
        return claims


@pytest.fixture
def rp(oidc_provider: OidcProvider, client_site: str) -> RelyingParty:
    return RelyingParty(oidc_provider, f"{client_site}/auth/oidc/callback")


@pytest.fixture
def alice(oidc_provider: OidcProvider) -> OidcAccount:
    return oidc_provider.add_account(
        "alice", PASSWORD, "alice@example.com", "Alice Admin", ["kme-admins", "staff"]
    )


def came_back(page: Page, rp: RelyingParty) -> dict[str, str]:
    """The query the provider sent the browser back to the redirect URI with."""
    assert page.url.startswith(rp.redirect_uri), f"not back at the client: {page.url}"
    return dict(parse_qsl(urlsplit(page.url).query))


def sign_in(page: Page, rp: RelyingParty, login: str = "alice", **kw: str) -> Authorization:
    """A new authorization, signed in on the provider's pages; the tab is back at the client."""
    auth = rp.authorization(**kw)
    page.goto(auth.url)
    sign_in_at_provider(page, login, PASSWORD)
    return auth


def again(page: Page, rp: RelyingParty, **kw: str) -> Authorization:
    """A new authorization in a browser the provider knows: no login page this time."""
    auth = rp.authorization(**kw)
    page.goto(auth.url)
    return auth


def test_discovery_names_every_endpoint_the_sign_in_needs(oidc_provider: OidcProvider) -> None:
    metadata = requests.get(oidc_provider.discovery_url, timeout=5).json()

    issuer = oidc_provider.issuer
    assert issuer.startswith("http://127.0.0.1:")
    assert metadata["issuer"] == issuer
    assert metadata["authorization_endpoint"] == f"{issuer}/auth"
    assert metadata["token_endpoint"] == f"{issuer}/token"
    assert metadata["jwks_uri"] == f"{issuer}/jwks"
    assert metadata["end_session_endpoint"] == f"{issuer}/session/end"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "email", "profile", "groups"} <= set(metadata["scopes_supported"])
    assert {"email", "email_verified", "name", "groups"} <= set(metadata["claims_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(
        metadata["token_endpoint_auth_methods_supported"]
    )
    assert [key["kid"] for key in requests.get(metadata["jwks_uri"], timeout=5).json()["keys"]] == [
        oidc_provider.kid
    ]


def test_an_authorization_request_without_pkce_goes_back_refused(rp: RelyingParty) -> None:
    query = {
        "client_id": "kmeweb",
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": rp.redirect_uri,
        "state": "s1",
        "nonce": "n1",
    }
    url = f"{rp.metadata['authorization_endpoint']}?{urlencode(query)}"
    answer = requests.get(url, allow_redirects=False, timeout=5)

    back = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))
    assert answer.headers["Location"].startswith(rp.redirect_uri)
    assert (back["error"], back["state"]) == ("invalid_request", "s1")
    assert "PKCE" in back["error_description"]


def test_sign_in_on_the_providers_pages_gives_a_signed_id_token_with_email_and_groups(
    tab: Page, rp: RelyingParty, alice: OidcAccount
) -> None:
    auth = rp.authorization()
    tab.goto(auth.url)
    expect(tab.get_by_role("heading", name="Sign in")).to_be_visible()
    check_a11y(tab)

    tab.get_by_label("Login").fill("alice")
    tab.get_by_label("Password").fill("not her password")
    tab.get_by_role("button", name="Sign in").click()
    expect(tab.get_by_role("alert")).to_have_text("Wrong login or password.")
    assert tab.url.startswith(rp.provider.issuer)
    check_a11y(tab)

    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Sign in").click()
    expect(tab.get_by_role("heading", name="Allow kmeweb")).to_be_visible()
    expect(tab.get_by_text("Signed in as alice@example.com")).to_be_visible()
    check_a11y(tab)
    tab.get_by_role("button", name="Continue").click()
    tab.wait_for_url(f"{rp.redirect_uri}?**")

    back = came_back(tab, rp)
    assert back["state"] == auth.state
    assert back["iss"] == rp.provider.issuer
    token = rp.token(auth, tab.url)
    claims = rp.claims(auth, token)
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice Admin"
    assert claims["groups"] == ["kme-admins", "staff"]
    assert claims.header["kid"] == rp.provider.kid


def test_groups_are_read_again_at_each_sign_in(
    oidc_provider: OidcProvider, tab: Page, rp: RelyingParty, alice: OidcAccount
) -> None:
    auth = sign_in(tab, rp, auth_method="client_secret_post")
    assert rp.claims(auth, rp.token(auth, tab.url))["groups"] == ["kme-admins", "staff"]

    oidc_provider.set_accounts([replace(alice, groups=["kme-viewers"])])
    auth = again(tab, rp, auth_method="client_secret_post")

    assert rp.claims(auth, rp.token(auth, tab.url))["groups"] == ["kme-viewers"]


def test_a_refused_user_comes_back_with_access_denied_and_the_state(
    oidc_provider: OidcProvider, tab: Page, rp: RelyingParty, alice: OidcAccount
) -> None:
    oidc_provider.add_account("bob", PASSWORD, "bob@example.com", "Bob", ["kme-viewers"])
    sign_in(tab, rp)
    oidc_provider.refuse("alice")

    # Already signed in at the provider: refused all the same, without a page.
    auth = again(tab, rp)
    back = came_back(tab, rp)
    assert (back["error"], back["state"]) == ("access_denied", auth.state)
    assert "code" not in back

    # On the login page: the right password, then the refusal.
    tab.context.clear_cookies()
    auth = sign_in(tab, rp)
    back = came_back(tab, rp)
    assert (back["error"], back["state"]) == ("access_denied", auth.state)

    tab.context.clear_cookies()
    auth = sign_in(tab, rp, "bob")
    assert rp.claims(auth, rp.token(auth, tab.url))["email"] == "bob@example.com"


DEFECTS = {
    "tamper": (BadSignatureError, None),
    "alg_none": (UnsupportedAlgorithmError, None),
    "expired": (ExpiredTokenError, None),
    "wrong_aud": (InvalidClaimError, "aud"),
    "wrong_iss": (InvalidClaimError, "iss"),
    "wrong_nonce": (InvalidClaimError, "nonce"),
}


def test_each_misbehaviour_spoils_only_the_next_id_token(
    oidc_provider: OidcProvider,
    tab: Page,
    rp: RelyingParty,
    alice: OidcAccount,
    subtests: pytest.Subtests,
) -> None:
    sign_in(tab, rp)  # once: each authorization below goes straight back with a code
    for mode in MISBEHAVIOURS:
        with subtests.test(mode=mode):
            error, claim = DEFECTS[mode]
            oidc_provider.misbehave(mode)
            auth = again(tab, rp)
            token = rp.token(auth, tab.url)

            with pytest.raises(error) as refused:
                rp.claims(auth, token)
            if claim:
                assert refused.value.claim == claim
            if mode not in ("tamper", "alg_none"):
                # Re-signed with the provider's own key: the signature holds, a claim is wrong.
                assert rp.decoded(token["id_token"]).header["kid"] == oidc_provider.kid

            auth = again(tab, rp)
            assert rp.claims(auth, rp.token(auth, tab.url))["email"] == "alice@example.com"


def test_restart_keeps_the_port_and_publishes_a_new_key(
    oidc_provider: OidcProvider, tab: Page, rp: RelyingParty, alice: OidcAccount
) -> None:
    issuer, first_kid = oidc_provider.issuer, oidc_provider.kid

    oidc_provider.restart(rotate_key=False)
    assert (oidc_provider.issuer, oidc_provider.kid) == (issuer, first_kid)

    oidc_provider.restart()
    jwks = requests.get(rp.metadata["jwks_uri"], timeout=5).json()
    assert oidc_provider.issuer == issuer
    assert [key["kid"] for key in jwks["keys"]] == [oidc_provider.kid]
    assert oidc_provider.kid != first_kid

    # The accounts are back after the restart, and ID tokens are signed with the new key.
    auth = sign_in(tab, rp)
    claims = rp.claims(auth, rp.token(auth, tab.url))
    assert claims.header["kid"] == oidc_provider.kid


def test_stop_makes_discovery_unreachable_until_start(oidc_provider: OidcProvider) -> None:
    issuer = oidc_provider.issuer
    oidc_provider.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(oidc_provider.discovery_url, timeout=5)

    oidc_provider.start()
    assert oidc_provider.issuer == issuer
    assert requests.get(oidc_provider.discovery_url, timeout=5).status_code == 200


def test_rp_initiated_logout_ends_the_provider_session(
    tab: Page, rp: RelyingParty, alice: OidcAccount, client_site: str
) -> None:
    auth = sign_in(tab, rp)
    token = rp.token(auth, tab.url)

    # Without an ID token to name the user, the provider asks first.
    query = {"client_id": "kmeweb", "post_logout_redirect_uri": f"{client_site}/signed-out"}
    tab.goto(f"{rp.metadata['end_session_endpoint']}?{urlencode(query)}")
    expect(tab.get_by_role("button", name="Yes, sign me out")).to_be_visible()
    check_a11y(tab)

    # With one (as kmeweb signs out), it signs out at once and comes back with the state.
    query = {
        "id_token_hint": token["id_token"],
        "post_logout_redirect_uri": f"{client_site}/signed-out",
        "state": "bye",
    }
    tab.goto(f"{rp.metadata['end_session_endpoint']}?{urlencode(query)}")
    tab.wait_for_url(f"{client_site}/signed-out?**")
    assert dict(parse_qsl(urlsplit(tab.url).query)) == {"state": "bye"}

    again(tab, rp)
    expect(tab.get_by_label("Password")).to_be_visible()
