"""Issue 19, A: actions that could hit the wrong devices or undo work, in Chromium at 1280 px.

Back after an action ticks nothing; every device dialog names the devices it acts on; Move
Devices chooses nothing for the admin; Extend never brings an expiry earlier; token work on
Edit profile keeps what was typed; Refresh Token asks first, naming the devices that will need
the new token; deleting a user that a profile uses says so before, and refuses inside the
dialog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kmeweb.devices.models import Device
from kmeweb.extensions import utcnow
from kmeweb.profiles.models import Profile
from tests.browser.checks import check_a11y
from tests.factories import bulk_devices, make_default_profile, make_end_user, make_profile

pytestmark = pytest.mark.browser


@pytest.fixture
def page(page):
    page.set_viewport_size({"width": 1280, "height": 900})
    return page


def _imeis(session, ids) -> list[str]:
    by_id = dict(session.execute(select(Device.id, Device.imei).where(Device.id.in_(ids))).all())
    return [by_id[i] for i in ids]


def _tick(page, ids) -> None:
    for device_id in ids:
        page.locator(f'input[name="device_ids"][value="{device_id}"]').check()


def test_back_after_move_ticks_nothing_and_dialogs_name_the_devices(sign_in, live_server, session):
    default = make_default_profile(session)
    make_profile(session, name="Sales")
    ids = bulk_devices(session, 8, default)
    imeis = _imeis(session, ids)
    page = sign_in("admin")
    page.goto(f"{live_server}/profiles/{default.id}")
    _tick(page, ids[:2])
    page.get_by_role("button", name="Move Devices").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_test_id("selection-summary")).to_have_text(
        f"2 devices: {imeis[0]}, {imeis[1]}"
    )
    dialog.get_by_label("Move to").select_option(label="Sales")
    dialog.get_by_role("button", name="Move").click()
    expect(page.locator("#flash-area")).to_contain_text("Move 2 devices to Sales")

    # Back: the list comes again without the moved devices; the browser must not tick the
    # rows that now stand where the ticked ones stood.
    page.go_back()
    page.wait_for_load_state("load")
    expect(page.get_by_role("button", name="Move Devices")).to_be_visible()
    expect(page.locator('input[name="device_ids"]').first).to_be_visible()
    assert page.locator('input[type="checkbox"]:checked').count() == 0

    # Delete names the devices: the first three and how many more.
    page.reload()
    page.wait_for_load_state("load")
    _tick(page, ids[2:7])
    page.get_by_role("button", name="Delete").click()
    expect(dialog.get_by_test_id("selection-summary")).to_have_text(
        f"5 devices: {imeis[2]}, {imeis[3]}, {imeis[4]} … and 2 more"
    )
    check_a11y(page)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    # "All N matching" names the filter it was chosen with.
    page.get_by_label("Registration").select_option("pending")
    expect(page.get_by_text("Select all 6 matching devices")).to_be_visible()
    page.get_by_label("Select all 6 matching devices").check()
    page.get_by_role("button", name="Delete").click()
    expect(dialog.get_by_test_id("selection-summary")).to_contain_text(
        "All 6 devices matching Registration: Not registered"
    )


def test_move_devices_chooses_nothing_and_offers_no_default_profile(sign_in, live_server, session):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    make_profile(session, name="Ops")
    ids = bulk_devices(session, 2, sales)
    page = sign_in("admin")
    page.goto(f"{live_server}/profiles/{sales.id}")
    _tick(page, ids[:1])
    page.get_by_role("button", name="Move Devices").click()
    dialog = page.locator("#form-dialog")
    move_to = dialog.get_by_label("Move to")
    expect(move_to).to_have_value("")
    expect(move_to.locator("option:not([value=''])")).to_have_text(["Ops"])
    expect(dialog).to_contain_text("To send devices back to the Samsung KME Default Profile")
    move = dialog.get_by_role("button", name="Move", exact=True)
    expect(move).to_be_disabled()
    move_to.select_option(label="Ops")
    expect(move).to_be_enabled()
    check_a11y(page)


def test_refresh_token_asks_first_naming_the_devices_that_need_it(sign_in, live_server, session):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    waiting = bulk_devices(session, 4, sales)
    bulk_devices(session, 2, sales, registered_at=utcnow())
    imeis = _imeis(session, waiting)
    old = sales.token
    page = sign_in("admin")
    page.goto(f"{live_server}/profiles/{sales.id}")
    page.get_by_role("link", name="Refresh Token").click()
    dialog = page.locator("#form-dialog")
    dialog.get_by_role("button", name="Refresh").click()
    confirm = dialog.get_by_test_id("refresh-confirm")
    expect(confirm).to_contain_text("“Sales”")
    expect(confirm).to_contain_text(
        f"4 devices not registered yet need the new token: {imeis[0]}, {imeis[1]}, "
        f"{imeis[2]} … and 1 more"
    )
    check_a11y(page)
    session.expire_all()
    assert session.get(Profile, sales.id).token == old  # nothing happened yet
    dialog.get_by_role("button", name="Refresh token").click()
    expect(page.locator("#flash-area")).to_contain_text("was refreshed")
    expect(page.get_by_test_id("token")).not_to_have_text(old)


def test_extend_never_shortens_a_token_that_never_expires(sign_in, live_server, session):
    make_default_profile(session)
    sales = make_profile(session, name="Sales", token_expires_at=None)
    page = sign_in("admin")
    page.goto(f"{live_server}/profiles/{sales.id}")
    page.get_by_role("link", name="Refresh Token").click()
    dialog = page.locator("#form-dialog")
    days = dialog.get_by_label("Extend Upto (days)")
    never = dialog.get_by_label("Never expires")
    expect(days).to_be_enabled()
    never.check()
    expect(days).to_be_disabled()
    never.uncheck()
    days.fill("14")
    # Extend cannot add days to "never"; giving the token a date is its own, named button.
    expect(dialog.get_by_role("button", name="Extend", exact=True)).to_have_count(0)
    expect(dialog).to_contain_text("This token never expires")
    dialog.get_by_role("button", name="Set expiry date").click()
    expect(page.locator("#flash-area")).to_contain_text("now expires")
    session.expire_all()
    expires = session.get(Profile, sales.id).token_expires_at
    assert expires is not None and 13 <= (expires - utcnow()).days <= 14


def test_extend_on_edit_profile_keeps_the_typed_description(sign_in, live_server, session):
    make_default_profile(session)
    sales = make_profile(session, name="Sales", token_expires_at=utcnow() + timedelta(days=10))
    page = sign_in("admin")
    page.goto(f"{live_server}/profiles/{sales.id}/edit")
    page.get_by_label("Description").fill("Field sales, Berlin")
    page.get_by_role("link", name="Refresh Token").click()
    dialog = page.locator("#form-dialog")
    dialog.get_by_label("Extend Upto (days)").fill("30")
    dialog.get_by_role("button", name="Extend", exact=True).click()
    expected = f"expires {utcnow() + timedelta(days=40):%Y-%m-%d}"
    expect(page.get_by_test_id("token-expiry")).to_have_text(expected)
    expect(dialog).to_be_hidden()
    expect(page.get_by_label("Description")).to_have_value("Field sales, Berlin")
    page.get_by_role("button", name="Done").click()
    expect(page.locator("#flash-area")).to_contain_text("Profile “Sales” was saved.")
    session.expire_all()
    saved = session.get(Profile, sales.id)
    assert saved.description == "Field sales, Berlin"
    assert f"{saved.token_expires_at:%Y-%m-%d}" == expected.removeprefix("expires ")


def test_deleting_a_user_a_profile_uses_says_so_and_refuses_in_the_dialog(
    sign_in, live_server, session
):
    make_default_profile(session)
    jane = make_end_user(session, username="jane")
    bob = make_end_user(session, username="bob")
    make_profile(session, name="Sales", end_user_id=jane.id)
    make_profile(session, name="Ops", end_user_id=jane.id)
    page = sign_in("admin")
    page.goto(f"{live_server}/admin/users/")
    dialog = page.locator("#form-dialog")
    row = page.get_by_test_id("user-row").filter(has_text="jane")
    row.get_by_role("button", name="Delete").click()
    expect(dialog).to_contain_text("jane is still associated with profiles “Ops”, “Sales”")
    expect(dialog.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
    check_a11y(page)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    # bob is free when the dialog opens, taken by a profile before Delete: refused in place.
    page.get_by_test_id("user-row").filter(has_text="bob").get_by_role(
        "button", name="Delete"
    ).click()
    expect(dialog).to_contain_text("Delete the user bob?")
    make_profile(session, name="Lab", end_user_id=bob.id)
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(dialog.get_by_role("alert")).to_contain_text("bob is still associated with")
    expect(page).to_have_url(f"{live_server}/admin/users/")
    expect(page.get_by_test_id("user-row")).to_have_count(2)


def test_a_token_answer_that_comes_while_the_dialog_opens_still_closes_it(
    sign_in, live_server, session
):
    # A quick admin (or a slow machine) can send Extend before the dialog's opening fade is
    # over; the answer must close the dialog all the same, not leave it open saying "Done".
    make_default_profile(session)
    sales = make_profile(session, name="Sales", token_expires_at=utcnow() + timedelta(days=10))
    page = sign_in("admin")
    page.goto(f"{live_server}/profiles/{sales.id}/edit")
    # The dialog opens slowly (a 2 s slide instead of Bootstrap's 0.3 s; CSSOM, as the page's
    # CSP allows no inline style), and the page notes whether the answer came before it opened.
    page.evaluate(
        """() => {
          const dialog = document.getElementById("form-dialog");
          dialog.querySelector(".modal-dialog").style.transitionDuration = "2s";
          let shown = false;
          dialog.addEventListener("shown.bs.modal", () => { shown = true; }, { once: true });
          document.addEventListener("kme:dialog-done", () => {
            window.answeredWhileOpening = !shown;
          }, { once: true });
        }"""
    )
    page.get_by_role("link", name="Refresh Token").click()
    dialog = page.locator("#form-dialog")
    dialog.get_by_label("Extend Upto (days)").fill("30")
    # force: no wait for the dialog to stop moving, which is the point.
    dialog.get_by_role("button", name="Extend", exact=True).click(force=True)
    expected = f"expires {utcnow() + timedelta(days=40):%Y-%m-%d}"
    expect(page.get_by_test_id("token-expiry")).to_have_text(expected)
    expect(dialog).to_be_hidden()
    assert page.evaluate("window.answeredWhileOpening") is True  # the case this test is for
    dialog.locator(".modal-dialog").evaluate("el => { el.style.transitionDuration = ''; }")
    # Opened again for a second change, it asks afresh rather than showing the last "Done".
    page.get_by_role("link", name="Refresh Token").click()
    expect(dialog.get_by_label("Extend Upto (days)")).to_be_visible()
    expect(dialog).not_to_contain_text("Done")
