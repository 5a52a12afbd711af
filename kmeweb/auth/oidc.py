"""The OpenID Connect client (Authlib): the redirect to the provider and the checked answer.

Authlib does the protocol: discovery, authorization code with PKCE (S256), `state` and `nonce`
kept in the session until the provider's answer comes back (a replayed or foreign `state` is
refused), the code exchanged for tokens, and the ID token's signature checked against the
provider's published keys (fetched again when a token names a key not seen before: key
rotation). The claims are then checked here against the configured issuer and client id
(issuer, audience, expiry, issued-at) before kmeweb.auth.idp decides who may come in.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, session
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError
from werkzeug.wrappers import Response

from kmeweb import crypto
from kmeweb.auth.idp import IdpSettings

log = logging.getLogger("kmeweb.auth")

_EXTENSION = "kmeweb.oidc"
ID_TOKEN_KEY = "oidc_id_token"
# How long the sign-in page trusts its last look at the provider (up / down).
STATUS_TTL_S = {True: 300.0, False: 15.0}


class ProviderUnavailable(Exception):
    """The provider did not answer (discovery, keys or token endpoint)."""


class TokenRefused(Exception):
    """The provider's answer failed a check (state, signature, issuer, audience, expiry, nonce,
    or the provider said no); the message is safe to show."""


def init_app(app: Flask) -> None:
    """Register the provider when KMEWEB_OIDC_ISSUER is set; fails on an unusable secret."""
    settings = IdpSettings.from_config(app.config)
    app.extensions[_EXTENSION] = None
    if not settings.enabled:
        return
    try:
        secret = crypto.decrypt(
            app.config["OIDC_CLIENT_SECRET"], key=app.config["KMEWEB_ENCRYPTION_KEY"]
        )
    except ValueError:
        raise RuntimeError(
            "KMEWEB_OIDC_CLIENT_SECRET must be the client secret encrypted with "
            "KMEWEB_ENCRYPTION_KEY: run `flask oidc-encrypt-secret` and use what it prints"
        ) from None
    oauth = OAuth(app)
    discovery = app.config.get("OIDC_DISCOVERY_URL") or (
        f"{settings.issuer}/.well-known/openid-configuration"
    )
    oauth.register(
        "idp",
        client_id=settings.client_id,
        client_secret=secret,
        server_metadata_url=discovery,
        client_kwargs={
            "scope": app.config["OIDC_SCOPES"],
            "code_challenge_method": "S256",
            "default_timeout": float(app.config.get("OIDC_TIMEOUT_S", 5)),
        },
    )
    app.extensions[_EXTENSION] = {"client": oauth.idp, "status": None}


def settings() -> IdpSettings:
    return IdpSettings.from_config(current_app.config)


def _state() -> dict[str, Any]:
    state = current_app.extensions.get(_EXTENSION)
    if state is None:
        raise ProviderUnavailable("sign-in with an identity provider is not set up")
    return state


def _remember(up: bool) -> None:
    _state()["status"] = (up, time.monotonic())


def provider_up() -> bool:
    """Whether the provider's discovery document can be read now (remembered a short while,
    so the sign-in page costs one request to the provider at most every few minutes)."""
    state = _state()
    if state["status"] is not None:
        up, at = state["status"]
        if time.monotonic() - at < STATUS_TTL_S[up]:
            return up
    try:
        state["client"].load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("identity provider unreachable: %s", exc)
        _remember(False)
        return False
    _remember(True)
    return True


def redirect_to_provider(redirect_uri: str) -> Response:
    """The redirect to the provider's sign-in page (state, nonce and PKCE verifier kept in the
    session); ProviderUnavailable when the provider does not answer."""
    try:
        return _state()["client"].authorize_redirect(redirect_uri)
    except requests.RequestException as exc:
        _remember(False)
        raise ProviderUnavailable(str(exc)) from exc


def claims_from_callback() -> tuple[dict[str, Any], str]:
    """The checked ID token claims of the provider's answer to this request, and the raw ID
    token (for sign-out). TokenRefused or ProviderUnavailable otherwise."""
    cfg = settings()
    client = _state()["client"]
    options = {
        "iss": {"essential": True, "value": cfg.issuer},
        "aud": {"essential": True, "value": cfg.client_id},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "sub": {"essential": True},
    }
    try:
        token = client.authorize_access_token(claims_options=options, leeway=60)
    except requests.RequestException as exc:
        _remember(False)
        raise ProviderUnavailable(str(exc)) from exc
    except (AuthlibBaseError, JoseError, ValueError, KeyError) as exc:
        raise TokenRefused(_why(exc)) from exc
    userinfo = token.get("userinfo")
    if not userinfo or not token.get("id_token"):
        raise TokenRefused("the provider sent no ID token")
    _remember(True)
    return dict(userinfo), str(token["id_token"])


def _why(exc: Exception) -> str:
    """A one-line reason for the audit log and the page (no token contents)."""
    if isinstance(exc, ExpiredTokenError):
        return "the ID token has expired (its exp claim is in the past)"
    if isinstance(exc, ClaimError):
        return f"the ID token's {exc.claim} claim is not valid for this console"
    if isinstance(exc, BadSignatureError):
        return "the ID token's signature does not match the provider's keys"
    if isinstance(exc, JoseError):
        return f"the ID token was refused ({exc.error or type(exc).__name__})"
    error = getattr(exc, "error", None)
    if error == "mismatching_state":
        return "the sign-in answer does not belong to this browser session (state)"
    if error == "access_denied":
        return "the identity provider refused the sign-in"
    if error:
        description = getattr(exc, "description", None)
        return f"the identity provider answered {error}" + (
            f": {description}" if description else ""
        )
    return f"the ID token was refused ({type(exc).__name__})"


def logout_url(post_logout_redirect_uri: str) -> str | None:
    """The provider's end-session URL for this session's ID token (RP-initiated logout), or
    None when the session did not come from the provider or it offers no such endpoint."""
    id_token = session.get(ID_TOKEN_KEY)
    state = current_app.extensions.get(_EXTENSION)
    if not id_token or state is None:
        return None
    try:
        result = state["client"].create_logout_url(
            post_logout_redirect_uri=post_logout_redirect_uri, id_token_hint=id_token
        )
    except (requests.RequestException, RuntimeError):
        return None
    return result["url"]
