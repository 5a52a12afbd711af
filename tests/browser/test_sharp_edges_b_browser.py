"""Issue 19, items 7-13, in Chromium: forms that make the admin guess, the keyboard, phone
width, the small things an admin reads every day, and browser tests that wait for the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

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
