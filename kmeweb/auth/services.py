"""Admin accounts: creation, authentication, roles."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.auth.models import ROLES, AdminUser
from kmeweb.errors import Conflict, ValidationError
from kmeweb.extensions import utcnow


def normalize_email(email: str) -> str:
    return email.strip().lower()


def get_by_email(session: Session, email: str) -> AdminUser | None:
    return session.scalar(select(AdminUser).where(AdminUser.email == normalize_email(email)))


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
    email = normalize_email(email)
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    if "@" not in email:
        raise ValidationError("a valid email address is required", field="email")
    if get_by_email(session, email) is not None:
        raise Conflict(f"an account for {email} already exists", field="email")
    if password is None:
        password = secrets.token_urlsafe(12)
    if len(password) < 8:
        raise ValidationError("the password needs at least 8 characters", field="password")
    user = AdminUser(email=email, name=name, role=role, active=True)
    user.set_password(password)
    session.add(user)
    session.flush()
    audit.record(
        session, actor, "admin.create", "admin_user", user.id, {"email": email, "role": role}
    )
    return user, password


def authenticate(session: Session, email: str, password: str, ip: str | None) -> AdminUser | None:
    """Check credentials; records `auth.login` or `auth.login_failed`. Flushes."""
    user = get_by_email(session, email)
    if user is None or not user.active or not user.check_password(password):
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
    user.last_login_at = utcnow()
    audit.record(session, user, "auth.login", "admin_user", user.id, {}, ip=ip)
    return user


def record_logout(session: Session, user: AdminUser, ip: str | None) -> None:
    audit.record(session, user, "auth.logout", "admin_user", user.id, {}, ip=ip)


def count_admins(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AdminUser)) or 0
