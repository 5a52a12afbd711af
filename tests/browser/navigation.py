"""The main navigation as a phone shows it: the Menu button and the menu it slides open."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

# Bootstrap's collapse gives the menu "show" only when it has finished sliding open; while it
# slides ("collapsing") the links and buttons in it move down with every frame.
_OPEN = re.compile(r"(^|\s)show(\s|$)")


def open_phone_menu(page: Page) -> None:
    """Click Menu and wait until the menu has finished sliding open.

    A click on a control in the menu while it still slides can press the control and release
    over the part it moved away from: the browser then clicks their common ancestor, and
    nothing happens (a fresh clone's make test: Sign out pressed at y=88 and released on the
    whoami row, the page stayed). A person does not aim at a moving button; the test waits as
    a person would."""
    menu = page.get_by_role("navigation", name="Main").get_by_role("button", name="Menu")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#main-menu")).to_have_class(_OPEN)
