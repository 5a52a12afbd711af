"""Sign-in with the company's identity provider: who may come in, with which role.

The provider decides every time. Its ID token (checked by kmeweb.auth.oidc: signature against
the provider's keys, issuer, audience, expiry, nonce) names the person; here the claims are
turned into a console account: the email must be verified and in an allowed domain, the groups
must map to a role, and the role is recomputed at each sign-in (removed from the admin group →
a viewer at the next sign-in; from every mapped group → no access).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.auth.models import AdminUser, SignIn
from kmeweb.auth.services import get_by_email, normalize_email
from kmeweb.errors import DomainError
from kmeweb.extensions import utcnow

ACTOR = "identity provider"


class SignInRefused(DomainError):
    """The provider's answer does not let this person in; the message says why, for them."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class IdpSettings:
    """The identity provider as configured (KMEWEB_OIDC_*; see config.py and the README)."""

    issuer: str = ""
    name: str = "your identity provider"
    client_id: str = ""
    groups_claim: str = "groups"
    role_map: Mapping[str, str] = field(default_factory=dict)
    allowed_domains: tuple[str, ...] = ()
    create_accounts: bool = True
    only: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> IdpSettings:
        return cls(
            issuer=config.get("OIDC_ISSUER", ""),
            name=config.get("OIDC_NAME") or "your identity provider",
            client_id=config.get("OIDC_CLIENT_ID", ""),
            groups_claim=config.get("OIDC_GROUPS_CLAIM") or "groups",
            role_map=dict(config.get("OIDC_ROLE_MAP") or {}),
            allowed_domains=tuple(config.get("OIDC_ALLOWED_DOMAINS") or ()),
            create_accounts=bool(config.get("OIDC_CREATE_ACCOUNTS", True)),
            only=bool(config.get("OIDC_ONLY", False)) and bool(config.get("OIDC_ISSUER")),
        )

    def role_for(self, groups: list[str]) -> str | None:
        """The strongest role any of `groups` maps to: admin over viewer; None for none."""
        roles = {self.role_map[g] for g in groups if g in self.role_map}
        for role in ("admin", "viewer"):
            if role in roles:
                return role
        return None


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str
    name: str
    groups: list[str]
    role: str


def _groups(claims: Mapping[str, Any], claim: str) -> list[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(g) for g in value]
    return []


def identity(settings: IdpSettings, claims: Mapping[str, Any]) -> Identity:
    """The person the checked claims name, or SignInRefused saying why not."""
    subject = str(claims.get("sub") or "")
    email = normalize_email(str(claims.get("email") or ""))
    if not subject or "@" not in email:
        raise SignInRefused(
            f"{settings.name} did not tell kmeweb your email address: ask its administrator to "
            "release the email claim to kmeweb."
        )
    if claims.get("email_verified") is False:
        raise SignInRefused(f"{settings.name} has not verified the email address {email}.")
    domain = email.rpartition("@")[2]
    if settings.allowed_domains and domain not in settings.allowed_domains:
        raise SignInRefused(f"Accounts of {domain} may not sign in to this console.")
    groups = _groups(claims, settings.groups_claim)
    role = settings.role_for(groups)
    if role is None:
        raise SignInRefused(
            f"Your account at {settings.name} is in no group that may use this console; ask "
            "your administrator to add you to one."
        )
    name = str(claims.get("name") or "").strip()[:120]
    return Identity(subject, email, name, groups, role)


def _refuse(session: Session, who: str, user: AdminUser | None, reason: str, ip: str | None):
    audit.record(
        session,
        who[:254] or "anonymous",
        "auth.login_failed",
        "admin_user",
        user.id if user else None,
        {"method": SignIn.OIDC.value, "reason": reason},
        ip=ip,
    )
    return SignInRefused(reason)


def refuse(session: Session, claims_email: str, reason: str, ip: str | None) -> SignInRefused:
    """Record a sign-in the provider's answer did not allow (bad token, refused, ...)."""
    return _refuse(session, normalize_email(claims_email), None, reason, ip)


def sign_in(
    session: Session, settings: IdpSettings, claims: Mapping[str, Any], ip: str | None
) -> AdminUser:
    """The account the provider's checked claims sign in to, created or updated; flushes.

    Raises SignInRefused (recorded in the audit log) when the person may not come in.
    """
    try:
        person = identity(settings, claims)
    except SignInRefused as exc:
        raise _refuse(session, str(claims.get("email") or ""), None, exc.message, ip) from None
    user = session.scalar(
        select(AdminUser).where(
            AdminUser.oidc_issuer == settings.issuer, AdminUser.oidc_subject == person.subject
        )
    )
    if user is None:
        user = get_by_email(session, person.email)
        if user is not None and user.oidc_subject and user.oidc_issuer == settings.issuer:
            reason = f"The account {person.email} belongs to another {settings.name} user."
            raise _refuse(session, person.email, user, reason, ip)
        if user is not None and user.break_glass:
            reason = "This is a break-glass account: it signs in with its password only."
            raise _refuse(session, person.email, user, reason, ip)
    if user is None:
        if not settings.create_accounts:
            reason = f"There is no console account for {person.email}: ask an admin to add one."
            raise _refuse(session, person.email, None, reason, ip)
        user = _create(session, settings, person)
    elif not user.active:
        raise _refuse(session, person.email, user, "This console account is deactivated.", ip)
    _update(session, settings, user, person)
    user.last_login_at = utcnow()
    audit.record(
        session,
        user,
        "auth.login",
        "admin_user",
        user.id,
        {"method": SignIn.OIDC.value, "role": user.role},
        ip=ip,
    )
    return user


def _create(session: Session, settings: IdpSettings, person: Identity) -> AdminUser:
    user = AdminUser(
        email=person.email,
        name=person.name,
        role=person.role,
        active=True,
        password_hash="",
        sign_in=SignIn.OIDC,
        oidc_issuer=settings.issuer,
        oidc_subject=person.subject,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        ACTOR,
        "admin.create",
        "admin_user",
        user.id,
        {"email": person.email, "role": person.role, "method": SignIn.OIDC.value},
    )
    return user


def _update(session: Session, settings: IdpSettings, user: AdminUser, person: Identity) -> None:
    """Link the account to the provider's subject and take the role its groups give now."""
    if user.oidc_subject != person.subject or user.sign_in != SignIn.OIDC:
        linked_from = user.sign_in
        user.oidc_issuer = settings.issuer
        user.oidc_subject = person.subject
        user.sign_in = SignIn.OIDC
        user.password_hash = ""  # the provider decides from now on; no password to forget
        user.password_link_hash = None
        audit.record(
            session,
            ACTOR,
            "admin.linked",
            "admin_user",
            user.id,
            {"email": person.email, "from": linked_from},
        )
    if person.name and user.name != person.name:
        user.name = person.name
    if user.role != person.role:
        audit.record(
            session,
            ACTOR,
            "admin.role_change",
            "admin_user",
            user.id,
            {"from": user.role, "to": person.role, "groups": person.groups[:20]},
        )
        user.role = person.role
    session.flush()
