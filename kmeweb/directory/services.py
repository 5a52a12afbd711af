"""End users that profiles and devices can be associated with."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from kmeweb.directory.models import EndUser
from kmeweb.errors import NotFound, ValidationError

USERNAME_MAX = 254


def get_user_or_404(session: Session, end_user_id: int) -> EndUser:
    """Raises NotFound."""
    user = session.get(EndUser, end_user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def find_user(session: Session, username: str) -> EndUser | None:
    """The user with this username, compared case-insensitively."""
    name = (username or "").strip()
    if not name:
        return None
    return session.scalar(
        select(EndUser)
        .where(func.lower(EndUser.username) == name.lower())
        .order_by(EndUser.id)
        .limit(1)
    )


def get_or_create_user(
    session: Session,
    username: str,
    email: str | None = None,
    display_name: str | None = None,
) -> EndUser:
    """The user named `username` (case-insensitive), created if missing.

    A given email or display name replaces the stored one. Flushes; raises ValidationError
    (field "username", "email" or "display_name") for an empty or over-long value.
    """
    name = (username or "").strip()
    if not name:
        raise ValidationError("A username is required.", field="username")
    if len(name) > USERNAME_MAX:
        raise ValidationError(
            f"The username can have at most {USERNAME_MAX} characters.", field="username"
        )
    email = (email or "").strip() or None
    if email is not None and (len(email) > 254 or "@" not in email):
        raise ValidationError("Enter a valid email address.", field="email")
    display_name = (display_name or "").strip() or None
    if display_name is not None and len(display_name) > 200:
        raise ValidationError(
            "The display name can have at most 200 characters.", field="display_name"
        )
    user = find_user(session, name)
    if user is None:
        user = EndUser(username=name, email=email, display_name=display_name)
        session.add(user)
    else:
        if email is not None:
            user.email = email
        if display_name is not None:
            user.display_name = display_name
    session.flush()
    return user


def search_users(session: Session, q: str, limit: int = 20) -> list[EndUser]:
    """Users whose username, email or display name contains `q` (case-insensitive), by name.

    An empty query returns the first `limit` users.
    """
    stmt = select(EndUser).order_by(EndUser.username).limit(max(1, min(limit, 200)))
    q = (q or "").strip()
    if q:
        stmt = stmt.where(
            or_(
                EndUser.username.icontains(q, autoescape=True),
                EndUser.email.icontains(q, autoescape=True),
                EndUser.display_name.icontains(q, autoescape=True),
            )
        )
    return list(session.scalars(stmt))
