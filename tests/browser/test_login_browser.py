"""A person signs in through the real login page in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_sign_in_shows_the_navigation_and_sign_out(page, live_server, make_admin):
    make_admin("admin@example.com", "admin")
    page.goto(f"{live_server}/audit/")
    expect(page).to_have_url(f"{live_server}/auth/login?next=/audit/")
    expect(page.get_by_text("Please sign in to continue.")).to_be_visible()

    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#password-error")).to_have_text("Email or password is not correct.")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/audit/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Audit log")).to_be_visible()
    expect(page.locator(".whoami")).to_contain_text("admin@example.com")
    # the failed and the successful sign-in are both in the audit log
    expect(page.locator("table")).to_contain_text("auth.login_failed")
    expect(page.locator("table")).to_contain_text("auth.login")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server}/auth/login")
    expect(page.get_by_text("You have been signed out.")).to_be_visible()


def test_audit_filter_updates_the_table_through_htmx(signed_in, live_server):
    page = signed_in
    page.goto(f"{live_server}/audit/")
    page.get_by_label("Action").select_option("auth.login")
    expect(page).to_have_url(f"{live_server}/audit/?actor=&action=auth.login&date_from=&date_to=")
    expect(page.locator("#audit-content tbody tr")).to_have_count(1)
    expect(page.locator("#audit-content")).to_contain_text("auth.login")
