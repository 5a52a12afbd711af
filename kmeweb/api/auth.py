"""Who an API request acts as: the bearer token in its Authorization header, checked before
every route of the blueprint, and the one scope each route needs.

A console session cookie is never read here: signing in to the pages authorises no API call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, request
from flask_limiter.util import get_remote_address

from kmeweb.apitokens import services as tokens
from kmeweb.apitokens.models import Scope
from kmeweb.errors import ApiProblem
from kmeweb.extensions import db

CHALLENGE = 'Bearer realm="kmeweb"'


def _secret() -> str | None:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def authenticate() -> None:
    """before_request of the API: g.api_caller, or a 401 problem."""
    secret = _secret()
    if secret is None:
        raise ApiProblem(
            401,
            "unauthorized",
            "Send an API token: Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": CHALLENGE},
        )
    caller = tokens.authenticate(db.session, secret, request.remote_addr)
    if caller is None:
        raise ApiProblem(
            401,
            "invalid_token",
            "The token is unknown, revoked or expired, or its account is deactivated.",
            headers={"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'},
        )
    g.api_caller = caller


def require_scope(scope: Scope | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A route that needs `scope` (None: any valid token) answers 403 without it."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if scope is not None and not g.api_caller.allows(scope):
                raise ApiProblem(
                    403,
                    "insufficient_scope",
                    f"This token lacks the scope {scope.value}.",
                    headers={
                        "WWW-Authenticate": (
                            f'{CHALLENGE}, error="insufficient_scope", scope="{scope.value}"'
                        )
                    },
                )
            return view(*args, **kwargs)

        return checked

    return decorate


def rate_key() -> str:
    """The rate limit counts per token (by a hash of its secret), else per client address."""
    secret = _secret()
    if secret is None:
        return "addr:" + get_remote_address()
    return "token:" + hashlib.sha256(secret.encode()).hexdigest()[:24]
