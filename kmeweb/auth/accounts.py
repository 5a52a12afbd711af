"""Console accounts as an admin manages them (Admin › Accounts and the account commands of
kmeweb/cli.py), and the one-time set-password link.

- A password account gets its first or next password as a one-time **set-password link**
  (the default: valid 72 hours, replaced by a newer one, only its SHA-256 kept, like an API
  token's secret) or as a **generated password**. Either comes back once, in a `Secret`, for
  the caller to show once; neither is stored readable.
- An identity-provider account has no password: the provider's sign-in (kmeweb.auth's OIDC
  part) links it to the provider's subject. Only a password account can be break-glass.
- The **last active admin** is never demoted or deactivated (Conflict): someone must be left
  who can manage accounts. Only the shell, which can always `create-admin` again, may pass
  `allow_no_admin`. The check holds a lock to the end of the transaction, so two admins
  demoting each other at once cannot both succeed (`_keep_an_admin`).
- A reset password, a used link, deactivation and "end sessions" each end every session of
  the account (AdminUser.end_sessions: its cookies, remember-me included, stop working).

Every change is audited in the caller's transaction; services flush and never commit.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.auth.models import ROLES, AdminUser, SignIn
from kmeweb.auth.services import (
    generate_password,
    get_by_email,
    new_account,
    valid_email,
    validate_password,
)
from kmeweb.enums import Choice
from kmeweb.errors import Conflict, ErrorCollector, NotFound, ValidationError
from kmeweb.extensions import utcnow

ADMIN = "admin"
LINK_VALID = timedelta(hours=72)
NAME_MAX = 120
SEARCH_MAX = 120

Actor = AdminUser | str


class AccountStatus(Choice):
    """Where an account stands, as the list shows and filters it: worked out from its columns,
    never stored (so it lives here, not in models.py)."""

    ACTIVE = "active", "Active"
    WAITING = "waiting", "Waiting for a password"
    DEACTIVATED = "deactivated", "Deactivated"


class Credential(Choice):
    """How a password account gets its password from an admin."""

    LINK = "link", "A one-time set-password link"
    PASSWORD = "password", "A generated password"


@dataclass(frozen=True)
class Secret:
    """A set-password link's token or a generated password: returned once, never stored."""

    kind: Credential
    value: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class NewAccount:
    account: AdminUser
    secret: Secret | None  # None for an identity-provider account


