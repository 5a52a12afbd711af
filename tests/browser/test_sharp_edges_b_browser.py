"""Issue 19, items 7-13, in Chromium: forms that make the admin guess, the keyboard, phone
width, the small things an admin reads every day, and browser tests that wait for the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.checks import check_a11y
from tests.factories import make_profile

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
