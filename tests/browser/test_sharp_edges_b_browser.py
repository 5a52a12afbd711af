"""Issue 19, items 7-13, in Chromium: forms that make the admin guess, the keyboard, phone
width, the small things an admin reads every day, and browser tests that wait for the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kmeweb.devices.models import Device
from kmeweb.devices.services import unassign_devices
from tests.browser.checks import check_a11y
from tests.factories import (
    bulk_devices,
    make_default_profile,
    make_end_user,
    make_profile,
    make_reseller,
    make_upload,
)
from tests.sync_fixtures import with_sync_config

pytestmark = pytest.mark.browser

DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 800}


def test_an_action_after_a_navigation_waits_for_the_new_page_to_load(signed_in, live_server):
    """Bootstrap arrives late (a slow link): the menu click after a navigation that returned
    at its commit still opens the menu, because every action waits for the page's load."""
    page = signed_in
    page.set_viewport_size(PHONE)

    def late(route):
        page.wait_for_timeout(1_000)  # the deferred script arrives a second late
        route.continue_()

    page.route("**/static/vendor/bootstrap.bundle.min.js", late)
    page.goto(f"{live_server}/operations/", wait_until="commit")
    menu = page.get_by_role("navigation", name="Main").get_by_role("button", name="Menu")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true", timeout=3_000)


def test_the_kme_profile_form_shows_its_rules_and_every_error_at_once(signed_in, live_server):
    """Item 7: required fields marked, the name rule shown before Done, no placeholder that
    reads as a value, and every error next to its field after one Done."""
    page = signed_in
    page.goto(f"{live_server}/profiles/new?kind=kme")
    name, mdm = page.get_by_label("Profile Name"), page.get_by_label("MDM (EMM)")
    apk, email = page.get_by_label("Agent APK URL"), page.get_by_label("Support email")
    for required in (name, mdm):
        expect(required).to_have_attribute("required", "")
        expect(page.locator(f"label[for={required.get_attribute('id')}]")).to_contain_text("*")
    expect(name).to_have_accessible_description(re.compile(r"cannot contain \\ # / \$ \*"))
    # An empty box looks empty: examples are help text, never grey values in the box.
    placeholders = page.locator("#profile-form input[placeholder]:not([type=search])")
    assert placeholders.evaluate_all("els => els.map(e => e.id + '=' + e.placeholder)") == [
        "custom_keys-0-key=key",
        "custom_keys-0-value=value",
    ]
    expect(mdm).to_have_accessible_description(re.compile("Other"))

    email.fill("nope")
    page.get_by_role("button", name="Done").click()
    expect(name).to_have_accessible_description(re.compile("Enter a profile name."))
    expect(mdm).to_have_accessible_description(re.compile("Choose the MDM"))
    expect(email).to_have_accessible_description(re.compile("Enter a valid email address."))
    for invalid in (name, mdm, email):
        expect(invalid).to_have_attribute("aria-invalid", "true")

    name.fill("Sales/EU")
    mdm.fill("Other")
    email.fill("help@example.com")
    page.get_by_role("button", name="Done").click()
    expect(name).to_have_accessible_description(re.compile("cannot contain /"))
    expect(apk).to_have_accessible_description(re.compile("enter the agent APK URL"))
    expect(mdm).not_to_have_attribute("aria-invalid", "true")
    expect(email).not_to_have_attribute("aria-invalid", "true")


def test_registration_without_token_hides_the_token_and_says_how_devices_enroll(
    signed_in, live_server, session
):
    """Item 8: ticking Device registration without token hides Extend Upto and the token,
    and says what the device does instead; unticking brings them back."""
    page = signed_in
    page.goto(f"{live_server}/profiles/new?kind=kme")
    without = page.get_by_label("Device registration without token")
    days, note = page.get_by_label("Extend Upto (days)"), page.get_by_test_id("without-token-note")
    expect(days).to_be_visible()
    expect(note).to_be_hidden()
    without.check()
    expect(days).to_be_hidden()
    expect(days).to_be_disabled()
    expect(page.get_by_label("Never expires")).to_be_hidden()
    expect(note).to_be_visible()
    expect(note).to_contain_text("enrolls with the device's IMEI or serial number")
    check_a11y(page)
    without.uncheck()
    expect(days).to_be_visible()
    expect(days).to_be_enabled()
    expect(note).to_be_hidden()

    # Edit of a profile without token: no token, no Extend or Refresh, the note instead.
    profile = make_profile(session, name="Kiosks", without_token=True)
    page.goto(f"{live_server}/profiles/{profile.id}/edit")
    expect(page.get_by_test_id("without-token-note")).to_be_visible()
    expect(page.get_by_test_id("token")).to_be_hidden()
    expect(page.get_by_role("button", name="Extend")).to_be_hidden()
    expect(page.get_by_role("button", name="Refresh")).to_be_hidden()