def hash_link_token(token: str) -> str:
    """The stored form of a link token: SHA-256 (256 random bits need no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def account_status(account: AdminUser) -> AccountStatus:
    if not account.active:
        return AccountStatus.DEACTIVATED
    if account.sign_in == SignIn.PASSWORD and not account.has_password:
        return AccountStatus.WAITING
    return AccountStatus.ACTIVE


def parse_status(value: Any) -> AccountStatus | None:
    """A status filter value, or None for "any" (an unknown value too: the form says so)."""
    return AccountStatus(value) if value in AccountStatus.labels() else None


def accounts_query(search: str | None = None, status: str | None = None) -> Select:
    """Every console account whose name or email contains `search` (case-insensitive), in
    the status `status` names (any when None); ordered by email."""
    stmt = select(AdminUser).order_by(AdminUser.email, AdminUser.id)
    q = (search or "").strip()
    if q:
        stmt = stmt.where(
            or_(
                AdminUser.name.icontains(q, autoescape=True),
                AdminUser.email.icontains(q, autoescape=True),
            )
        )
    waiting = (AdminUser.sign_in == SignIn.PASSWORD) & (AdminUser.password_hash == "")
    match parse_status(status):
        case AccountStatus.ACTIVE:
            stmt = stmt.where(AdminUser.active.is_(True), ~waiting)
        case AccountStatus.WAITING:
            stmt = stmt.where(AdminUser.active.is_(True), waiting)
        case AccountStatus.DEACTIVATED:
            stmt = stmt.where(AdminUser.active.is_(False))
    return stmt


def get_account(session: Session, account_id: int) -> AdminUser:
    """The account, or NotFound."""
    account = session.get(AdminUser, account_id)
    if account is None:
        raise NotFound("No such account.")
    return account


def active_admins(session: Session) -> int:
    """How many active accounts are admins."""
    stmt = select(func.count()).where(AdminUser.active.is_(True), AdminUser.role == ADMIN)
    return session.scalar(stmt) or 0


def _role(value: Any) -> str:
    if value not in ROLES:
        raise ValidationError("Choose admin or viewer.", field="role")
    return str(value)


def _sign_in(value: Any) -> SignIn:
    if value not in SignIn.labels():
        raise ValidationError("Choose how the account signs in.", field="sign_in")
    return SignIn(value)


def _credential(value: Any) -> Credential:
    if value not in Credential.labels():
        raise ValidationError("Choose a link or a generated password.", field="credential")
    return Credential(value)


def _name(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if len(name) > NAME_MAX:
        raise ValidationError(f"At most {NAME_MAX} characters.", field="name")
    return name


def _email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Enter the email address the person signs in with.", field="email")
    return valid_email(value)


def _issue(account: AdminUser, credential: Credential, password: str | None) -> Secret:
    """Give `account` a new link or password (the old password stops working either way) and
    end its sessions."""
    if credential == Credential.LINK:
        token = secrets.token_urlsafe(32)
        account.password_hash = ""
        account.password_link_hash = hash_link_token(token)
        account.password_link_expires_at = utcnow() + LINK_VALID
        account.end_sessions()
        return Secret(credential, token, account.password_link_expires_at)
    password = generate_password() if password is None else password
    validate_password(password)
    account.set_password(password)  # ends its sessions
    account.password_link_hash = account.password_link_expires_at = None
    return Secret(credential, password)


def add_account(
    session: Session,
    actor: Actor,
    email: Any,
    name: Any = "",
    role: Any = ADMIN,
    sign_in: Any = SignIn.PASSWORD,
    credential: Any = Credential.LINK,
    password: str | None = None,
) -> NewAccount:
    """Add an active account. A password account gets a set-password link or a password
    (`password`, or a generated one), returned once in the result; an identity-provider
    account gets neither. Records "admin.create". Flushes.
    Raises ValidationError (fields "email", "name", "role", "sign_in", "credential",
    "password"), Conflict (field "email": the address has an account)."""
    errors = ErrorCollector()
    clean_email = errors.check(_email, email)
    clean_name = errors.check(_name, name)
    clean_role = errors.check(_role, role)
    how = errors.check(_sign_in, sign_in)
    kind = errors.check(_credential, credential) if how == SignIn.PASSWORD else None
    errors.raise_any()
    if get_by_email(session, clean_email) is not None:
        raise Conflict(f"An account for {clean_email} already exists.", field="email")
    account = new_account(session, clean_email, clean_name, clean_role)
    account.sign_in = how
    secret = _issue(account, kind, password) if kind is not None else None
    session.flush()
    details = {"email": account.email, "name": account.name, "role": account.role}
    audit.record(
        session,
        actor,
        "admin.create",
        "admin_user",
        account.id,
        {**details, "sign_in": how.value, "delivery": kind.value if kind else None},
    )
    return NewAccount(account, secret)


def _is_actor(account: AdminUser, actor: Actor) -> bool:
    return isinstance(actor, AdminUser) and actor.id == account.id


def _keep_an_admin(
    session: Session, account: AdminUser, actor: Actor, doing: str, field: str | None = None
) -> None:
    """Conflict when `account` is the last active admin. Two admins demoting each other at
    once must not both pass, so the check holds a lock until the transaction ends: FOR UPDATE
    on the active admins' rows, in id order (PostgreSQL: the second check waits, then sees
    the first one's change); SQLite's reads take no lock, so a write comes first there, which
    makes this transaction the database's only writer until it ends."""
    if not (account.active and account.role == ADMIN):
        return
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(AdminUser)
            .where(AdminUser.id == account.id)
            .values(role=AdminUser.role)
            .execution_options(synchronize_session=False)
        )
    admins = session.scalars(
        select(AdminUser.id)
        .where(AdminUser.active.is_(True), AdminUser.role == ADMIN)
        .order_by(AdminUser.id)
        .with_for_update()
    ).all()
    if any(admin_id != account.id for admin_id in admins):
        return
    if _is_actor(account, actor):
        message = (
            f"You are the last active admin: make another account an admin before you "
            f"{doing} yourself."
        )
    else:
        message = (
            f"{account.display} is the last active admin: make another account an admin "
            f"before you {doing} it."
        )
    raise Conflict(message, field=field)


def change_role(session: Session, actor: Actor, account: AdminUser, role: Any) -> bool:
    """Make the account an admin or a viewer (it takes effect at its next request); False
    when it already had that role. Records "admin.role_change" with from and to. Flushes.
    Raises ValidationError (field "role"), Conflict (field "role": the last active admin)."""
    new_role = _role(role)
    if new_role == account.role:
        return False
    if new_role != ADMIN:
        _keep_an_admin(session, account, actor, "demote", field="role")
    before = account.role
    account.role = new_role
    session.flush()
    audit.record(
        session,
        actor,
        "admin.role_change",
        "admin_user",
        account.id,
        {"email": account.email, "from": before, "to": new_role},
    )
    return True


def deactivate(
    session: Session, actor: Actor, account: AdminUser, allow_no_admin: bool = False
) -> bool:
    """Deactivate: its sessions end at once, a pending set-password link stops working, and
    it cannot sign in until reactivated; False when it already was. Records
    "admin.deactivate". Flushes. Raises Conflict (the last active admin; the shell may pass
    `allow_no_admin`)."""
    if not account.active:
        return False
    if not allow_no_admin:
        _keep_an_admin(session, account, actor, "deactivate")
    account.active = False
    account.end_sessions()
    account.password_link_hash = account.password_link_expires_at = None
    session.flush()
    audit.record(
        session, actor, "admin.deactivate", "admin_user", account.id, {"email": account.email}
    )
    return True


