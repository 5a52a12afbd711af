"""A client configuration for a simulator tenant, built the way an operator would: from the
credentials the tenant was given (OAuth client, or keys.json) and nothing else."""

from __future__ import annotations

from typing import Any

from kmeweb.knox import KnoxConfig, RetryPolicy


def client_config(
    creds: dict[str, Any], base_url: str, auth_mode: str = "oauth", **overrides: Any
) -> KnoxConfig:
    """KnoxConfig for `creds` (from `seed_demo` or `/_sim/tenants`) against `base_url`.

    The OAuth token URL is set to the simulator's: by default the client sends OAuth
    credentials to Samsung's global token host whatever the base URL is.
    """
    common: dict[str, Any] = {
        "base_url": base_url,
        "auth_mode": auth_mode,
        "customer_id": creds["customer_id"],
        "encryption_public_key": creds.get("encryption_public_key"),
        "retry": RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.5),
    }
    if auth_mode == "oauth":
        common.update(
            client_id=creds["oauth_client_id"],
            client_secret=creds["oauth_client_secret"],
            scope=creds.get("oauth_scope", "kme"),
            token_url=base_url.rstrip("/") + "/ams/v1/oauth2/token",
        )
    else:
        common["keys_json"] = creds["legacy_keys_json"]  # carries Identifier, as Samsung's does
    common.update(overrides)
    return KnoxConfig(**common)
