"""End users: get-or-create by username and search."""

from __future__ import annotations

import pytest

from kmeweb.directory import services
from kmeweb.directory.models import EndUser
from kmeweb.errors import ValidationError
from tests.factories import count_rows, make_end_user


def test_get_or_create_is_case_insensitive_and_updates(session):
    user = services.get_or_create_user(session, " Jane.Doe@example.com ")
    again = services.get_or_create_user(
        session, "jane.doe@EXAMPLE.com", email="jane@example.com", display_name="Jane Doe"
    )
    session.commit()
    assert again.id == user.id and user.username == "Jane.Doe@example.com"
    assert user.email == "jane@example.com" and user.display_name == "Jane Doe"
    assert count_rows(session, EndUser) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"username": "  "}, "username"),
        ({"username": "x" * 255}, "username"),
        ({"username": "ok", "email": "nope"}, "email"),
    ],
)
def test_get_or_create_validation(session, kwargs, field):
    with pytest.raises(ValidationError) as err:
        services.get_or_create_user(session, **kwargs)
    assert err.value.field == field


def test_search_users(session):
    for name, display in [("alice", "Alice Smith"), ("bob", "Bob Jones"), ("a_b", None)]:
        services.get_or_create_user(session, name, display_name=display)
    session.commit()
    assert [u.username for u in services.search_users(session, "SMITH")] == ["alice"]
    assert [u.username for u in services.search_users(session, "b")] == ["a_b", "bob"]
    assert [u.username for u in services.search_users(session, "_")] == ["a_b"]
    assert len(services.search_users(session, "", limit=2)) == 2


def test_usernames_of_ids(session):
    alice = make_end_user(session, username="alice")
    bob = make_end_user(session, username="bob")
    assert services.usernames(session, [alice.id, None, bob.id, alice.id]) == {
        alice.id: "alice",
        bob.id: "bob",
    }
    assert services.usernames(session, [None]) == {}
