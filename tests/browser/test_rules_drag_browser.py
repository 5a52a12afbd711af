"""Admin › Routing rules in Chromium: an admin drags a rule by its handle to reorder the list.

The list moves under the pointer before anything is saved, so each drag is checked by what
only the server's answer shows (the "saved" message, then a reload); the Up buttons, with a
pointer and with the keyboard, go on from the order the drag left; a drag on a page someone
else reordered meanwhile is refused and the list shows the order as it is."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from kmeweb.rules import services as rules
from tests.factories import make_default_profile

pytestmark = pytest.mark.browser

SAVED = "The new order of the rules was saved."


def _drag(page, name: str, onto: int) -> None:
    """Press on the rule's handle, move in small steps to the top edge of rule `onto`, let go:
    as a hand does (pointing first: Playwright waits for the handle to stand still)."""
    page.locator("#rule-list > li", has_text=name).locator(".kme-drag-handle").hover()
    page.mouse.down()
    box = page.locator("#rule-list > li").nth(onto).bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2, steps=8)
    page.mouse.move(box["x"] + 40, box["y"] + 4, steps=8)
    page.mouse.up()


def test_drag_to_reorder_then_up_buttons_and_a_stale_page(signed_in, live_server, session):
    page = signed_in
    make_default_profile(session)
    made = {
        name: rules.create_rule(session, {"name": name, "model_patterns": "SM-T*"}, "test").id
        for name in ("Sales orders", "Tablets", "Executives")
    }
    session.commit()
    page.goto(f"{live_server}/admin/rules/")
    names = page.get_by_test_id("rule-name")
    flash = page.locator("#flash-area")

    # Up reloads the page at the rule it moved (#rule-<id>); drag on that page.
    page.get_by_role("button", name="Move Tablets up").click()
    expect(names).to_have_text(["Tablets", "Sales orders", "Executives", "Everything else"])
    expect(flash).to_contain_text(SAVED)
    _drag(page, "Executives", 0)
    # The list moves at once; once dropped (the rule no longer faded), "saved" comes only with
    # the answer: the message of the Up click is gone by then.
    expect(names).to_have_text(["Executives", "Tablets", "Sales orders", "Everything else"])
    expect(page.locator(".kme-dragging")).to_have_count(0)
    expect(flash).to_contain_text(SAVED)
    expect(page.get_by_test_id("rule-list")).not_to_have_attribute("aria-busy", "true")

    # A second drag on the list the answer brought, then Up from the keyboard (a plain form
    # carrying the order the drag left).
    _drag(page, "Sales orders", 1)
    expect(names).to_have_text(["Executives", "Sales orders", "Tablets", "Everything else"])
    expect(page.locator(".kme-dragging")).to_have_count(0)
    expect(flash).to_contain_text(SAVED)
    page.get_by_role("button", name="Move Tablets up").focus()
    page.keyboard.press("Enter")
    expect(names).to_have_text(["Executives", "Tablets", "Sales orders", "Everything else"])
    expect(page).to_have_url(f"{live_server}/admin/rules/#rule-{made['Tablets']}")
    page.reload()
    expect(names).to_have_text(["Executives", "Tablets", "Sales orders", "Everything else"])

    # Someone else reorders meanwhile: the drag is refused, the list shows the order now.
    now = [r.id for r in rules.list_rules(session) if not r.catch_all]
    rules.set_order(session, list(reversed(now)), "someone")
    session.commit()
    _drag(page, "Tablets", 0)
    expect(page.get_by_test_id("rules-error")).to_contain_text(rules.STALE_ORDER)
    expect(names).to_have_text(["Sales orders", "Tablets", "Executives", "Everything else"])
    expect(flash).to_be_empty()
