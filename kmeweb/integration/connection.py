"""Test connection: one KME call with a short timeout, answered in plain words.

The only code outside the jobs that calls the Knox client (design.md section 3): the
Settings tab asks for an answer while the admin waits, so it cannot go through a queue.
The client configuration comes from kmeweb.sync.knox, as the jobs build it, so a test
checks what the jobs will send. Nothing here writes the database (connection_config
reads the saved settings); messages never carry a secret or a stack trace.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from kmeweb import crypto
from kmeweb.errors import Conflict
from kmeweb.integration.models import AuthMode, get_integration
from kmeweb.integration.settings import validate_settings
from kmeweb.knox import (
    KnoxAuthError,
    KnoxClient,
    KnoxConfig,
    KnoxConfigError,
    KnoxError,
    KnoxRejectedError,
    KnoxTransientError,
    RetryPolicy,
)
from kmeweb.knox import errors as codes
from kmeweb.sync.knox import config_for, knox_config

log = logging.getLogger("kmeweb.integration")

#: Seconds to connect, and to wait for each answer (token, then one device page).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 8.0

CUSTOMER_CODES = frozenset(
    {codes.CUSTOMER_ID_INVALID, codes.TENANT_MISMATCH, codes.TENANT_NOT_FOUND}
)
CREDENTIAL_CODES = frozenset(
    {
        codes.AUTHORIZATION_FAIL,
        codes.ACCESS_TOKEN_BAD_REQUEST,
        codes.ACCESS_TOKEN_EXPIRED,
        codes.ACCESS_TOKEN_INVALID,
        codes.BAD_REQUEST_CLIENTIDENTIFIER_CLAIM_NOT_POPULATED,
        codes.BAD_REQUEST_ACCESS_TOKEN_CLAIM_NOT_POPULATED,
    }
)


@dataclass
class ConnectionResult:
    ok: bool
    message: str
    device_count: int | None = None


#: A connection test as activate_with_test takes it (check_connection, or a stand-in in tests).
ConnectionTest = Callable[[KnoxConfig], ConnectionResult]


def connection_config(session: Session, data: Mapping[str, Any] | None = None) -> KnoxConfig:
    """The Knox client configuration for a connection test: the form's values when given
    (checked as save_settings checks them, the stored secret where the form leaves it blank),
    else the saved settings. Writes nothing. Raises ValidationError, or Conflict when nothing
    was saved and no values are given."""
    integration = get_integration(session)
    if data is None:
        if integration is None or integration.secret_enc is None:
            raise Conflict("Save the Knox Integration settings first.")
        return knox_config(integration)
    values, secret = validate_settings(session, data)
    if not secret:
        assert integration is not None and integration.secret_enc is not None
        secret = crypto.decrypt(integration.secret_enc)
    settings = integration.settings if integration is not None else {}
    return config_for(values, secret, settings or {})


def _host(config: KnoxConfig) -> str:
    return urlsplit(config.base_url).netloc or config.base_url


def explain(exc: KnoxError, config: KnoxConfig) -> str:
    """What went wrong, in the words an admin acts on."""
    customer = config.customer_id or "(none entered)"
    if isinstance(exc, KnoxConfigError):
        if config.auth_mode == AuthMode.LEGACY:
            return (
                "keys.json is malformed: its keys could not be read. Download it again from "
                "the Knox API portal."
            )
        return "The credentials are incomplete: enter the client id and secret."
    if exc.code in CUSTOMER_CODES:
        return f"Samsung does not know customer id {customer} for these credentials."
    if isinstance(exc, KnoxAuthError) or exc.status == 401 or exc.code in CREDENTIAL_CODES:
        what = (
            "client id and secret"
            if config.auth_mode == AuthMode.OAUTH
            else "keys.json and client identifier"
        )
        return f"Samsung refused the credentials: they are wrong or expired. Check the {what}."
    if isinstance(exc, KnoxTransientError):
        if exc.status is None:
            return (
                f"Samsung is unreachable: no answer from {_host(config)} within "
                f"{READ_TIMEOUT_S:g} seconds. Check the region, the URL and this server's "
                "network access."
            )
        return (
            f"Samsung is unavailable right now (HTTP {exc.status} from {_host(config)}); "
            "try again in a few minutes."
        )
    if exc.status == 403:
        return (
            "Samsung accepted the credentials but does not allow them to use Knox Mobile "
            "Enrollment: check the API scopes of the client."
        )
    if exc.status == 404 and exc.code is None:
        return f"{_host(config)} does not answer like the Knox API: check the region or URL."
    if isinstance(exc, KnoxRejectedError):
        detail = exc.knox_message or f"HTTP {exc.status}"
        return f"Samsung refused the request ({detail})."
    return f"Samsung is unreachable at {_host(config)}: check the region and the URL."


def check_connection(config: KnoxConfig) -> ConnectionResult:
    """Authenticate and read one device page, once (no retries), with short timeouts."""
    quick = dataclasses.replace(
        config,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retry=RetryPolicy(max_attempts=1, base_delay=0, max_delay=0),
    )
    try:
        with KnoxClient(quick) as client:
            count = client.check_connection()
    except KnoxError as exc:
        log.info("Test connection failed: %s", exc)  # the client's text holds no secret
        return ConnectionResult(False, explain(exc, quick))
    except (ValueError, TypeError):
        # The key material would not load (a keys.json whose Private is not a key).
        log.info("Test connection failed: unreadable key material", exc_info=False)
        return ConnectionResult(False, explain(KnoxConfigError("unreadable keys"), quick))
    noun = "device" if count == 1 else "devices"
    return ConnectionResult(
        True, f"Connected to Samsung Knox: the tenant holds {count:,} {noun}.", count
    )
