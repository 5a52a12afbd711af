"""Issue 19, A.6 below the browser: Delete user says before confirming what still uses the
user, and a refusal comes back inside the dialog (409), never as a bare error page."""

from __future__ import annotations

from kmeweb.directory import services
from kmeweb.directory.models import EndUser
from tests.factories import count_rows, make_device, make_end_user, make_profile

HX = {"HX-Request": "true"}


def test_usage_words_name_profiles_and_devices(session):
    jane = make_end_user(session, username="jane")
    assert services.usage_words(session, jane) is None
    make_profile(session, name="Sales", end_user_id=jane.id)
    ops = make_profile(session, name="Ops", end_user_id=jane.id)
    device = make_device(session, ops, end_user_id=jane.id)
    words = services.usage_words(session, jane)
    assert words == f"profiles “Ops”, “Sales” and 1 device ({device.imei})"


def test_delete_dialog_says_who_uses_the_user_and_refuses_inside_it(
    client, login, actions, session
):
    login("admin")
    jane = make_end_user(session, username="jane")
    bob = make_end_user(session, username="bob")
    make_profile(session, name="Sales", end_user_id=jane.id)
    dialog = client.get(f"/admin/users/{jane.id}/delete", headers=HX).get_data(as_text=True)
    assert "<html" not in dialog and "jane is still associated with profile “Sales”" in dialog
    assert ">Delete</button>" not in dialog
    free = client.get(f"/admin/users/{bob.id}/delete", headers=HX).get_data(as_text=True)
    assert "Delete the user bob?" in free and ">Delete</button>" in free
    make_profile(session, name="Lab", end_user_id=bob.id)  # taken meanwhile
    refused = actions.post(f"/admin/users/{bob.id}/delete", headers=HX)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "<html" not in body
    assert 'role="alert"' in body and "bob is still associated with profile “Lab”" in body
    page = actions.post(f"/admin/users/{bob.id}/delete")  # without JavaScript: the dialog page
    assert page.status_code == 409 and "← Users" in page.get_data(as_text=True)
    assert count_rows(session, EndUser) == 2
