"""The Overview in Chromium: the funnel's SVG bars carry their labels and scale, the reseller
filter redraws them through htmx, and Admin › Alerts is reached through the Admin menu at
desktop and phone width."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from kmeweb.extensions import utcnow
from tests.browser.checks import check_a11y
from tests.browser.navigation import open_phone_menu
from tests.factories import (
    bulk_devices,
    make_default_profile,
    make_profile,
    make_reseller,
    make_upload,
)

pytestmark = pytest.mark.browser


def _seed(session):
    """Acme: 10 pending, 20 approved (4 in the Default Profile, 16 in Sales, 8 registered).
    Bravo: 10 in Sales, none registered."""
    now = utcnow()
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales", token_expires_at=now + timedelta(days=2))
    acme, bravo = make_reseller(session, name="Acme"), make_reseller(session, name="Bravo")
    make_upload(session, pending=10, reseller_id=acme.id, uploaded_at=now - timedelta(hours=3))
    done = make_upload(session, reseller_id=acme.id, status="approved")
    other = make_upload(session, reseller_id=bravo.id, status="approved")
    bulk_devices(session, 4, default, upload_id=done.id)
    bulk_devices(session, 8, sales, upload_id=done.id)
    bulk_devices(session, 8, sales, upload_id=done.id, registered_at=now)
    bulk_devices(session, 10, sales, upload_id=other.id)
    return acme


def _bars(page) -> list[tuple[str, str]]:
    bars = page.get_by_test_id("funnel-bar")
    return [
        (bar.locator(".kme-bar-label").text_content(), bar.locator(".kme-bar-value").text_content())
        for bar in bars.all()
    ]


def test_funnel_bars_filters_and_admin_menu(sign_in, live_server, session):
    acme = _seed(session)  # before signing in: the funnel's counts are kept for 30 s
    page = sign_in("admin")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.get_by_test_id("funnel-bar")).to_have_count(4)
    assert _bars(page) == [
        ("Uploaded by resellers", "40 · 100%"),
        ("Approved", "30 · 75%"),
        ("In a KME profile", "26 · 65%"),
        ("Registered", "8 · 20%"),
    ]
    # Drawn to scale in the browser: each bar's rendered width follows its count.
    widths = [
        page.locator(f"[data-stage={key}] .kme-bar").bounding_box()["width"]
        for key in ("uploaded", "approved", "registered")
    ]
    assert widths[1] / widths[0] == pytest.approx(30 / 40, abs=0.01)
    assert widths[2] / widths[0] == pytest.approx(8 / 40, abs=0.01)
    attention = page.get_by_test_id("needs-attention")
    expect(attention).to_contain_text("1 upload waiting for approval")
    expect(attention.get_by_test_id("attention-token")).to_contain_text("Sales: expires in 2 days")

    # The reseller filter redraws the funnel in place and keeps the filter in the URL.
    page.get_by_label("Reseller").select_option(label="Acme")
    expect(page.get_by_test_id("funnel-bar").first).to_contain_text("30 · 100%")
    assert _bars(page)[3] == ("Registered", "8 · 27%")
    expect(page).to_have_url(f"{live_server}/?reseller={acme.id}&profile=")
    check_a11y(page)

    # Extend from Needs attention: the token dialog over the Overview, and back to it.
    attention.get_by_role("link", name="Extend the token of Sales").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="Refresh Token")).to_be_visible()
    dialog.get_by_label("Extend Upto (days)").fill("7")
    dialog.get_by_role("button", name="Extend").click()
    expect(page.locator("#flash-area")).to_contain_text("The token of “Sales” was extended")
    expect(page).to_have_url(f"{live_server}/")
    # 9 days left is past the 3-day warning window: the token no longer needs attention.
    expect(attention.get_by_test_id("attention-token")).to_have_count(0)

    # Admin › Alerts through the Admin menu, on the desktop bar and in the phone menu.
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("button", name="Admin").click()
    nav.get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    page.set_viewport_size({"width": 390, "height": 800})
    open_phone_menu(page)
    nav.get_by_role("button", name="Admin").click()
    expect(nav.get_by_role("link", name="Alerts")).to_have_attribute("aria-current", "page")
    check_a11y(page)
    nav.get_by_role("link", name="Overview").click()
    expect(page.get_by_test_id("funnel-bar")).to_have_count(4)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
