"""Admin › API tokens in Chromium: an admin makes a token in the New token dialog, sees its
secret once, a script's call with it works; Revoke in the page stops the same call at once."""

from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from kmeweb.apitokens.models import ApiToken, Scope
from tests.browser.checks import check_a11y


def _call(page, live_server: str, secret: str):
    """GET /api/v1/operations as a script would, with the bearer token (the browser's own
    session cookie rides along too, and authorises nothing)."""
    return page.request.get(
        f"{live_server}/api/v1/operations", headers={"Authorization": f"Bearer {secret}"}
    )


def test_an_admin_makes_a_token_uses_it_and_revokes_it(page, live_server, sign_in, session):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    sign_in("admin")
    page.goto(f"{live_server}/admin/api-tokens/")
    expect(page.get_by_test_id("tokens-table")).to_contain_text("No tokens yet")

    page.get_by_role("link", name="New token").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="New token")).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    check_a11y(page)
    dialog.get_by_label("Name").fill("Nightly report")
    dialog.get_by_label("Read operations and their progress").check()
    dialog.get_by_label("Expires in (days)").fill("30")
    dialog.get_by_role("button", name="Create token").click()

    secret_box = dialog.get_by_test_id("token-secret")
    expect(secret_box).to_be_visible()
    expect(dialog).to_contain_text("it will not be shown again")
    secret = secret_box.inner_text().strip()
    assert secret.startswith("kmw_")
    expect(dialog.get_by_test_id("token-curl")).to_contain_text(f"Bearer {secret}")
    expect(dialog.get_by_role("button", name="Copy the token")).to_be_focused()
    check_a11y(page)
    dialog.get_by_role("button", name="Copy the token").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == secret

    with page.expect_navigation():  # closing the dialog reloads the list behind it
        dialog.get_by_role("button", name="Done").click()
    row = page.get_by_test_id("token-row").filter(has_text="Nightly report")
    expect(row).to_contain_text(Scope.OPERATIONS_READ.value)
    expect(row.get_by_test_id("token-last-used")).to_have_text("never")
    assert secret not in page.content()  # shown once, never again

    ok = _call(page, live_server, secret)
    assert ok.status == 200, ok.text()
    assert ok.json() == {"items": [], "next_cursor": None}
    page.reload()
    expect(row.get_by_test_id("token-last-used")).to_contain_text("from 127.0.0.1")

    row.get_by_role("button", name="Revoke Nightly report").click()
    expect(dialog.get_by_role("heading", name="Revoke token")).to_be_visible()
    expect(dialog).to_contain_text("Revoke the token “Nightly report”")
    check_a11y(page)
    assert _call(page, live_server, secret).status == 200  # asking changed nothing
    dialog.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status").filter(has_text="was revoked")).to_be_visible()
    expect(row.get_by_test_id("token-state").first).to_have_text("revoked")
    expect(row.get_by_role("button", name="Revoke Nightly report")).to_have_count(0)

    refused = _call(page, live_server, secret)
    assert refused.status == 401
    assert refused.json()["code"] == "invalid_token"
    session.expire_all()
    assert session.scalar(select(ApiToken)).revoked_at is not None
