"""The JSON API as a script calls it: a bearer token made through the real service, requests
through the app's own client (no session cookie, no CSRF token)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kmeweb.apitokens import services as tokens
from kmeweb.apitokens.models import Scope

ALL_SCOPES = [s.value for s in Scope]


class Api:
    """The test client with `Authorization: Bearer <secret>` on every request."""

    def __init__(self, client, secret: str | None) -> None:
        self.client = client
        self.secret = secret

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        base = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        return {**base, **(headers or {})}

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any):
        return self.client.get("/api/v1" + path, headers=self._headers(headers), **kw)

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kw):
        return self.client.post(
            "/api/v1" + path,
            json=json if json is not None else {},
            headers=self._headers(headers),
            **kw,
        )

    def patch(self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kw):
        return self.client.patch(
            "/api/v1" + path, json=json or {}, headers=self._headers(headers), **kw
        )

    def put(self, path: str, json: Any = None, headers: dict[str, str] | None = None, **kw):
        return self.client.put(
            "/api/v1" + path, json=json or {}, headers=self._headers(headers), **kw
        )

    def delete(self, path: str, headers: dict[str, str] | None = None, **kw: Any):
        return self.client.delete("/api/v1" + path, headers=self._headers(headers), **kw)


@pytest.fixture
def make_token(session, make_admin) -> Callable[..., str]:
    """make_token(scopes=..., role="admin", service=False, days=None) -> the secret of a new
    token of an account of that role (made once per email)."""

    def _make(
        scopes: list[str] | None = None,
        role: str = "admin",
        service: bool = False,
        days: int | None = None,
        email: str | None = None,
        name: str = "script",
    ) -> str:
        from kmeweb.auth.models import AdminUser

        email = email or f"{role}-api@example.com"
        owner = session.query(AdminUser).filter_by(email=email).one_or_none() or make_admin(
            email, role
        )
        wanted = (
            scopes
            if scopes is not None
            else (ALL_SCOPES if role == "admin" else [s.value for s in Scope if not s.writes])
        )
        new = tokens.create_token(session, owner, name, wanted, days, service=service)
        session.commit()
        return new.secret

    return _make


@pytest.fixture
def api(client, make_token) -> Api:
    """An admin's token with every scope."""
    return Api(client, make_token())


@pytest.fixture
def api_as(client, make_token) -> Callable[..., Api]:
    """api_as(scopes=[...], role=...) -> an Api with a token of those scopes."""

    def _as(**kw: Any) -> Api:
        return Api(client, make_token(**kw))

    return _as
