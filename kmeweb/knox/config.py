"""Configuration of the Knox client: a plain dataclass, no Flask and no environment reading."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_BASE_URL = "https://api.samsungknox.com"
#: kme-api.md 1b: the OAuth token URL is this one whatever the API base (regional or global).
DEFAULT_TOKEN_URL = "https://api.samsungknox.com/ams/v1/oauth2/token"


@dataclass
class RetryPolicy:
    """How transient failures are retried inside the client.

    Delay before retry n (1-based) is a random value in [0, min(max_delay, base_delay * 2**(n-1))]
    ("full jitter"), unless the server sent Retry-After, which is honoured as given. A Retry-After
    longer than `max_retry_after` is not waited for: the error is raised at once carrying it.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0


@dataclass
class KnoxConfig:
    """Everything the client needs to reach one Knox tenant.

    auth_mode "oauth": `client_id`, `client_secret`, `scope`, `token_url` (default Samsung's
    https://api.samsungknox.com/ams/v1/oauth2/token, whatever `base_url` is). auth_mode
    "legacy": `keys_json` (the portal's keys.json content, str or dict) or `private_key` (PEM or
    base64 DER) with optional `public_key`, plus `customer_id` (required by KME with legacy
    auth) and `client_identifier` (default: the keys.json `Identifier`; an explicit one wins).
    `encryption_public_key` (PEM or base64 DER) is Samsung's key for encrypting per-device user
    names and passwords; it is only needed when assigning with credentials.
    """

    base_url: str = DEFAULT_BASE_URL
    auth_mode: Literal["oauth", "legacy"] = "oauth"
    # OAuth 2.0 client credentials
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str = "kme"
    token_url: str | None = None
    # Legacy Knox Cloud Authentication
    keys_json: str | Mapping[str, Any] | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    public_key: str | None = field(default=None, repr=False)
    client_identifier: str | None = field(default=None, repr=False)
    legacy_token_validity_min: int = 30
    #: Sign a fresh access-token JWT (new jti) for every request. Off by default: the signed
    #: token is reused until Knox refuses a reused jti (4002250); from then on the client signs
    #: every request by itself.
    legacy_sign_per_request: bool = False
    # Tenant
    customer_id: str | None = None
    managed_tenant_id: str | None = None
    encryption_public_key: str | None = None
    # Transport
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Renew a token this many seconds before it expires (capped at a tenth of its life).
    token_renew_margin_s: float = 120.0
    # Sizes
    batch_size: int = 500
    page_size: int = 100
    # [Unverified] wire details
    changed_after_format: Literal["epoch_ms", "iso"] = "epoch_ms"
    paths: dict[str, str] = field(default_factory=dict)
    user_agent: str = "kmeweb-knox-client/1"

    @property
    def effective_token_url(self) -> str:
        """The OAuth token URL: `token_url`, else Samsung's global one (never built from
        `base_url`: a regional API base must not receive the client secret)."""
        return self.token_url or DEFAULT_TOKEN_URL

    @property
    def effective_client_identifier(self) -> str | None:
        """`client_identifier`, else the `Identifier` of the keys.json content."""
        if self.client_identifier:
            return self.client_identifier
        return keys_json_identifier(self.keys_json)

    def secrets(self) -> list[str]:
        """The configured secret strings, so error text can be scrubbed of them."""
        out: list[str] = []
        for value in (self.client_secret, self.private_key, self.client_identifier):
            if value:
                out.append(str(value))
        if isinstance(self.keys_json, str):
            out.append(self.keys_json)
        keys = _keys_mapping(self.keys_json)
        for k in ("Private", "private", "Identifier", "identifier"):
            if keys.get(k):
                out.append(str(keys[k]))
        return out


def _keys_mapping(keys_json: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(keys_json, Mapping):
        return keys_json
    if isinstance(keys_json, str):
        try:
            data = json.loads(keys_json)
        except ValueError:
            return {}
        return data if isinstance(data, Mapping) else {}
    return {}


def keys_json_identifier(keys_json: str | Mapping[str, Any] | None) -> str | None:
    """The client identifier Samsung's downloaded keys.json carries (`Identifier`), if any."""
    keys = _keys_mapping(keys_json)
    value = keys.get("Identifier") or keys.get("identifier")
    return str(value) if value else None
