"""Resellers: their preferences (auto-approve, default profile) and the Resellers tab.

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses. Preferences are local only: the pull applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.errors import NotFound, ValidationError
from kmeweb.integration.models import Reseller
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import KME_KINDS, list_profiles_query


def set_reseller_preferences(
    session: Session,
    reseller_id: int,
    auto_approve: bool,
    default_profile_id: int | None,
    actor: Any,
) -> Reseller:
    """Set whether the reseller's uploads are approved automatically and which profile its
    approved devices land in (None = the Default Profile).

    Local only (the pull applies them). Records audit "reseller.preferences". Flushes.
    Raises NotFound, or ValidationError (field "default_profile_id") for a profile that is not
    a KME profile.
    """
    reseller = session.get(Reseller, reseller_id)
    if reseller is None:
        raise NotFound("No such reseller.")
    if default_profile_id is not None:
        profile = session.get(Profile, default_profile_id)
        if profile is None or profile.kind not in KME_KINDS:
            raise ValidationError(
                "Choose a Samsung Knox Mobile Enrollment profile.", field="default_profile_id"
            )
    old = {"auto_approve": reseller.auto_approve, "default_profile_id": reseller.default_profile_id}
    reseller.auto_approve = bool(auto_approve)
    reseller.default_profile_id = default_profile_id
    session.flush()
    audit.record(
        session,
        actor,
        "reseller.preferences",
        "reseller",
        reseller.id,
        {
            "reseller": reseller.kme_reseller_id,
            "old": old,
            "auto_approve": reseller.auto_approve,
            "default_profile_id": default_profile_id,
        },
    )
    return reseller


def list_resellers_query(search: str | None = None) -> Select:
    """Rows (Reseller, default profile name) for the Resellers tab, by name; `search` matches
    the name or the Knox reseller id."""
    stmt = (
        select(Reseller, Profile.name.label("profile_name"))
        .outerjoin(Profile, Reseller.default_profile_id == Profile.id)
        .order_by(func.lower(Reseller.name), Reseller.id)
    )
    search = (search or "").strip()
    if search:
        stmt = stmt.where(
            or_(
                Reseller.name.icontains(search, autoescape=True),
                Reseller.kme_reseller_id.icontains(search, autoescape=True),
            )
        )
    return stmt


def get_reseller_or_404(session: Session, reseller_id: int) -> Reseller:
    """Raises NotFound."""
    reseller = session.get(Reseller, reseller_id)
    if reseller is None:
        raise NotFound("No such reseller.")
    return reseller


def kme_profile_choices(session: Session) -> list[tuple[int, str]]:
    """(id, name) of every KME profile but the Default Profile, by name (the Default profile
    select offers the Default Profile as "no default")."""
    stmt = list_profiles_query().where(Profile.kind == ProfileKind.KME)
    return [(p.id, p.name) for p in session.scalars(stmt)]


def profile_names(session: Session, profile_ids: Iterable[int]) -> dict[int, str]:
    """{profile id: name} for the profiles a page shows."""
    ids = list(dict.fromkeys(profile_ids))
    if not ids:
        return {}
    return dict(session.execute(select(Profile.id, Profile.name).where(Profile.id.in_(ids))).all())


def default_profile_choice(session: Session, reseller: Reseller) -> str:
    """The Default profile select's value for a reseller: "" for the Default Profile."""
    if reseller.default_profile_id is None:
        return ""
    profile = session.get(Profile, reseller.default_profile_id)
    if profile is None or profile.kind != ProfileKind.KME:
        return ""
    return str(profile.id)
