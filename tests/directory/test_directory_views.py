"""Admin › Users: list, search, add, edit, delete (refused while associated), CSV import."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from kmeweb.directory.models import EndUser
from kmeweb.outbox.models import Change
from tests.factories import count_rows, make_device, make_end_user, make_profile


def test_list_search_and_usage(client, login, session):
    login("viewer")
    jane = make_end_user(session, username="jane.doe", display_name="Jane Doe")
    make_end_user(session, username="bob")
    profile = make_profile(session, name="Sales", end_user_id=jane.id)
    make_device(session, profile, end_user_id=jane.id)
    body = client.get("/admin/users/").get_data(as_text=True)
    assert "jane.doe" in body and "bob" in body and "Jane Doe" in body
    # a viewer sees no controls
    assert (
        'href="/admin/users/new"' not in body and "Import CSV" not in body and ">Edit" not in body
    )
    row = body.split("jane.doe")[1].split("</tr>")[0]
    assert '<td class="text-end">1</td>' in row
    found = client.get("/admin/users/?q=DOE", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "jane.doe" in found and "bob" not in found and "<html" not in found
    assert "Users" in client.get("/profiles/").get_data(as_text=True)  # in the navigation


def test_add_edit_and_errors(client, login, actions, session):
    login("admin")
    response = actions.post(
        "/admin/users/new", {"username": "carol", "email": "carol@example.com", "display_name": "C"}
    )
    assert response.status_code == 303
    carol = session.scalar(select(EndUser).where(EndUser.username == "carol"))
    for data, field, message in [
        ({"username": "CAROL"}, "username", "A user with this username exists."),
        ({"username": ""}, "username", "A username is required."),
        ({"username": "dave", "email": "nope"}, "email", "Enter a valid email address."),
        ({"username": "dave", "display_name": "x" * 201}, "display_name", "At most 200"),
    ]:
        bad = actions.post("/admin/users/new", data)
        body = bad.get_data(as_text=True)
        assert bad.status_code == 422 and f'id="{field}-error"' in body and message in body
    assert count_rows(session, EndUser) == 1
    response = actions.post(
        f"/admin/users/{carol.id}/edit", {"username": "carol", "email": "c@example.com"}
    )
    assert response.status_code == 303
    session.expire_all()
    assert carol.email == "c@example.com" and carol.display_name is None


def test_rename_reaches_kme_for_profiles_and_devices(client, login, actions, session):
    login("admin")
    jane = make_end_user(session, username="jane")
    profile = make_profile(session, name="Sales", end_user_id=jane.id)
    make_device(session, profile, end_user_id=jane.id)
    actions.post(f"/admin/users/{jane.id}/edit", {"username": "jane.doe"})
    kinds = sorted(session.scalars(select(Change.kind)))
    assert kinds == ["device.user", "profile.update"]


def test_delete_is_refused_while_associated_saying_where(client, login, actions, session):
    login("admin")
    jane = make_end_user(session, username="jane")
    profile = make_profile(session, name="Sales", end_user_id=jane.id)
    device = make_device(session, profile, end_user_id=jane.id)
    refused = actions.post(f"/admin/users/{jane.id}/delete")
    body = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "jane is still associated with profile “Sales” and 1 device" in body
    assert device.imei in body
    profile.end_user_id = None
    device.end_user_id = None
    session.commit()
    assert actions.post(f"/admin/users/{jane.id}/delete").status_code == 303
    assert count_rows(session, EndUser) == 0


def _upload(actions, text: str, **kw):
    data = {"file": (io.BytesIO(text.encode("utf-8-sig")), "users.csv")}
    return actions.post("/admin/users/import", data, content_type="multipart/form-data", **kw)


def test_csv_import_all_rows(client, login, actions, session):
    login("admin")
    make_end_user(session, username="bob", email="old@example.com")
    text = (
        "Username,Email,Display Name\r\njane,jane@example.com,Jane Doe\r\nBOB,bob@example.com,\r\n"
    )
    response = _upload(actions, text)
    assert response.status_code == 303
    users = {u.username: u for u in session.scalars(select(EndUser))}
    assert set(users) == {"jane", "bob"}
    assert users["bob"].email == "bob@example.com" and users["jane"].display_name == "Jane Doe"
    listing = client.get("/admin/users/").get_data(as_text=True)
    assert "Imported users: 1 added, 1 updated." in listing


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("username,email\njane,nope\nbob,b@x.io\n,c@x.io\n", ["2", "Enter a valid email", "4"]),
        ("username\njane\nJANE\n", ["3", "A duplicate of row 2"]),
        ("login,email\njane,j@x.io\n", ["must name the columns"]),
        ("username,phone\njane,1\n", ["Unknown column"]),
    ],
)
def test_csv_import_rejects_the_whole_file_with_a_report(
    client, login, actions, session, text, expect
):
    login("admin")
    response = _upload(actions, text)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    for piece in expect:
        assert piece in body
    assert count_rows(session, EndUser) == 0


def test_viewer_posts_are_refused(client, login, actions, session):
    login("viewer")
    jane = make_end_user(session, username="jane")
    for path in (
        "/admin/users/new",
        f"/admin/users/{jane.id}/edit",
        f"/admin/users/{jane.id}/delete",
    ):
        assert actions.post(path, {"username": "x"}).status_code == 403
    assert _upload(actions, "username\nx\n").status_code == 403
    assert count_rows(session, EndUser) == 1
