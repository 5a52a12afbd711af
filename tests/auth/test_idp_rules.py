"""Who the identity provider lets in, with which role: the rules on the checked claims.

The protocol side (signature, issuer, audience, expiry, state, nonce) is driven against a real
OpenID provider in tests/auth/test_oidc_browser.py; these call the service with the claims an
ID token carried, the way kmeweb.auth.oidc hands them over once they passed those checks.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from kmeweb.alerts import services as alerts
from kmeweb.alerts.models import AlertDelivery
from kmeweb.audit.models import AuditEvent
from kmeweb.auth import idp, services
from kmeweb.auth.models import AdminUser, SignIn
from kmeweb.extensions import utcnow
from tests.conftest import PASSWORD

ISSUER = "https://login.example.com"
SETTINGS = idp.IdpSettings(
    issuer=ISSUER,
    name="Example SSO",
    client_id="kmeweb",
    role_map={"kme-admins": "admin", "kme-viewers": "viewer"},
    allowed_domains=("example.com",),
)


def _claims(sub="u-1", email="ana@example.com", groups=("kme-admins",), **over) -> dict:
    return {
        "sub": sub,
        "email": email,
        "email_verified": True,
        "name": "Ana",
        "groups": list(groups),
        **over,
    }


def _actions(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_first_sign_in_creates_the_account_with_the_role_its_groups_give(session):
    user = idp.sign_in(session, SETTINGS, _claims(groups=["kme-viewers", "staff"]), "10.0.0.9")
    session.commit()
    assert (user.email, user.role, user.sign_in, user.name) == (
        "ana@example.com",
        "viewer",
        SignIn.OIDC,
        "Ana",
    )
    assert not user.has_password and user.last_login_at is not None
    [login] = _actions(session, "auth.login")
    assert login.details == {"method": "oidc", "role": "viewer"} and login.ip == "10.0.0.9"
    [created] = _actions(session, "admin.create")
    assert created.actor == idp.ACTOR


def test_the_role_is_recomputed_at_every_sign_in_and_no_mapped_group_means_no_access(session):
    user = idp.sign_in(session, SETTINGS, _claims(groups=["kme-admins", "kme-viewers"]), None)
    assert user.role == "admin"
    user = idp.sign_in(session, SETTINGS, _claims(groups=["kme-viewers"]), None)
    assert user.role == "viewer"
    [change] = _actions(session, "admin.role_change")
    assert (change.details["from"], change.details["to"]) == ("admin", "viewer")
    with pytest.raises(idp.SignInRefused, match="in no group that may use this console"):
        idp.sign_in(session, SETTINGS, _claims(groups=["staff"]), None)
    session.commit()
    [failed] = _actions(session, "auth.login_failed")
    assert "no group" in failed.details["reason"]
    assert session.scalar(select(AdminUser.role)) == "viewer"  # nothing else changed


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (_claims(email="eve@elsewhere.org"), "Accounts of elsewhere.org may not sign in"),
        (_claims(email_verified=False), "has not verified the email address"),
        (_claims(email=""), "did not tell kmeweb your email address"),
    ],
)
def test_refused_identities(session, claims, message):
    with pytest.raises(idp.SignInRefused, match=message):
        idp.sign_in(session, SETTINGS, claims, None)
    assert session.scalar(select(AdminUser.id)) is None


def test_without_account_creation_only_accounts_an_admin_added_get_in(session, make_admin):
    settings = idp.IdpSettings(**{**SETTINGS.__dict__, "create_accounts": False})
    with pytest.raises(idp.SignInRefused, match="no console account for ana@example.com"):
        idp.sign_in(session, settings, _claims(), None)
    added = make_admin("ana@example.com", role="viewer")
    user = idp.sign_in(session, settings, _claims(sub="sub-77"), None)
    assert user.id == added.id
    assert (user.oidc_issuer, user.oidc_subject, user.role) == (ISSUER, "sub-77", "admin")
    # linked to the provider: the old password no longer signs in
    assert user.sign_in == SignIn.OIDC and not user.check_password(PASSWORD)
    assert _actions(session, "admin.linked")


def test_a_linked_account_is_found_by_subject_even_after_an_email_change(session):
    first = idp.sign_in(session, SETTINGS, _claims(sub="s-9"), None)
    again = idp.sign_in(session, SETTINGS, _claims(sub="s-9", email="ana.new@example.com"), None)
    assert again.id == first.id


def test_another_subject_cannot_take_over_a_linked_email(session):
    idp.sign_in(session, SETTINGS, _claims(sub="s-1"), None)
    with pytest.raises(idp.SignInRefused, match="belongs to another Example SSO user"):
        idp.sign_in(session, SETTINGS, _claims(sub="s-2"), None)


def test_deactivated_and_break_glass_accounts_do_not_sign_in_through_the_provider(
    session, make_admin
):
    user = idp.sign_in(session, SETTINGS, _claims(), None)
    services.set_active(session, user, False, "test")
    with pytest.raises(idp.SignInRefused, match="deactivated"):
        idp.sign_in(session, SETTINGS, _claims(), None)
    keeper = make_admin("keeper@example.com")
    keeper.break_glass = True
    with pytest.raises(idp.SignInRefused, match="break-glass account"):
        idp.sign_in(session, SETTINGS, _claims(sub="k", email="keeper@example.com"), None)


def test_identity_provider_only_refuses_passwords_except_break_glass_which_is_alerted(
    session, make_admin
):
    make_admin("ops@example.com")
    keeper = make_admin("keeper@example.com")
    keeper.break_glass = True
    destination = alerts.create_destination(
        session,
        {"name": "SOC", "url": "https://hooks.example.com/x", "events": ["token_expired"]},
        "test",
    )
    destination.created_at = utcnow() - timedelta(minutes=5)
    session.commit()

    with pytest.raises(services.PasswordSignInOff, match="sign in with Example SSO"):
        services.authenticate(
            session, "ops@example.com", PASSWORD, None, idp_only=True, idp_name="Example SSO"
        )
    # a wrong password is the usual "not correct", whatever the mode
    assert (
        services.authenticate(session, "ops@example.com", "wrong" * 4, None, idp_only=True) is None
    )
    user = services.authenticate(session, "keeper@example.com", PASSWORD, "10.1.2.3", idp_only=True)
    session.commit()
    assert user is not None and user.email == "keeper@example.com"
    [event] = _actions(session, services.BREAK_GLASS_ACTION)
    assert event.ip == "10.1.2.3"

    # the destination subscribed to token alerts only, and still hears of it
    alerts.evaluate(session, utcnow())
    session.commit()
    [delivery] = session.scalars(select(AlertDelivery))
    assert delivery.event == "break_glass_sign_in"
    assert "keeper@example.com signed in with its password" in delivery.payload["text"]
    assert "10.1.2.3" in delivery.payload["text"]
    assert alerts.evaluate(session, utcnow()) == []  # once per sign-in


def test_an_identity_provider_account_has_no_password_to_sign_in_with(session):
    idp.sign_in(session, SETTINGS, _claims(), None)
    assert services.authenticate(session, "ana@example.com", "", None) is None
    assert services.authenticate(session, "ana@example.com", PASSWORD, None) is None
