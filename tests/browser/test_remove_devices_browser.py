"""Remove devices from a Self-Maintained profile in Chromium (issue 20, item 4): select rows,
Remove, a confirmation naming the devices, and they are gone from the table.

KMEWEB_SCREENSHOTS=<dir> also saves the dialog and the result at 1280 and 390 pixels wide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from tests.browser.checks import check_a11y
from tests.factories import make_device, make_profile

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("KMEWEB_SCREENSHOTS")


def _shot(page, name: str) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)  # let the modal re-lay out (screenshots only)
        page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=width == 1280)
    page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.parametrize("width", [1280, 390])
def test_select_remove_confirm_and_the_devices_are_gone(signed_in, live_server, session, width):
    page = signed_in
    page.set_viewport_size({"width": width, "height": 900})
    shelf = make_profile(session, name="Warehouse", kind="self_maintained", config={})
    a, b, kept = (make_device(session, shelf) for _ in range(3))

    page.goto(f"{live_server}/profiles/{shelf.id}")
    expect(page.get_by_test_id("device-row")).to_have_count(3)
    page.get_by_label(f"Select {a.imei}").check()
    page.get_by_label(f"Select {b.imei}").check()
    page.get_by_role("button", name="Remove", exact=True).click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="Remove devices")).to_be_visible()
    expect(dialog.get_by_test_id("selection-summary")).to_contain_text(a.imei)
    expect(dialog.get_by_test_id("selection-summary")).to_contain_text(b.imei)
    expect(dialog.get_by_test_id("selection-summary")).to_contain_text("2 devices:")
    check_a11y(page)
    if width == 1280:
        _shot(page, "remove-dialog")
    dialog.get_by_role("button", name="Remove 2 devices").click()

    expect(page.locator("#flash-area")).to_contain_text("2 devices were removed from Warehouse.")
    expect(page.get_by_test_id("device-row")).to_have_count(1)
    expect(page.get_by_test_id("device-row")).to_contain_text(kept.imei)
    if width == 1280:
        _shot(page, "remove-done")
    session.expire_all()
    assert session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc())) == (
        "device.remove"
    )


def test_remove_is_offered_on_self_maintained_profiles_only(sign_in, live_server, session):
    shelf = make_profile(session, name="Warehouse", kind="self_maintained", config={})
    sales = make_profile(session, name="Field Sales")
    make_device(session, shelf)
    make_device(session, sales)
    page = sign_in("admin")
    page.goto(f"{live_server}/profiles/{sales.id}")
    expect(page.get_by_test_id("device-row")).to_have_count(1)
    expect(page.get_by_role("button", name="Remove", exact=True)).to_have_count(0)
    page.goto(f"{live_server}/profiles/{shelf.id}")
    expect(page.get_by_role("button", name="Remove", exact=True)).to_be_visible()


def test_viewers_see_no_remove(sign_in, live_server, session):
    shelf = make_profile(session, name="Warehouse", kind="self_maintained", config={})
    make_device(session, shelf)
    page = sign_in("viewer")
    page.goto(f"{live_server}/profiles/{shelf.id}")
    expect(page.get_by_test_id("device-row")).to_have_count(1)
    expect(page.get_by_role("button", name="Remove", exact=True)).to_have_count(0)
    if SHOTS:
        _shot(page, "remove-viewer")
