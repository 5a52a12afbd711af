"""Resellers: their preferences (auto-approve, default profile) and the Resellers tab.

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses. Preferences are local only: the pull applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def patch_reseller_preferences(
    session: Session, reseller_id: int, changes: Mapping[str, Any], actor: Any
) -> Reseller:
    """set_reseller_preferences with only the preferences in `changes` (auto_approve,
    default_profile_id: None is the Default Profile); the others keep their value. A None
    auto_approve keeps it too. Raises what set_reseller_preferences raises."""
    reseller = get_reseller_or_404(session, reseller_id)
    auto_approve = changes.get("auto_approve")
    return set_reseller_preferences(
        session,
        reseller.id,
        reseller.auto_approve if auto_approve is None else auto_approve,
        changes.get("default_profile_id", reseller.default_profile_id),
        actor,
    )


def _searched(stmt: Select, search: str | None) -> Select:
    search = (search or "").strip()
    if not search:
        return stmt
    return stmt.where(
        or_(
            Reseller.name.icontains(search, autoescape=True),
            Reseller.kme_reseller_id.icontains(search, autoescape=True),
        )
    )


def list_resellers_query(search: str | None = None) -> Select:
    """Rows (Reseller, default profile name) for the Resellers tab, by name; `search` matches
    the name or the Knox reseller id."""
    stmt = (
        select(Reseller, Profile.name.label("profile_name"))
        .outerjoin(Profile, Reseller.default_profile_id == Profile.id)
        .order_by(func.lower(Reseller.name), Reseller.id)
    )
    return _searched(stmt, search)


def reseller_rows(search: str | None = None) -> Select:
    """Rows (reseller id, Reseller, default profile name) matching `search` as the Resellers
    tab's search does, for a list paged by reseller id (the JSON API)."""
    stmt = select(Reseller.id, Reseller, Profile.name.label("profile_name")).outerjoin(
        Profile, Reseller.default_profile_id == Profile.id
    )
    return _searched(stmt, search)


def reseller_with_profile(session: Session, reseller_id: int) -> tuple[Reseller, str | None]:
    """The reseller and the name of its default profile (None: the Default Profile).
    Raises NotFound."""
    reseller = get_reseller_or_404(session, reseller_id)
    if reseller.default_profile_id is None:
        return reseller, None
    return reseller, profile_names(session, [reseller.default_profile_id]).get(
        reseller.default_profile_id
    )


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