def activate(session: Session, actor: Actor, account: AdminUser) -> bool:
    """Reactivate (it signs in as before); False when it was active. Records
    "admin.activate". Flushes."""
    if account.active:
        return False
    account.active = True
    session.flush()
    audit.record(
        session, actor, "admin.activate", "admin_user", account.id, {"email": account.email}
    )
    return True


def reset_password(
    session: Session,
    actor: Actor,
    account: AdminUser,
    credential: Any = Credential.LINK,
    password: str | None = None,
) -> Secret:
    """A new set-password link or password (`password`, or a generated one) for a password
    account: the old password stops working and every session ends. Records
    "admin.password_reset". Flushes. Raises ValidationError (fields "credential",
    "password"), Conflict (an identity-provider account has no password)."""
    kind = _credential(credential)
    if account.sign_in != SignIn.PASSWORD:
        raise Conflict(
            f"{account.display} signs in with the identity provider: there is no password to reset."
        )
    secret = _issue(account, kind, password)
    session.flush()
    audit.record(
        session,
        actor,
        "admin.password_reset",
        "admin_user",
        account.id,
        {"email": account.email, "delivery": kind.value},
    )
    return secret


def end_sessions(session: Session, actor: Actor, account: AdminUser) -> None:
    """End every session of the account on every browser (remember-me cookies too); it can
    sign in again. Records "admin.sessions_end". Flushes."""
    account.end_sessions()
    session.flush()
    audit.record(
        session, actor, "admin.sessions_end", "admin_user", account.id, {"email": account.email}
    )


def set_break_glass(session: Session, actor: Actor, account: AdminUser, on: bool) -> bool:
    """Mark or unmark the account as break-glass (may sign in with its password while the
    console is identity-provider only); False when nothing changed. Records
    "admin.break_glass" with from and to. Flushes. Raises Conflict (field "break_glass": only
    a password account can be break-glass)."""
    if bool(account.break_glass) == on:
        return False
    if on and account.sign_in != SignIn.PASSWORD:
        raise Conflict(
            "Only an account that signs in with a password can be break-glass.",
            field="break_glass",
        )
    account.break_glass = on
    session.flush()
    audit.record(
        session,
        actor,
        "admin.break_glass",
        "admin_user",
        account.id,
        {"email": account.email, "from": not on, "to": on},
    )
    return True


LINK_UNKNOWN = "It was used already, or a newer link replaced it. Ask an admin for a new one."


def account_for_link(session: Session, token: str) -> AdminUser:
    """The account a set-password link is for, while the link works. Raises NotFound with a
    message for the person holding it: unknown or used, expired, or the account deactivated."""
    if not token or len(token) > 200:
        raise NotFound(LINK_UNKNOWN)
    account = session.scalar(
        select(AdminUser).where(AdminUser.password_link_hash == hash_link_token(token))
    )
    if account is None:
        raise NotFound(LINK_UNKNOWN)
    if not account.active:
        raise NotFound("The account is deactivated. Ask an admin to reactivate it.")
    expires = account.password_link_expires_at
    if expires is None:
        raise NotFound(LINK_UNKNOWN)
    if expires <= utcnow():
        hours = int(LINK_VALID.total_seconds() // 3600)
        raise NotFound(
            f"It expired on {expires:%Y-%m-%d %H:%M} UTC (a link works for {hours} "
            "hours). Ask an admin for a new one."
        )
    return account


def set_password_with_link(
    session: Session, token: str, password: str, confirm: str | None = None
) -> AdminUser:
    """Choose a password through a set-password link: the link is used up (once, even
    under two requests at the same moment), every session of the account ends. Records
    "admin.password_set" by the account itself. Flushes.
    Raises NotFound (the link does not work: see `account_for_link`), ValidationError
    (fields "password", "confirm")."""
    account = account_for_link(session, token)
    errors = ErrorCollector()
    errors.check(validate_password, password)
    if confirm is not None and confirm != password:
        errors.add("The two passwords are not the same.", field="confirm")
    errors.raise_any()
    link_hash = hash_link_token(token)
    claimed = session.execute(
        update(AdminUser)
        .where(AdminUser.id == account.id, AdminUser.password_link_hash == link_hash)
        .values(password_link_hash=None, password_link_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        raise NotFound(LINK_UNKNOWN)
    account.password_link_hash = account.password_link_expires_at = None
    account.set_password(password)  # ends its sessions
    session.flush()
    audit.record(session, account, "admin.password_set", "admin_user", account.id, {"via": "link"})
    return account
