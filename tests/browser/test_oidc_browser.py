"""Sign-in with the company's identity provider, in Chromium, through the provider's own pages.

The provider is node's oidc-provider on loopback (tests/oidc_fixtures.py). The refusals are
each driven at the protocol level in tests/auth/test_oidc_sign_in.py; here a person clicks.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.auth.test_oidc_sign_in import oidc_settings
from tests.conftest import PASSWORD
from tests.oidc_fixtures import sign_in_at_provider

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config: dict, oidc_provider) -> dict:
    return {**app_config, **oidc_settings(oidc_provider)}


def test_sign_in_with_the_provider_and_the_role_its_groups_give(page, live_server, oidc_provider):
    oidc_provider.add_account(
        "ana", "s3cret-at-idp", "ana@example.com", "Ana Admin", ["kme-admins"]
    )
    page.goto(f"{live_server}/audit/")
    expect(page.get_by_role("link", name="Sign in with Test IdP")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in with password")).to_be_visible()

    page.get_by_role("link", name="Sign in with Test IdP").click()
    expect(page).to_have_title("Sign in · Test identity provider")
    sign_in_at_provider(page, "ana", "wrong")
    expect(page.get_by_text("Wrong login or password.")).to_be_visible()
    sign_in_at_provider(page, "ana", "s3cret-at-idp")
    expect(page).to_have_url(f"{live_server}/")
    expect(page.locator(".whoami")).to_contain_text("Ana Admin")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("button", name="Admin")).to_be_visible()

    # sign-out ends the session here and at the provider, and comes back to the sign-in page
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server)}/auth/login\b"))
    expect(page.get_by_text("You have been signed out.")).to_be_visible()

    # removed from the admin group: a viewer at the next sign-in (the provider asks again)
    oidc_provider.add_account(
        "ana", "s3cret-at-idp", "ana@example.com", "Ana Admin", ["kme-viewers"]
    )
    page.get_by_role("link", name="Sign in with Test IdP").click()
    sign_in_at_provider(page, "ana", "s3cret-at-idp")
    expect(page).to_have_url(f"{live_server}/")
    expect(page.locator(".whoami")).to_contain_text("viewer")


def test_provider_down_is_one_line_and_the_password_form_still_works(
    page, live_server, oidc_provider, make_admin
):
    make_admin("keeper@example.com")
    oidc_provider.stop()
    page.goto(f"{live_server}/auth/login")
    expect(page.locator("#provider-down")).to_have_text("Test IdP is not answering right now.")
    expect(page.get_by_role("link", name="Sign in with Test IdP")).to_have_attribute(
        "aria-disabled", "true"
    )
    page.get_by_label("Email").fill("keeper@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in with password").click()
    expect(page).to_have_url(f"{live_server}/")
    expect(page.locator(".whoami")).to_contain_text("keeper@example.com")
