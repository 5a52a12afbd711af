"""API tokens: create (the secret is shown once, only its hash is kept), revoke, and the check
every API request makes (kmeweb.api.auth).

A token's scopes are cut by its owner's account at each request, never only when it was
made: a viewer's token holds read scopes only, an account demoted to viewer keeps only the
read scopes of its tokens, and a deactivated account's tokens stop working. A service client
belongs to no person and keeps working when the admin who made it leaves.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session

from kmeweb.apitokens.models import READ_SCOPES, ApiToken, IdempotencyKey, Scope, TokenKind
from kmeweb.audit import services as audit
from kmeweb.auth.models import AdminUser
from kmeweb.enums import Choice
from kmeweb.errors import ErrorCollector, NotFound, PermissionDenied, ValidationError
from kmeweb.extensions import utcnow

SECRET_PREFIX = "kmw_"
EXPIRY_DEFAULT_DAYS = 90
EXPIRY_MAX_DAYS = 365
NAME_MAX = 80
# How stale "last used" may get before a request writes it again (one UPDATE per minute per
# token at most, not one per request).
TOUCH_EVERY = timedelta(seconds=60)
IDEMPOTENCY_KEEP = timedelta(hours=24)


class TokenState(Choice):
    """Whether a token works now: worked out from its dates, never stored (so it is no
    column's value, and lives here rather than in models.py)."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


def hash_secret(secret: str) -> str:
    """The stored form of a secret: SHA-256 (the secret has 256 random bits; no salt or
    stretching is needed to make guessing it hopeless)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(values: Iterable[str], owner: AdminUser | None) -> list[str]:
    """The scopes asked for, as stored: known ones only, each once, in Scope order. A viewer's
    token may hold read scopes only. Raises ValidationError (field "scopes")."""
    wanted = {str(v).strip() for v in values if str(v).strip()}
    unknown = sorted(wanted - {s.value for s in Scope})
    if unknown:
        raise ValidationError(f"Unknown scope: {', '.join(unknown)}.", field="scopes")
    if not wanted:
        raise ValidationError("Choose at least one scope.", field="scopes")
    if owner is not None and not owner.can_write:
        writes = sorted(w for w in wanted if Scope(w).writes)
        if writes:
            raise ValidationError(
                f"A viewer's token can only read: {', '.join(writes)} is not allowed.",
                field="scopes",
            )
    return [s.value for s in Scope if s.value in wanted]


def parse_expiry(days: Any) -> int:
    """Days until the token expires: 1..365 (90 when not given). Raises ValidationError."""
    if days is None or days == "":
        return EXPIRY_DEFAULT_DAYS
    try:
        value = int(days)
    except (TypeError, ValueError):
        raise ValidationError("Enter a number of days.", field="expires_in_days") from None
    if not 1 <= value <= EXPIRY_MAX_DAYS:
        raise ValidationError(
            f"A token lasts 1 to {EXPIRY_MAX_DAYS} days.", field="expires_in_days"
        )
    return value


def _name(value: Any) -> str:
    name = (value or "").strip() if isinstance(value, str) else ""
    if not name:
        raise ValidationError("Enter a name.", field="name")
    if len(name) > NAME_MAX:
        raise ValidationError(f"At most {NAME_MAX} characters.", field="name")
    return name


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


def create_token(
    session: Session,
    actor: AdminUser,
    name: Any,
    scopes: Iterable[str],
    expires_in_days: Any = None,
    service: bool = False,
) -> NewToken:
    """A personal token of `actor`, or (`service`, admins only) a service client that belongs
    to no person. Records "api_token.create". Flushes.
    Raises ValidationError (fields "name", "scopes", "expires_in_days"), PermissionDenied (a
    viewer asking for a service client)."""
    if service and not actor.can_write:
        raise PermissionDenied("Only an admin can create a service client.")
    errors = ErrorCollector()
    clean_name = errors.check(_name, name)
    clean_scopes = errors.check(parse_scopes, scopes, None if service else actor)
    days = errors.check(parse_expiry, expires_in_days)
    errors.raise_any()
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=clean_name,
        kind=TokenKind.SERVICE if service else TokenKind.PERSONAL,
        owner_id=None if service else actor.id,
        created_by=actor.id,
        scopes=clean_scopes,
        secret_hash=hash_secret(secret),
        prefix=secret[: len(SECRET_PREFIX) + 6],
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor,
        "api_token.create",
        "api_token",
        token.id,
        {**token.summary(), "scopes": token.scopes, "expires_at": token.expires_at.isoformat()},
    )
    return NewToken(token, secret)


def visible_tokens_query(viewer: AdminUser, search: str | None = None) -> Select:
    """The tokens `viewer` may see and revoke: an admin sees every token, anyone else their
    own; `search` keeps those whose name contains it (case-insensitive). Newest first."""
    stmt = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if not viewer.can_write:
        stmt = stmt.where(ApiToken.owner_id == viewer.id)
    q = (search or "").strip()
    if q:
        stmt = stmt.where(ApiToken.name.icontains(q, autoescape=True))
    return stmt


@dataclass(frozen=True)
class TokenRow:
    """A token as the list shows it: its state now, and the emails of its owner (a personal
    token) and of the admin who created it (None once that account is gone)."""

    token: ApiToken
    state: TokenState
    owner: str | None
    creator: str | None


def describe_tokens(session: Session, tokens: Iterable[ApiToken]) -> list[TokenRow]:
    """The rows of the token list, with the people they name read in one query."""
    tokens = list(tokens)
    ids = {i for t in tokens for i in (t.owner_id, t.created_by) if i is not None}
    emails: dict[int, str] = {}
    if ids:
        stmt = select(AdminUser.id, AdminUser.email).where(AdminUser.id.in_(ids))
        emails = {row.id: row.email for row in session.execute(stmt)}
    now = utcnow()
    return [
        TokenRow(t, token_state(t, now), emails.get(t.owner_id or 0), emails.get(t.created_by or 0))
        for t in tokens
    ]


def get_visible_token(session: Session, viewer: AdminUser, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or (not viewer.can_write and token.owner_id != viewer.id):
        raise NotFound("No such token.")
    return token


def revoke_token(session: Session, actor: AdminUser, token_id: int) -> ApiToken:
    """Revoke at once: the next request with it is refused. Records "api_token.revoke".
    Raises NotFound (no such token, or not one `actor` may see)."""
    token = get_visible_token(session, actor, token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(session, actor, "api_token.revoke", "api_token", token.id, token.summary())
        session.flush()
    return token


def token_state(token: ApiToken, now: datetime | None = None) -> TokenState:
    """Active, revoked or expired, as the token list shows it."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return TokenState.REVOKED
    if token.expires_at <= now:
        return TokenState.EXPIRED
    return TokenState.ACTIVE


@dataclass(frozen=True)
class Caller:
    """Who an API request acts as: the token, the scopes it may use now, and the account it
    acts for (None for a service client). Services audit it like an admin: `email` is what the
    audit log shows as the actor, `id` the account (the creating admin for a service client)."""

    token_id: int
    token_name: str
    scopes: frozenset[str]
    id: int | None
    email: str
    can_write: bool

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def authenticate(session: Session, secret: str, ip: str | None) -> Caller | None:
    """The caller a bearer secret names, or None: unknown, revoked, expired, or its owner's
    account deactivated. Writes "last used" at most once a minute."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.secret_hash == hash_secret(secret)))
    now = utcnow()
    if token is None or token_state(token, now) != TokenState.ACTIVE:
        return None
    # A personal token's owner; for a service client, the admin who created it (if still here).
    owner_id = token.owner_id or token.created_by
    owner = session.get(AdminUser, owner_id) if owner_id is not None else None
    if token.owner_id is not None and (owner is None or not owner.active):
        return None
    scopes = set(token.scopes)
    if token.owner_id is not None and not owner.can_write:
        scopes &= {s.value for s in READ_SCOPES}
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == token.id)
            .values(last_used_at=now, last_used_ip=ip)
        )
        session.commit()
    if token.is_service:
        creator = owner.email if owner is not None else "a removed admin"
        email = f"service client {token.name} (created by {creator})"
    else:
        email = f"{owner.email} (API token {token.name})"
    return Caller(
        token_id=token.id,
        token_name=token.name,
        scopes=frozenset(scopes),
        id=owner.id if owner is not None else None,
        email=email[:254],
        can_write=any(Scope(s).writes for s in scopes),
    )


def forget_old_idempotency_keys(session: Session) -> int:
    """Idempotency keys are kept for 24 hours (the sweeper calls this)."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - IDEMPOTENCY_KEEP)
    )
    return result.rowcount or 0
