"""Devices changed in the Samsung portal in Chromium (issue 24, part 3): the Overview counts
them, the profile page filters them and shows Samsung's value beside kmeweb's, and Send ours
again for all N matching shows its counts before acting.

KMEWEB_SCREENSHOTS=<dir> also saves the pages at 1280 and 390 pixels wide."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from kmeweb.devices.models import Device
from kmeweb.extensions import utcnow
from tests.browser.checks import check_a11y
from tests.factories import bulk_devices, make_default_profile, make_profile, set_device_sync

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


def test_portal_changes_counted_listed_and_sent_again(signed_in, live_server, session):
    page = signed_in
    make_default_profile(session)
    kiosk = make_profile(session, name="Kiosk")
    sales = make_profile(session, name="Sales")
    changed = bulk_devices(session, 3, sales)
    bulk_devices(session, 2, sales)
    gone = bulk_devices(session, 1, kiosk)
    session.execute(
        update(Device)
        .where(Device.id.in_(changed))
        .values(
            portal_changed_at=utcnow() - timedelta(minutes=3),
            portal_previous={"approval": "approved", "profile_id": kiosk.id},
        )
    )
    set_device_sync(
        session,
        changed,
        kme_seen_approval="approved",
        kme_seen_profile_id=sales.id,
        kme_seen_at=utcnow(),
    )
    session.execute(update(Device).where(Device.id.in_(gone)).values(kme_missing_at=utcnow()))
    session.commit()

    page.goto(f"{live_server}/")
    expect(page.get_by_test_id("attention-portal")).to_contain_text(
        "3 devices changed in the Samsung portal"
    )
    expect(page.get_by_test_id("attention-missing")).to_contain_text("1 device not found in KME")
    _shot(page, "portal-overview")
    page.get_by_test_id("attention-portal").get_by_role("link", name="Sales").click()
    expect(page.get_by_test_id("device-row")).to_have_count(3)
    expect(page.get_by_test_id("portal-change").first).to_contain_text(
        "Samsung holds Sales; kmeweb had Kiosk"
    )
    _shot(page, "portal-profile")

    page.get_by_label("Select all 3 matching devices").check()
    page.get_by_role("button", name="Send ours again").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_test_id("portal-counts")).to_contain_text(
        "3 of them were changed in the Samsung portal"
    )
    expect(dialog.get_by_test_id("selection-summary")).to_contain_text(
        "Samsung: Changed in Samsung portal"
    )
    check_a11y(page)
    _shot(page, "portal-dialog")
    dialog.get_by_role("button", name="Send ours again").click()
    expect(page.locator("#flash-area")).to_contain_text("Send kmeweb's values again for 3 devices")
    page.goto(f"{live_server}/profiles/{kiosk.id}")
    expect(page.get_by_test_id("device-row")).to_have_count(4)  # 3 back, 1 not found in KME
    expect(page.get_by_test_id("not-in-kme")).to_have_count(1)
    page.goto(f"{live_server}/integration/")
    expect(page.locator("#portal-policy")).to_contain_text("Changes made in the Samsung portal")
    _shot(page, "portal-settings")
