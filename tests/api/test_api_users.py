"""The directory of end users as a script manages it: list, read, create, change, delete."""

from __future__ import annotations

from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.directory.models import EndUser
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import Change, ChangeKind
from tests.factories import count_rows, make_device, make_end_user, make_profile

ACTOR = "admin-api@example.com (API token script)"


def test_list_search_and_page_with_usage_counts(api, session):
    jane = make_end_user(session, username="jane", display_name="Jane Doe")
    bob = make_end_user(session, username="bob", email="bob@example.com")
    profile = make_profile(session, end_user_id=jane.id)
    make_device(session, profile, end_user_id=jane.id)

    r = api.get("/users")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["items"] == [
        {
            "id": jane.id,
            "username": "jane",
            "email": jane.email,
            "display_name": "Jane Doe",
            "profiles": 1,
            "devices": 1,
        },
        {
            "id": bob.id,
            "username": "bob",
            "email": "bob@example.com",
            "display_name": None,
            "profiles": 0,
            "devices": 0,
        },
    ]
    assert [u["id"] for u in api.get("/users?q=DOE").get_json()["items"]] == [jane.id]
    page = api.get("/users?limit=1").get_json()
    assert [u["id"] for u in page["items"]] == [jane.id]
    rest = api.get(f"/users?limit=1&cursor={page['next_cursor']}").get_json()
    assert [u["id"] for u in rest["items"]] == [bob.id] and rest["next_cursor"] is None
    one = api.get(f"/users/{jane.id}").get_json()
    assert one["username"] == "jane" and one["devices"] == 1
    assert api.get("/users/999999").status_code == 404


def test_create_answers_201_with_location_and_audits_the_token(api, session):
    r = api.post("/users", {"username": "jane", "email": "jane@example.com"})
    assert r.status_code == 201, r.get_data(as_text=True)
    body = r.get_json()
    assert body["username"] == "jane" and body["display_name"] is None
    assert r.headers["Location"] == f"/api/v1/users/{body['id']}"
    assert api.get(f"/users/{body['id']}").get_json() == body
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "end_user.create"))
    assert event.actor == ACTOR and event.target_id == str(body["id"])
    assert "password" not in r.get_data(as_text=True)


def test_a_taken_username_and_a_bad_email_are_422_on_their_field(api, session):
    make_end_user(session, username="jane")
    r = api.post("/users", {"username": "JANE"})
    assert r.status_code == 422
    assert r.get_json()["errors"] == [
        {"field": "username", "message": "A user with this username exists."}
    ]
    r = api.post("/users", {"username": "joe", "email": "not-an-email"})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "email"
    r = api.post("/users", {"email": "x@example.com"})
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "username"
    assert count_rows(session, EndUser) == 1


def test_patch_changes_only_what_is_sent_and_a_rename_reaches_kme(api, session):
    jane = make_end_user(session, username="jane", display_name="Jane")
    profile = make_profile(session, end_user_id=jane.id)
    r = api.patch(f"/users/{jane.id}", {"display_name": "Jane Doe"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["username"] == "jane" and r.get_json()["display_name"] == "Jane Doe"
    assert r.get_json()["email"] == jane.email
    assert count_rows(session, Change) == 0

    r = api.patch(f"/users/{jane.id}", {"username": "jane.doe", "email": None})
    assert r.status_code == 200
    assert r.get_json()["username"] == "jane.doe" and r.get_json()["email"] is None
    change = session.scalar(select(Change))
    assert change.kind == ChangeKind.PROFILE_UPDATE and change.profile_id == profile.id
    assert session.get(Operation, change.operation_id) is not None

    other = make_end_user(session, username="bob")
    taken = api.patch(f"/users/{other.id}", {"username": "Jane.Doe"})
    assert taken.status_code == 422 and taken.get_json()["errors"][0]["field"] == "username"
    assert api.patch("/users/999999", {"display_name": "x"}).status_code == 404


def test_delete_refuses_a_user_in_use_and_deletes_one_that_is_not(api, session):
    jane = make_end_user(session, username="jane")
    make_profile(session, name="Ops", end_user_id=jane.id)
    r = api.delete(f"/users/{jane.id}")
    assert r.status_code == 409
    assert "jane is still associated with profile “Ops”" in r.get_json()["detail"]
    assert session.get(EndUser, jane.id) is not None

    bob = make_end_user(session, username="bob")
    r = api.delete(f"/users/{bob.id}")
    assert r.status_code == 204 and r.get_data() == b""
    session.expire_all()
    assert session.get(EndUser, bob.id) is None
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "end_user.delete"))
    assert event.actor == ACTOR
    assert api.delete(f"/users/{bob.id}").status_code == 404


def test_write_routes_need_the_users_write_scope(api_as, session):
    jane = make_end_user(session, username="jane")
    reader = api_as(scopes=["users:read"])
    assert reader.get("/users").status_code == 200
    refused = [
        reader.post("/users", {"username": "bob"}),
        reader.patch(f"/users/{jane.id}", {"display_name": "J"}),
        reader.delete(f"/users/{jane.id}"),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert {r.get_json()["code"] for r in refused} == {"insufficient_scope"}
    session.expire_all()
    assert [u.username for u in session.scalars(select(EndUser))] == ["jane"]
