"""Admin › Accounts in Chromium: an admin adds an account with a set-password link, the
person opens the link in another browser, chooses a password and signs in with it; the admin
deactivates the account and that browser's session ends. Then the same actions without
JavaScript, through the account's page, at phone width."""

from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from kmeweb.auth.models import AdminUser
from tests.browser.checks import BrowserChecks, check_a11y

NEW_PASSWORD = "a long new passphrase"


def test_an_account_added_with_a_link_signs_in_until_deactivated(
    page, browser, live_server, sign_in, session
):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    sign_in("admin")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("link", name="Accounts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Accounts")

    page.get_by_role("link", name="Add account").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="Add account")).to_be_visible()
    expect(dialog.get_by_label("Email")).to_be_focused()
    expect(dialog.get_by_label("A one-time set-password link")).to_be_checked()
    check_a11y(page)
    dialog.get_by_label("Email").fill("jane@example")
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog.locator("#email-error")).to_contain_text("not a valid email address")
    dialog.get_by_label("Email").fill("jane@example.com")
    dialog.get_by_label("Name").fill("Jane Doe")
    dialog.get_by_label("Viewer").check()
    dialog.get_by_role("button", name="Add account").click()

    expect(dialog).to_contain_text("Copy the link now: it will not be shown again.")
    link = dialog.get_by_test_id("secret-value").inner_text().strip()
    assert re.fullmatch(rf"{re.escape(live_server)}/auth/set-password/[\w-]{{40,}}", link)
    expect(dialog.get_by_role("button", name="Copy the link")).to_be_focused()
    check_a11y(page)
    dialog.get_by_role("button", name="Copy the link").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == link
    with page.expect_navigation():  # closing the dialog reloads the list behind it
        dialog.get_by_role("button", name="Done").click()
    row = page.get_by_test_id("account-row").filter(has_text="jane@example.com")
    expect(row.get_by_test_id("account-status").last).to_have_text("Waiting for a password")
    assert link not in page.content()  # shown once, never again

    # Jane, in a browser of her own.
    context = browser.new_context(viewport={"width": 390, "height": 844})
    janes = context.new_page()
    checks = BrowserChecks()
    checks.watch(janes)
    try:
        janes.goto(link)
        expect(janes.get_by_role("heading", name="Choose a password")).to_be_visible()
        expect(janes.locator("main")).to_contain_text("jane@example.com")
        janes.get_by_label("New password").fill("too short")
        janes.get_by_label("The same password again").fill("too short")
        janes.get_by_role("button", name="Save password").click()
        expect(janes.locator("#password-error")).to_contain_text("at least 12 characters")
        janes.get_by_label("New password").fill(NEW_PASSWORD)
        janes.get_by_label("The same password again").fill(NEW_PASSWORD)
        janes.get_by_role("button", name="Save password").click()
        expect(janes).to_have_url(f"{live_server}/auth/login")
        expect(janes.get_by_role("status")).to_contain_text("Your password is set")
        janes.get_by_label("Email").fill("jane@example.com")
        janes.get_by_label("Password").fill(NEW_PASSWORD)
        janes.get_by_role("button", name="Sign in").click()
        expect(janes.get_by_role("heading", level=1)).to_have_text("Overview")
        expect(janes.locator(".kme-role-viewer")).to_have_text("viewer")
        janes.goto(link)  # the link worked once
        expect(janes.locator("main")).to_contain_text("used already")

        # The admin deactivates her: her next click finds her signed out.
        page.reload()
        expect(row.get_by_test_id("account-status").last).to_have_text("Active")
        expect(row.get_by_test_id("account-last-sign-in")).not_to_have_text("never")
        row.get_by_role("button", name="Actions for jane@example.com").click()
        row.get_by_role("link", name="Deactivate…").click()
        expect(dialog.get_by_role("heading", name="Deactivate account")).to_be_visible()
        expect(dialog).to_contain_text("signed out at once on every browser")
        check_a11y(page)
        dialog.get_by_role("button", name="Deactivate").click()
        expect(page.get_by_role("status").filter(has_text="is deactivated")).to_be_visible()
        expect(row.get_by_test_id("account-status").last).to_have_text("Deactivated")

        janes.goto(f"{live_server}/audit/")
        expect(janes).to_have_url(re.compile(r"/auth/login\?next="))
        session.expire_all()
        jane = session.scalar(select(AdminUser).where(AdminUser.email == "jane@example.com"))
        assert not jane.active and jane.check_password(NEW_PASSWORD)
    finally:
        checks.finish(janes)
        context.close()


def test_the_actions_work_without_javascript_at_phone_width(
    browser, live_server, make_admin, session
):
    from tests.conftest import PASSWORD

    make_admin("nojs@example.com", "admin")
    make_admin("ops@example.com", "viewer")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(f"{live_server}/auth/login")
        page.get_by_label("Email").fill("nojs@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{live_server}/admin/accounts/")
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= 390, f"the list is {wide} px wide"
        page.get_by_role("button", name="Actions for ops@example.com").click()  # a link, here
        expect(page.get_by_role("heading", level=1)).to_have_text("ops@example.com")
        page.get_by_role("link", name="Reset password…").click()
        page.get_by_label("A generated password").check()
        page.get_by_role("button", name="Reset password").click()
        expect(page.locator("main")).to_contain_text("Copy the password now")
        password = page.get_by_test_id("secret-value").inner_text().strip()
        page.get_by_role("link", name="Done").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Accounts")
        session.expire_all()
        ops = session.scalar(select(AdminUser).where(AdminUser.email == "ops@example.com"))
        assert ops.check_password(password)
    finally:
        context.close()


def test_after_a_refusal_focus_stays_where_the_admin_moved_it(page, sign_in):
    """The refused dialog focuses its invalid field once, when it arrives; htmx's own focus
    of the [autofocus] field when the swap settles (20 ms later) no longer takes the admin's
    focus back: what they type next goes where they are typing. The settle is slowed here
    so that the admin is surely in the Name field before it."""
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in("admin")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("link", name="Accounts").click()
    page.get_by_role("link", name="Add account").click()
    dialog = page.locator("#form-dialog")
    email, name = dialog.get_by_label("Email"), dialog.get_by_label("Name")
    expect(email).to_be_focused()
    email.fill("jane@example")
    page.evaluate(
        """() => {
        htmx.config.defaultSettleDelay = 400;
        window.kmeSettled = new Promise((done) =>
          document.body.addEventListener("htmx:afterSettle", done, { once: true }));
      }"""
    )
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog.locator("#email-error")).to_contain_text("not a valid email address")
    expect(email).to_be_focused()  # the invalid field, as the refusal arrives
    name.click()
    page.keyboard.type("Jane Doe")
    page.evaluate("() => window.kmeSettled")
    expect(name).to_be_focused()
    page.keyboard.type(" Jr")
    expect(name).to_have_value("Jane Doe Jr")
    expect(email).to_have_value("jane@example")
