"""An admin sees a profile's enrollment token masked and reveals it with Reveal (on the
profile's page and inside the Edit form); a viewer sees it masked with no Reveal."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import expect
from sqlalchemy import select

from kmeweb.audit.models import AuditEvent
from kmeweb.profiles import services
from tests.factories import make_default_profile, make_profile

SHOTS = Path(os.environ.get("KMEWEB_SHOTS", "/tmp/shots-i20b"))


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _reveals(session) -> int:
    session.expire_all()
    stmt = select(AuditEvent).where(AuditEvent.action == "profile.token_reveal")
    return len(list(session.scalars(stmt)))


def test_an_admin_reveals_a_token_on_the_profile_page_and_in_edit(
    page, live_server, sign_in, session
):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in("admin")

    page.goto(f"{live_server}/profiles/{sales.id}")
    token = page.get_by_test_id("token")
    expect(token).to_contain_text(services.mask_token(sales.token))
    expect(token).not_to_contain_text(sales.token)
    _shot(page, "token-masked-admin-1280")
    page.get_by_role("button", name="Reveal").click()
    expect(page.get_by_test_id("token")).to_have_text(sales.token)
    expect(page.get_by_role("button", name="Copy")).to_be_focused()
    expect(page.get_by_role("button", name="Reveal")).to_have_count(0)
    _shot(page, "token-revealed-admin-1280")
    assert _reveals(session) == 1

    page.goto(f"{live_server}/profiles/{sales.id}/edit")
    expect(page.get_by_test_id("token")).not_to_contain_text(sales.token)
    page.get_by_role("button", name="Reveal").click()
    expect(page.get_by_test_id("token")).to_have_text(sales.token)
    expect(page).to_have_url(f"{live_server}/profiles/{sales.id}/edit")  # the form stays
    _shot(page, "token-revealed-edit-admin-1280")
    assert _reveals(session) == 2

    # The same form posted plainly (as without htmx) answers the token page (axe-checked).
    page.goto(f"{live_server}/profiles/{sales.id}")
    page.locator("form[action$='/token/reveal']").evaluate("form => form.submit()")
    expect(page).to_have_url(f"{live_server}/profiles/{sales.id}/token/reveal")
    expect(page.get_by_test_id("token")).to_have_text(sales.token)
    _shot(page, "token-page-admin-1280")
    assert _reveals(session) == 3


def test_a_viewer_sees_the_token_masked_without_reveal(page, live_server, sign_in, session):
    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in("viewer")

    page.goto(f"{live_server}/profiles/{sales.id}")
    expect(page.get_by_test_id("token")).to_contain_text(services.mask_token(sales.token))
    expect(page.get_by_role("button", name="Reveal")).to_have_count(0)
    expect(page.get_by_role("button", name="Copy")).to_have_count(0)
    assert sales.token not in page.content()
    _shot(page, "token-masked-viewer-390")


def test_reveal_works_without_javascript(browser, live_server, make_admin, session):
    """The plain form post answers a page with the token (no token ever goes into a URL)."""
    from tests.conftest import PASSWORD

    make_default_profile(session)
    sales = make_profile(session, name="Sales")
    make_admin("nojs@example.com", "admin")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(f"{live_server}/auth/login")
        page.get_by_label("Email").fill("nojs@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{live_server}/profiles/{sales.id}")
        page.get_by_role("button", name="Reveal").click()
        expect(page).to_have_url(f"{live_server}/profiles/{sales.id}/token/reveal")
        expect(page.get_by_test_id("token")).to_have_text(sales.token)
        expect(page.get_by_role("link", name="Sales")).to_be_visible()
        _shot(page, "token-page-nojs-390")
        assert _reveals(session) == 1
    finally:
        context.close()
