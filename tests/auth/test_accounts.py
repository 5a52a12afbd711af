"""The account services of Admin › Accounts (kmeweb.auth.accounts): adding with a one-time
set-password link or a generated password, the link used once and expiring, roles, the last
active admin kept, reset, sessions, break-glass, and an audit event for each change."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.auth import accounts, services
from kmeweb.auth.accounts import AccountStatus, Credential
from kmeweb.auth.models import AdminUser, SignIn
from kmeweb.errors import Conflict, NotFound, ValidationError
from kmeweb.extensions import db, utcnow
from kmeweb.pagination import paginate

NEW_PASSWORD = "a long new passphrase"


def _events(session, action: str) -> list[AuditEvent]:
    session.flush()
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def _signs_in(session, email: str, password: str) -> bool:
    return services.authenticate(session, email, password, None) is not None


@pytest.fixture
def boss(make_admin) -> AdminUser:
    return make_admin("boss@example.com", "admin")


def test_a_new_account_gets_a_link_that_only_its_hash_is_kept_of(session, boss):
    added = accounts.add_account(session, boss, " Jane@Example.com ", "Jane Doe", "viewer")
    session.commit()
    jane, secret = added.account, added.secret
    assert secret is not None and secret.kind == Credential.LINK and len(secret.value) >= 40
    assert (jane.email, jane.name, jane.role, jane.sign_in) == (
        "jane@example.com",
        "Jane Doe",
        "viewer",
        SignIn.PASSWORD,
    )
    assert jane.password_link_hash == accounts.hash_link_token(secret.value) != secret.value
    assert (
        timedelta(hours=71, minutes=59)
        < jane.password_link_expires_at - utcnow()
        <= (timedelta(hours=72))
    )
    assert accounts.account_status(jane) == AccountStatus.WAITING
    assert not _signs_in(session, "jane@example.com", "")  # no password until the link is used
    [event] = _events(session, "admin.create")[1:]  # the first is boss's own
    assert (event.actor, event.target_id) == ("boss@example.com", str(jane.id))
    assert event.details == {
        "email": "jane@example.com",
        "name": "Jane Doe",
        "role": "viewer",
        "sign_in": "password",
        "delivery": "link",
    }
    assert secret.value not in str(event.details)


def test_the_link_sets_a_password_once_ends_sessions_and_is_audited(session, boss):
    added = accounts.add_account(session, boss, "jane@example.com", role="admin")
    session.commit()
    jane, token = added.account, added.secret.value
    before = jane.session_token
    assert accounts.account_for_link(session, token) is jane

    accounts.set_password_with_link(session, token, NEW_PASSWORD, NEW_PASSWORD)
    session.commit()
    assert jane.session_token != before
    assert jane.password_link_hash is None and jane.password_link_expires_at is None
    assert accounts.account_status(jane) == AccountStatus.ACTIVE
    assert _signs_in(session, "jane@example.com", NEW_PASSWORD)
    [event] = _events(session, "admin.password_set")
    assert (event.actor, event.target_id, event.details) == (
        "jane@example.com",
        str(jane.id),
        {"via": "link"},
    )

    with pytest.raises(NotFound) as used:
        accounts.set_password_with_link(session, token, "another long passphrase")
    assert "used already" in used.value.message
    session.rollback()
    assert _signs_in(session, "jane@example.com", NEW_PASSWORD)


def test_an_expired_link_says_so_and_sets_nothing(session, boss):
    added = accounts.add_account(session, boss, "jane@example.com")
    added.account.password_link_expires_at = utcnow() - timedelta(minutes=1)
    session.commit()
    with pytest.raises(NotFound) as expired:
        accounts.set_password_with_link(session, added.secret.value, NEW_PASSWORD)
    assert "It expired on" in expired.value.message
    assert "a link works for 72 hours" in expired.value.message
    session.rollback()
    assert not added.account.has_password and _events(session, "admin.password_set") == []


def test_a_link_refuses_a_weak_or_mistyped_password_and_keeps_working(session, boss):
    added = accounts.add_account(session, boss, "jane@example.com")
    session.commit()
    token = added.secret.value
    with pytest.raises(ValidationError) as weak:
        accounts.set_password_with_link(session, token, "short", "short")
    assert weak.value.field == "password" and "at least 12 characters" in weak.value.message
    session.rollback()
    with pytest.raises(ValidationError) as mistyped:
        accounts.set_password_with_link(session, token, NEW_PASSWORD, NEW_PASSWORD + "!")
    assert mistyped.value.field == "confirm"
    session.rollback()
    accounts.set_password_with_link(session, token, NEW_PASSWORD, NEW_PASSWORD)
    session.commit()
    assert _signs_in(session, "jane@example.com", NEW_PASSWORD)


@pytest.mark.parametrize("token", ["", "x", "not-a-link-at-all" * 3, "y" * 300])
def test_an_unknown_link_is_refused(session, boss, token):
    accounts.add_account(session, boss, "jane@example.com")
    with pytest.raises(NotFound) as unknown:
        accounts.account_for_link(session, token)
    assert unknown.value.message == accounts.LINK_UNKNOWN


def test_a_generated_password_is_returned_once_and_signs_in(session, boss):
    added = accounts.add_account(
        session, boss, "ops@example.com", role="viewer", credential=Credential.PASSWORD
    )
    session.commit()
    assert added.secret.kind == Credential.PASSWORD and added.secret.expires_at is None
    assert added.account.password_link_hash is None
    assert added.secret.value not in added.account.password_hash
    assert _signs_in(session, "ops@example.com", added.secret.value)


def test_an_identity_provider_account_has_no_password_and_cannot_be_break_glass(session, boss):
    added = accounts.add_account(session, boss, "idp@example.com", sign_in=SignIn.OIDC)
    session.commit()
    idp = added.account
    assert added.secret is None and idp.sign_in == SignIn.OIDC and not idp.has_password
    assert accounts.account_status(idp) == AccountStatus.ACTIVE
    assert _events(session, "admin.create")[-1].details["delivery"] is None
    with pytest.raises(Conflict) as refused:
        accounts.set_break_glass(session, boss, idp, True)
    assert refused.value.field == "break_glass"
    assert "Only an account that signs in with a password" in refused.value.message
    with pytest.raises(Conflict) as reset:
        accounts.reset_password(session, boss, idp)
    assert "signs in with the identity provider" in reset.value.message


def test_bad_input_is_refused_field_by_field(session, boss):
    with pytest.raises(ValidationError) as bad:
        accounts.add_account(session, boss, "", "x" * 121, "owner", "telepathy")
    assert {e.field for e in bad.value.each()} == {"email", "name", "role", "sign_in"}
    with pytest.raises(ValidationError) as credential:
        accounts.add_account(session, boss, "a@example.com", credential="carrier pigeon")
    assert credential.value.field == "credential"
    with pytest.raises(ValidationError) as email:
        accounts.add_account(session, boss, "two@@example.com")
    assert email.value.field == "email"
    with pytest.raises(Conflict) as taken:
        accounts.add_account(session, boss, "BOSS@example.com")
    assert taken.value.field == "email" and "already exists" in taken.value.message


def test_the_last_active_admin_is_never_demoted_or_deactivated(session, boss, make_admin):
    viewer = make_admin("viewer@example.com", "viewer")
    with pytest.raises(Conflict) as demote_self:
        accounts.change_role(session, boss, boss, "viewer")
    assert demote_self.value.field == "role"
    assert demote_self.value.message.startswith("You are the last active admin")
    with pytest.raises(Conflict) as deactivate_self:
        accounts.deactivate(session, boss, boss)
    assert "before you deactivate yourself" in deactivate_self.value.message
    with pytest.raises(Conflict) as by_the_shell:
        accounts.change_role(session, "cli", boss, "viewer")
    assert by_the_shell.value.message.startswith("boss@example.com is the last active admin")
    session.rollback()
    assert (boss.role, boss.active) == ("admin", True)

    # A deactivated admin does not count; a second active one does.
    other = make_admin("other@example.com", "admin")
    accounts.deactivate(session, boss, other)
    session.commit()
    with pytest.raises(Conflict):
        accounts.change_role(session, boss, boss, "viewer")
    session.rollback()
    accounts.change_role(session, boss, viewer, "admin")
    session.commit()
    assert accounts.change_role(session, viewer, boss, "viewer") is True
    session.commit()
    with pytest.raises(Conflict) as last_again:
        accounts.deactivate(session, boss, viewer)
    assert last_again.value.message.startswith("viewer@example.com is the last active admin")
    assert accounts.active_admins(session) == 1


def test_two_admins_demoting_each_other_at_once_leave_one_admin(app, session, boss, make_admin):
    """The first demotion holds its lock until it commits; the second, started meanwhile in
    another session, waits for it and then sees that the other admin is gone."""
    other = make_admin("other@example.com", "admin")
    boss_id, other_id = boss.id, other.id
    assert accounts.change_role(session, boss, other, "viewer") is True  # not committed yet
    outcome: list[str] = []
    started = threading.Event()

    def the_other_admin_demotes_boss() -> None:
        with app.app_context():
            theirs = db.session
            actor = theirs.get(AdminUser, other_id)
            target = theirs.get(AdminUser, boss_id)
            started.set()
            try:
                accounts.change_role(theirs, actor, target, "viewer")
                theirs.commit()
                outcome.append("demoted")
            except Conflict as err:
                theirs.rollback()
                outcome.append(err.message)
            finally:
                db.session.remove()

    thread = threading.Thread(target=the_other_admin_demotes_boss)
    thread.start()
    assert started.wait(30)
    session.commit()  # the first demotion ends; the second goes on from here
    thread.join(60)
    assert outcome == ["boss@example.com is the last active admin: make another account an "
                       "admin before you demote it."]  # fmt: skip
    session.expire_all()
    assert accounts.active_admins(session) == 1 and session.get(AdminUser, boss_id).can_write


def test_role_changes_are_audited_with_from_and_to(session, boss, make_admin):
    viewer = make_admin("viewer@example.com", "viewer")
    assert accounts.change_role(session, boss, viewer, "admin") is True
    assert accounts.change_role(session, boss, viewer, "admin") is False  # no change, no event
    with pytest.raises(ValidationError) as bad:
        accounts.change_role(session, boss, viewer, "root")
    assert bad.value.field == "role"
    [event] = _events(session, "admin.role_change")
    assert event.details == {"email": "viewer@example.com", "from": "viewer", "to": "admin"}


def test_deactivation_ends_sessions_and_the_link_and_reactivation_restores_sign_in(session, boss):
    added = accounts.add_account(session, boss, "jane@example.com", role="admin")
    session.commit()
    jane = added.account
    before = jane.session_token
    assert accounts.deactivate(session, boss, jane) is True
    assert accounts.deactivate(session, boss, jane) is False
    session.commit()
    assert jane.session_token != before and jane.password_link_hash is None
    assert accounts.account_status(jane) == AccountStatus.DEACTIVATED
    with pytest.raises(NotFound):
        accounts.account_for_link(session, added.secret.value)
    secret = accounts.reset_password(session, boss, jane, Credential.PASSWORD)
    session.commit()
    assert not _signs_in(session, "jane@example.com", secret.value)  # deactivated
    assert accounts.activate(session, boss, jane) is True
    assert accounts.activate(session, boss, jane) is False
    session.commit()
    assert _signs_in(session, "jane@example.com", secret.value)
    assert [len(_events(session, a)) for a in ("admin.deactivate", "admin.activate")] == [1, 1]


def test_a_link_for_a_deactivated_account_does_not_work(session, boss):
    added = accounts.add_account(session, boss, "jane@example.com")
    added.account.active = False  # as a deactivation long ago, before the link was made
    session.commit()
    with pytest.raises(NotFound) as refused:
        accounts.account_for_link(session, added.secret.value)
    assert "deactivated" in refused.value.message


def test_reset_password_stops_the_old_one_and_ends_sessions(session, boss, make_admin):
    ops = make_admin("ops@example.com", "viewer")
    before = ops.session_token
    link = accounts.reset_password(session, boss, ops)
    session.commit()
    assert link.kind == Credential.LINK and ops.session_token != before
    assert not _signs_in(session, "ops@example.com", "correct horse battery")
    assert accounts.account_status(ops) == AccountStatus.WAITING
    password = accounts.reset_password(session, boss, ops, Credential.PASSWORD)
    session.commit()
    with pytest.raises(NotFound):  # the newer password replaced the link
        accounts.account_for_link(session, link.value)
    assert _signs_in(session, "ops@example.com", password.value)
    newer = accounts.reset_password(session, boss, ops)
    again = accounts.reset_password(session, boss, ops)
    with pytest.raises(NotFound):  # a newer link replaces the older one
        accounts.account_for_link(session, newer.value)
    assert accounts.account_for_link(session, again.value) is ops
    events = _events(session, "admin.password_reset")
    assert [e.details["delivery"] for e in events] == ["link", "password", "link", "link"]
    assert all(e.actor == "boss@example.com" for e in events)


def test_end_sessions_and_break_glass_are_audited(session, boss, make_admin):
    ops = make_admin("ops@example.com", "viewer")
    before = ops.session_token
    accounts.end_sessions(session, boss, ops)
    assert ops.session_token != before
    assert accounts.set_break_glass(session, boss, ops, True) is True
    assert accounts.set_break_glass(session, boss, ops, True) is False
    assert accounts.set_break_glass(session, boss, ops, False) is True
    session.commit()
    [ended] = _events(session, "admin.sessions_end")
    assert (ended.actor, ended.target_id) == ("boss@example.com", str(ops.id))
    marks = _events(session, "admin.break_glass")
    assert [(e.details["from"], e.details["to"]) for e in marks] == [(False, True), (True, False)]
    assert ops.break_glass is False


def test_the_list_searches_name_and_email_and_filters_by_status(session, boss, make_admin):
    make_admin("ops@example.com", "viewer", name="Olive Operator")
    accounts.add_account(session, boss, "waiting@example.com", "Wanda")
    gone = make_admin("gone@example.com", "viewer")
    accounts.deactivate(session, boss, gone)
    session.commit()

    def emails(search=None, status=None) -> list[str]:
        stmt = accounts.accounts_query(search, status)
        return [a.email for a in paginate(session, stmt, 1, 50).items]

    assert emails() == [
        "boss@example.com",
        "gone@example.com",
        "ops@example.com",
        "waiting@example.com",
    ]
    assert emails("olive") == emails("OPS@") == ["ops@example.com"]
    assert emails("%") == [] and emails("_") == []  # LIKE wildcards are plain text
    assert emails(status="active") == ["boss@example.com", "ops@example.com"]
    assert emails(status="waiting") == ["waiting@example.com"]
    assert emails(status="deactivated") == ["gone@example.com"]
    assert len(emails(status="nonsense")) == 4
    with pytest.raises(NotFound):
        accounts.get_account(session, 9999)


def test_the_shell_commands_share_the_services(runner, session, boss):
    created = runner.invoke(args=["create-admin", "ops@example.com", "--generate"])
    assert created.exit_code == 0, created.output
    password = created.output.split("password: ")[1].strip()
    assert _signs_in(session, "ops@example.com", password)
    assert _events(session, "admin.create")[-1].details["delivery"] == "password"

    reset = runner.invoke(args=["set-password", "ops@example.com", "--generate"])
    assert reset.exit_code == 0, reset.output
    assert _events(session, "admin.password_reset")[-1].actor == "cli"

    # The shell may deactivate the last active admin (it can always create another): it says so.
    assert runner.invoke(args=["deactivate-admin", "ops@example.com"]).exit_code == 0
    last = runner.invoke(args=["deactivate-admin", "boss@example.com"])
    assert last.exit_code == 0 and "no active admin is left" in last.output
    again = runner.invoke(args=["deactivate-admin", "boss@example.com", "--activate"])
    assert again.exit_code == 0 and "boss@example.com is active" in again.output
    session.expire_all()
    assert accounts.active_admins(session) == 1
    assert [e.actor for e in _events(session, "admin.deactivate")] == ["cli", "cli"]
    weak = runner.invoke(args=["set-password", "ops@example.com"], input="short\nshort\n")
    assert weak.exit_code != 0 and "at least 12 characters" in weak.output
