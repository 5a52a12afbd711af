"""In Chromium: an htmx action refused (403) or failing (500) shows why in the flash area
and leaves the page alone; an htmx action after the session ended goes to sign-in."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from kmeweb.auth.models import AdminUser
from kmeweb.operations import services
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def _failed(session, label: str):
    op = services.create_operation(session, "device.move", label, 5, "test")
    op.status, op.error = "failed", "KME refused it (4001700)"
    session.commit()
    return op


def test_a_refused_htmx_action_shows_403_in_the_flash_area(signed_in, live_server, session):
    page = signed_in
    op = _failed(session, "Move 5 devices to Sales")
    page.goto(f"{live_server}/operations/?status=failed")
    # Another admin turns this account into a viewer while the page is open.
    session.query(AdminUser).update({"role": "viewer"})
    session.commit()
    page.locator(f"#op-row-{op.id}").get_by_role("button", name="Retry").click()
    page.get_by_role("dialog").get_by_role("button", name="Retry").click()  # confirm
    expect(page.locator("#flash-area")).to_contain_text(
        "Your role can look but not change anything."
    )
    expect(page.locator(f"#op-row-{op.id}")).to_contain_text("KME refused it")  # page kept
    expect(page).to_have_url(f"{live_server}/operations/?status=failed")


@pytest.fixture
def boom(app):
    """A route that fails, registered before the live server serves its first request."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.post("/_test/boom")
    def _boom():
        raise RuntimeError("secret internals")

    return "/_test/boom"


def test_a_failing_htmx_action_shows_500_with_the_request_id(boom, signed_in, live_server, session):
    page = signed_in
    op = _failed(session, "Move 5 devices to Field")
    page.goto(f"{live_server}/operations/?status=failed")
    form = page.locator(f"#op-row-{op.id} form")
    form.evaluate("f => { f.setAttribute('hx-post', '/_test/boom'); htmx.process(f); }")
    form.get_by_role("button", name="Retry").click()
    with page.expect_response(re.compile(r"/_test/boom$")) as answer:
        page.get_by_role("dialog").get_by_role("button", name="Retry").click()  # confirm
    request_id = answer.value.headers["x-request-id"]
    flash = page.locator("#flash-area")
    expect(flash).to_contain_text("Something went wrong")
    expect(flash).to_contain_text(request_id)
    expect(flash).not_to_contain_text("secret internals")
    expect(page.locator(f"#op-row-{op.id}")).to_be_visible()


def test_an_htmx_action_after_the_session_ended_goes_to_sign_in(signed_in, live_server):
    page = signed_in
    page.goto(f"{live_server}/operations/")
    page.context.clear_cookies()  # the session ended (signed out elsewhere, or expired)
    page.get_by_role("link", name="Failed").click()
    expect(page).to_have_url(re.compile(r"/auth/login\?next=/operations/"))
    expect(page.get_by_role("heading", name="Sign in to kmeweb")).to_be_visible()
    expect(page.locator("#operations-table")).to_have_count(0)  # not swapped into the page
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/operations/")