def test_escape_closes_a_dialog_and_gives_focus_back_to_the_control_that_opened_it(
    signed_in, live_server, session
):
    """Item 10: after Escape the admin is where they were, not at the top of the page."""
    page = signed_in
    make_default_profile(session)
    sales = make_profile(session, name="Sales", waiting_devices=1)
    page.goto(f"{live_server}/profiles/{sales.id}")
    opener = page.get_by_role("link", name="Change Associate User")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_label("Search users")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()


_RING_CONTRAST = """async el => {
  await Promise.all(el.getAnimations().map(a => a.finished));  // the ring as it settles
  const rgb = s => (s.match(/rgba?\\(([^)]+)\\)/g) || []).map(c => c.match(/[\\d.]+/g).map(Number));
  const lum = ([r, g, b]) => [r, g, b].map(v => v / 255)
    .map(v => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const bg = rgb(getComputedStyle(document.body).backgroundColor)[0];
  const over = ([r, g, b, a = 1]) => [r, g, b].map((v, i) => v * a + bg[i] * (1 - a));
  const style = getComputedStyle(el);
  const rings = [];
  if (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2) {
    rings.push(...rgb(style.outlineColor));
  }
  rings.push(...rgb(style.boxShadow));
  const contrast = c => {
    const [a, b] = [lum(over(c)), lum(bg)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
  };
  return Math.max(0, ...rings.map(contrast));
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_tab_stop_does_something_and_grey_buttons_show_a_focus_ring(
    signed_in, live_server, session, scheme
):
    """Item 10: a table that fits is no tab stop of its own (it scrolls nothing), and a grey
    button reached by Tab shows a ring that stands out from the page (3:1, WCAG 1.4.11)."""
    page = signed_in
    page.emulate_media(color_scheme=scheme)
    make_default_profile(session)
    sales = make_profile(session, name="Sales", waiting_devices=1)
    page.goto(f"{live_server}/profiles/")
    table_box = page.get_by_role("region", name="Bulk Enrollment Profiles")
    expect(table_box).not_to_have_attribute("tabindex", "0")
    page.get_by_role("button", name="Search").focus()
    page.keyboard.press("Tab")
    expect(table_box).not_to_be_focused()

    page.goto(f"{live_server}/profiles/{sales.id}")
    page.get_by_role("link", name="Edit").focus()
    page.keyboard.press("Tab")
    reveal = page.get_by_role("button", name="Reveal")  # the masked token's grey button
    expect(reveal).to_be_focused()
    assert reveal.evaluate(_RING_CONTRAST) >= 3


def _no_sideways_scroll(page) -> None:
    wide = page.evaluate(
        """() => [document.documentElement, ...document.querySelectorAll('.table-responsive')]
             .filter(el => el.scrollWidth > el.clientWidth + 1).map(el => el.className)"""
    )
    assert wide == [], f"{page.url} scrolls sideways in {wide}"


def test_phone_width_shows_counts_status_and_actions_without_sideways_scrolling(
    signed_in, live_server, session
):
    """Item 11: at 390 px the device count, the sync status and the primary actions (View,
    Approve All Devices) of Bulk Enrollment and Uploads are on screen, nothing scrolls."""
    page = signed_in
    page.set_viewport_size(PHONE)
    make_default_profile(session)
    user = make_end_user(session, username="jane.doe", display_name="Jane Doe")
    name = "Field Sales (Samsung Galaxy XCover)"
    sales = make_profile(
        session, name=name, description="Phones of the field sales team", end_user_id=user.id
    )
    bulk_devices(session, 1450, sales)
    page.goto(f"{live_server}/profiles/")
    row = page.get_by_test_id("profile-row").filter(has_text=name)
    expect(row.get_by_test_id("device-count")).to_contain_text("1,450")
    for part in (
        row.get_by_test_id("device-count"),
        row.get_by_test_id("sync-status"),
        row.get_by_role("link", name=f"View {name}"),
        row.get_by_role("link", name="Edit"),
    ):
        expect(part).to_be_in_viewport(ratio=1)
    _no_sideways_scroll(page)

    reseller = make_reseller(session, name="Demo Reseller Ltd")
    upload = make_upload(
        session, pending=12, reseller_id=reseller.id, kme_upload_id="UPL-2026-0001"
    )
    page.goto(f"{live_server}/integration/uploads")
    row = page.locator(f"#upload-row-{upload.id}")
    expect(row.get_by_test_id("pending")).to_have_text("12")
    for part in (
        row.get_by_test_id("pending"),
        row.get_by_test_id("devices"),
        row.locator(".badge"),
        row.get_by_role("link", name="View"),
        row.get_by_role("link", name="Approve All Devices"),
    ):
        expect(part).to_be_in_viewport(ratio=1)
    _no_sideways_scroll(page)


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def test_small_things_plurals_names_default_profile_and_favicon(signed_in, live_server, session):
    """Item 12: one device is "1 device"; Associated User is the person's name; the Default
    Profile does not count devices waiting to register; /favicon.ico is an icon."""
    page = signed_in
    default = make_default_profile(session)
    bulk_devices(session, 3, default)
    user = make_end_user(session, username="jane.doe", display_name="Jane Doe")
    sales = make_profile(session, name="Sales", end_user_id=user.id)
    (one,) = bulk_devices(session, 1, sales)
    operation = unassign_devices(session, [one], "admin@example.com")
    session.commit()
    assert operation.label == "Unassign 1 device"
    page.goto(f"{live_server}/profiles/{sales.id}?op={operation.id}")
    expect(page.locator(f"#op-status-{operation.id}")).to_contain_text("Unassign 1 device")
    expect(page.locator(f"#op-status-{operation.id}")).not_to_contain_text("1 devices")
    expect(page.get_by_test_id("fact-user")).to_contain_text("Jane Doe")

    page.goto(f"{live_server}/profiles/")
    row = page.get_by_test_id("profile-row").filter(has_text="Sales")
    expect(row.get_by_role("cell", name="Jane Doe")).to_be_visible()

    page.goto(f"{live_server}/profiles/{default.id}")
    expect(page.get_by_text("Pending Registration Devices")).to_have_count(0)
    expect(page.get_by_test_id("fact-registration")).to_contain_text("No device registers")

    icon = page.request.get(f"{live_server}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/")


def test_the_self_maintained_form_does_not_talk_about_kme(signed_in, live_server):
    page = signed_in
    page.goto(f"{live_server}/profiles/new?kind=self_maintained")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Self-Maintained")
    expect(page.locator("#profile-form")).not_to_contain_text("KME")
    expect(page.locator("#profile-form")).not_to_contain_text("Knox")


def test_the_audit_log_shows_imeis_and_names(signed_in, live_server, session):
    page = signed_in
    make_default_profile(session)
    sales = make_profile(session, name="Field Sales")
    ids = bulk_devices(session, 7, sales)
    imeis = dict(session.execute(select(Device.id, Device.imei).where(Device.id.in_(ids))).all())
    unassign_devices(session, ids, "admin@example.com")
    session.commit()
    page.goto(f"{live_server}/audit/?action=device.unassign")
    details = page.get_by_test_id("audit-details").first
    expect(details).to_contain_text(f"IMEIs: {imeis[ids[0]]}")
    expect(details).to_contain_text("and 2 more")
    expect(details).to_contain_text("From: Field Sales: 7")
    expect(details).not_to_contain_text("{")
    expect(details).not_to_contain_text(f"'first': [{ids[0]}")
    expect(page.get_by_test_id("audit-target").first).to_contain_text("Samsung KME Default Profile")


def test_the_uploads_behind_the_approval_dialog_follow_it(signed_in, live_server, session):
    """Item 12: while Approve All Devices runs in its dialog, the Uploads table behind it
    already shows the upload approved (local first), not pending until Close."""
    page = signed_in
    make_default_profile(session)
    reseller = make_reseller(session, name="Demo Reseller Ltd")
    upload = make_upload(session, pending=12, reseller_id=reseller.id)
    page.goto(f"{live_server}/integration/uploads")
    row = page.locator(f"#upload-row-{upload.id}")
    expect(row.get_by_test_id("pending")).to_have_text("12")
    row.get_by_role("link", name="Approve All Devices").click()
    dialog = page.locator("#approve-dialog")
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(dialog.get_by_role("heading")).to_contain_text("Approving upload")
    expect(row.get_by_test_id("pending")).to_have_text("0")  # the dialog is still open
    expect(row.locator(".badge")).to_have_text("approved")
    expect(dialog).to_be_visible()


def test_the_integration_status_follows_sync_now(
    signed_in, live_server, session, integration, worker_processes
):
    """Item 12: after Sync now the Status card shows the pull once it is done, no reload."""
    page = signed_in
    page.goto(f"{live_server}/integration/")
    last_pull = page.get_by_test_id("last-pull")
    expect(last_pull).to_have_text("—")  # no worker yet: nothing pulled
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#sync-operation").get_by_test_id("op-status")).to_be_visible()
    worker_processes.start("i19b-sync-worker", scheduler=False)
    expect(page.locator("#sync-operation").get_by_test_id("op-status")).to_have_text(
        "done", timeout=60_000
    )
    expect(last_pull).not_to_have_text("—")


def test_the_upload_view_behind_the_approval_dialog_follows_it(signed_in, live_server, session):
    """Item 12: on an upload's View, the facts and the waiting devices behind the Approve All
    Devices dialog show the approval while the dialog is still open, not at Close."""
    page = signed_in
    make_default_profile(session)
    reseller = make_reseller(session, name="Demo Reseller Ltd")
    upload = make_upload(session, pending=12, reseller_id=reseller.id)
    page.goto(f"{live_server}/integration/uploads/{upload.id}")
    expect(page.get_by_test_id("upload-pending")).to_have_text("12")
    page.get_by_role("link", name="Approve All Devices").click()
    dialog = page.locator("#approve-dialog")
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(dialog.get_by_role("heading")).to_contain_text("Approving upload")
    expect(page.get_by_test_id("upload-pending")).to_have_text("0")  # the dialog is still open
    expect(page.get_by_test_id("upload-status")).to_have_text("approved")
    expect(page.locator("#upload-devices")).to_contain_text(
        "No devices of this upload wait for approval."
    )
    expect(dialog).to_be_visible()
