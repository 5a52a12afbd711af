"""Token providers for the two Knox authentication schemes.

Both cache their token and renew it shortly before it expires; `invalidate()` drops it so the next
request fetches a new one (the client does that once on a 401).

Legacy scheme (kme-api.md 1a): a signed clientIdentifier JWT (fresh jti each time) is exchanged at
/ams/v1/users/accesstoken for an access token; that token is signed into an access-token JWT sent
as `x-knox-apitoken`. kme-api.md says every JWT carries a unique jti and that Knox rejects a
reused one (400 4002250 API_KEY_NON_UNIQUE_JWTID); it does not say whether an API call's signed
token may be sent twice. So the signed access-token JWT is reused until a server refuses that:
`resign()` (called by the client on 4002250) switches the provider to a fresh JWT per request
for the rest of its life. `KnoxConfig.legacy_sign_per_request` does so from the start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from kmeweb.knox.config import KnoxConfig
from kmeweb.knox.crypto import load_key_pair, sign_knox_jwt
from kmeweb.knox.errors import API_KEY_NON_UNIQUE_JWTID, KnoxAuthError, KnoxConfigError

# fetch(endpoint_name, url, form=..., json=...) -> parsed JSON body; raises KnoxError.
Fetch = Callable[..., Any]


class TokenProvider(Protocol):
    def headers(self) -> dict[str, str]: ...

    def invalidate(self) -> None: ...

    def resign(self) -> bool: ...


def _margin(config: KnoxConfig, lifetime_s: float) -> float:
    return min(config.token_renew_margin_s, lifetime_s / 10.0)


class OAuthTokenProvider:
    """OAuth 2.0 client credentials: `Authorization: Bearer <access_token>`."""

    def __init__(self, config: KnoxConfig, fetch: Fetch, clock: Callable[[], float] = time.time):
        if not config.client_id or not config.client_secret:
            raise KnoxConfigError("OAuth needs client_id and client_secret")
        self._config = config
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def headers(self) -> dict[str, str]:
        """The auth header, fetching a token first when none is cached or it is due for renewal.

        Raises KnoxAuthError when the token endpoint refuses the credentials.
        """
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._renew()
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def resign(self) -> bool:
        """OAuth tokens carry no jti of ours: nothing to sign again."""
        return False

    def _renew(self) -> None:
        cfg = self._config
        body = self._fetch(
            "oauth_token",
            cfg.effective_token_url,
            form={
                "grant_type": "client_credentials",
                "client_id": cfg.client_id,
                "client_secret": cfg.client_secret,
                "scope": cfg.scope,
            },
        )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise KnoxAuthError("Knox token endpoint answered without an access_token")
        try:
            lifetime = float(body.get("expires_in") or 600)
        except (TypeError, ValueError):
            lifetime = 600.0
        self._token = str(token)
        self._renew_at = self._clock() + lifetime - _margin(cfg, lifetime)


class LegacyTokenProvider:
    """Knox Cloud Authentication: `x-knox-apitoken: <signed access-token JWT>`."""

    def __init__(self, config: KnoxConfig, fetch: Fetch, clock: Callable[[], float] = time.time):
        self._client_identifier = config.effective_client_identifier
        if not self._client_identifier:
            raise KnoxConfigError(
                "legacy auth needs a client identifier (keys.json Identifier or client_identifier)"
            )
        try:
            self._key, self._public_b64 = load_key_pair(
                config.keys_json, config.private_key, config.public_key
            )
        except ValueError as exc:
            raise KnoxConfigError(f"legacy auth key material: {exc}") from None
        self._config = config
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._access_token: str | None = None
        self._signed: str | None = None
        self._renew_at = 0.0
        self._sign_per_request = config.legacy_sign_per_request

    @property
    def public_key_b64(self) -> str:
        return self._public_b64

    def headers(self) -> dict[str, str]:
        """The auth header, getting and signing a new access token when due.

        Raises KnoxAuthError when Knox refuses the signed client identifier.
        """
        with self._lock:
            if self._access_token is None or self._clock() >= self._renew_at:
                self._renew()
            if self._sign_per_request or self._signed is None:
                self._signed = self._sign_access_token()
            return {"x-knox-apitoken": self._signed}

    def invalidate(self) -> None:
        with self._lock:
            self._access_token = None
            self._signed = None

    def resign(self) -> bool:
        """Knox refused a reused jti: sign every request from now on. True (a retry with a
        fresh JWT is worth it)."""
        with self._lock:
            self._signed = None
            self._sign_per_request = True
        return True

    @property
    def signs_per_request(self) -> bool:
        """True once every request gets its own signed JWT (configured, or learned)."""
        return self._sign_per_request

    def _renew(self) -> None:
        cfg = self._config
        lifetime_s = cfg.legacy_token_validity_min * 60
        try:
            body = self._request_access_token(lifetime_s)
        except KnoxAuthError as exc:
            if exc.code != API_KEY_NON_UNIQUE_JWTID:
                raise
            # Our jti is fresh per call, but a server (or a clock-skewed replay guard) may still
            # call it used: one more try with a newly signed client identifier.
            body = self._request_access_token(lifetime_s)
        token = body.get("accessToken") if isinstance(body, dict) else None
        if not token:
            raise KnoxAuthError("Knox access token endpoint answered without an accessToken")
        self._access_token = str(token)
        self._signed = None
        self._renew_at = self._clock() + lifetime_s - _margin(cfg, lifetime_s)

    def _request_access_token(self, lifetime_s: int) -> Any:
        client_jwt = sign_knox_jwt(
            {"clientIdentifier": self._client_identifier, "publicKey": self._public_b64},
            self._key,
            lifetime_s=lifetime_s,
        )
        return self._fetch(
            "legacy_access_token",
            None,
            json={
                "clientIdentifierJwt": client_jwt,
                "base64EncodedStringPublicKey": self._public_b64,
                "validityForAccessTokenInMinutes": self._config.legacy_token_validity_min,
            },
        )

    def _sign_access_token(self) -> str:
        return sign_knox_jwt(
            {"accessToken": self._access_token, "publicKey": self._public_b64},
            self._key,
            lifetime_s=self._config.legacy_token_validity_min * 60,
        )
