from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import Boolean, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow

ROLES = ("admin", "viewer")


class SignIn(Choice):
    """How an account signs in."""

    PASSWORD = "password", "Password"
    OIDC = "oidc", "Identity provider"


class AdminUser(UserMixin, db.Model):
    __tablename__ = "admin_user"
    __table_args__ = (
        UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_admin_user_oidc_identity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="admin")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Part of the session and remember-me cookies; rotating it ends every session.
    session_token: Mapped[str] = mapped_column(
        String(64), default=lambda: secrets.token_urlsafe(32), server_default=""
    )
    sign_in: Mapped[str] = mapped_column(
        String(16), default=SignIn.PASSWORD, server_default=SignIn.PASSWORD.value
    )
    # The identity provider's issuer and `sub` claim, set at the account's first OIDC sign-in.
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    # May sign in with a password while the console is "identity provider only" (audited,
    # alerted): the way in when the provider is down.
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # SHA-256 of a one-time set-password link, and when the link stops working.
    password_link_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    password_link_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def get_id(self) -> str:
        """Flask-Login's alternative id: the account id and its current session token."""
        return f"{self.id}.{self.session_token}"

    def matches_session(self, token: str) -> bool:
        return bool(self.session_token) and hmac.compare_digest(self.session_token, token)

    def end_sessions(self) -> None:
        """Invalidate every session and remember-me cookie of this account."""
        self.session_token = secrets.token_urlsafe(32)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=hash_method())
        self.end_sessions()

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive accounts
        return bool(self.active)

    @property
    def can_write(self) -> bool:
        return self.role == "admin"

    @property
    def display(self) -> str:
        return self.name or self.email


def hash_method() -> str:
    """The password hash method of new hashes (PASSWORD_HASH_METHOD; checks read any)."""
    return str(current_app.config.get("PASSWORD_HASH_METHOD") or "scrypt")
