"""Admin accounts: creation, authentication, roles."""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from kmeweb.audit import services as audit
from kmeweb.auth.models import ROLES, AdminUser, SignIn, hash_method
from kmeweb.errors import Conflict, DomainError, ValidationError
from kmeweb.extensions import utcnow

MIN_PASSWORD_LENGTH = 12
_COMMON_PASSWORDS = Path(__file__).with_name("common_passwords.txt")


def normalize_email(email: str) -> str:
    return email.strip().lower()


@cache
def _common_passwords() -> frozenset[str]:
    return frozenset(
        line.strip().lower() for line in _COMMON_PASSWORDS.read_text().splitlines() if line.strip()
    )


@cache
def _dummy_hash(method: str) -> str:
    """A hash of the same kind as real ones, so an unknown account costs one check too."""
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def generate_password() -> str:
    """A random password that passes `validate_password` (20 URL-safe characters)."""
    return secrets.token_urlsafe(15)


def validate_password(password: str) -> None:
    """Raise ValidationError(field="password") for a password an attacker would guess."""
    if not password.strip():
        raise ValidationError("the password may not be blank", field="password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"the password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if password.strip().lower() in _common_passwords():
        raise ValidationError(
            "that password is on a list of common passwords; choose another", field="password"
        )


def valid_email(email: str) -> str:
    """The normalised address, or ValidationError(field="email")."""
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(f"not a valid email address: {exc}", field="email") from exc
    return normalize_email(result.normalized)


def get_by_email(session: Session, email: str) -> AdminUser | None:
    return session.scalar(select(AdminUser).where(AdminUser.email == normalize_email(email)))


def new_account(session: Session, email: str, name: str, role: str) -> AdminUser:
    """An active account that signs in with a password and has none yet, added to the session
    (not audited: the caller records how it was created). Flushes; raises ValidationError for
    a bad role or email, Conflict (field "email") for a taken email."""
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    email = valid_email(email)
    if get_by_email(session, email) is not None:
        raise Conflict(f"an account for {email} already exists", field="email")
    user = AdminUser(email=email, name=name, role=role, active=True, password_hash="")
    session.add(user)
    session.flush()
    return user


def create_admin(
    session: Session,
    email: str,
    password: str | None = None,
    role: str = "admin",
    name: str = "",
    actor: AdminUser | str = "cli",
) -> tuple[AdminUser, str]:
    """Create an account; returns it with its password (generated if none was given).

    Flushes; raises ValidationError for a bad role/password, Conflict for a taken email.
    """
    user = new_account(session, email, name, role)
    if password is None:
        password = generate_password()
    validate_password(password)
    user.set_password(password)
    session.flush()
    audit.record(
        session, actor, "admin.create", "admin_user", user.id, {"email": user.email, "role": role}
    )
    return user, password


class PasswordSignInOff(DomainError):
    """The password was right, but this account may not sign in with one (it signs in with
    the identity provider, or the console is "identity provider only")."""

    status = 403
    code = "forbidden"


BREAK_GLASS_ACTION = "auth.break_glass"


def authenticate(
    session: Session,
    email: str,
    password: str,
    ip: str | None,
    idp_only: bool = False,
    idp_name: str = "your identity provider",
) -> AdminUser | None:
    """Check credentials; records `auth.login` or `auth.login_failed`. Flushes.

    An unknown account is checked against a dummy hash, so the answer takes as long as
    for a wrong password and timing does not tell which accounts exist. With `idp_only` (the
    console is "identity provider only") a right password is refused with PasswordSignInOff,
    except for a break-glass account; every sign-in of a break-glass account is also recorded
    as BREAK_GLASS_ACTION, which raises an alert (kmeweb.alerts).
    """
    user = get_by_email(session, email)
    if user is None:
        check_password_hash(_dummy_hash(hash_method()), password)
    if user is None or not user.check_password(password) or not user.active:
        audit.record(
            session,
            normalize_email(email)[:254] or "anonymous",
            "auth.login_failed",
            "admin_user",
            user.id if user else None,
            {},
            ip=ip,
        )
        return None
    if user.sign_in == SignIn.OIDC or (idp_only and not user.break_glass):
        audit.record(
            session,
            user,
            "auth.login_failed",
            "admin_user",
            user.id,
            {"reason": "password sign-in is off for this account"},
            ip=ip,
        )
        raise PasswordSignInOff(
            f"Password sign-in is turned off for this account: sign in with {idp_name}."
        )
    user.last_login_at = utcnow()
    audit.record(session, user, "auth.login", "admin_user", user.id, {}, ip=ip)
    if user.break_glass:
        audit.record(session, user, BREAK_GLASS_ACTION, "admin_user", user.id, {}, ip=ip)
    return user


def record_logout(session: Session, user: AdminUser, ip: str | None) -> None:
    """Record the sign-out and end every session of the account (copied cookies included)."""
    user.end_sessions()
    audit.record(session, user, "auth.logout", "admin_user", user.id, {}, ip=ip)


def change_password(
    session: Session, user: AdminUser, password: str, actor: AdminUser | str
) -> None:
    """Set a new password; every session of the account ends. Flushes; ValidationError."""
    validate_password(password)
    user.set_password(password)
    session.flush()
    audit.record(session, actor, "admin.password_change", "admin_user", user.id, {})


def set_active(session: Session, user: AdminUser, active: bool, actor: AdminUser | str) -> None:
    """Activate or deactivate an account; deactivating ends every session. Flushes."""
    user.active = active
    if not active:
        user.end_sessions()
    session.flush()
    action = "admin.activate" if active else "admin.deactivate"
    audit.record(session, actor, action, "admin_user", user.id, {})


def count_admins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AdminUser)) or 0
