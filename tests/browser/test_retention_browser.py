"""Audit log › Retention in Chromium at phone width: a refused value answers inside the card,
then the retention and the legal hold are saved and the card says so."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from kmeweb.audit.retention import get_retention

pytestmark = pytest.mark.browser


def test_an_admin_sets_a_retention_and_a_legal_hold(signed_in, live_server, session):
    page = signed_in
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/audit/")
    card = page.locator("#retention")
    expect(card.get_by_test_id("retention-summary")).to_contain_text("Everything is kept")

    days = card.get_by_label("Keep history for")
    days.fill("7")
    card.get_by_role("button", name="Save").click()
    expect(card.locator("#days-error")).to_contain_text("30 to 3,650 days")
    expect(page.locator("#retention #days")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(f"{live_server}/audit/")  # answered inside the card

    page.locator("#retention #days").fill("120")
    page.locator("#retention").get_by_role("switch", name="Legal hold").check()
    page.locator("#retention").get_by_role("button", name="Save").click()
    expect(page.locator("#flash-area")).to_contain_text("The retention settings were saved.")
    summary = page.locator("#retention").get_by_test_id("retention-summary")
    expect(summary).to_contain_text("Nothing is deleted while the legal hold is on")
    expect(summary).to_contain_text("120 days")
    session.expire_all()
    saved = get_retention(session)
    assert (saved.days, saved.legal_hold) == (120, True)
    expect(page.locator("table")).to_contain_text("Legal hold: no → yes")
