"""The API reference as a viewer reads it: every operation of the document, reachable from
the contents, and each problem code a problem's `type` links to. axe-core and the CSP checks
run on it as on every page (one axe run of this long page takes seconds, so the test checks
it once, at desktop width, and ends on a short page)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from kmeweb.api.docs import document
from kmeweb.apidocs import reference
from kmeweb.errors import PROBLEM_CODES

pytestmark = pytest.mark.browser


def test_a_viewer_reads_the_api_reference(sign_in, live_server, app, browser_checks):
    operations = reference.build(document(), PROBLEM_CODES).operations
    page = sign_in("viewer")
    # Bootstrap scrolls to an anchor smoothly, and the axe run of each load can stop that
    # scroll half way; a reader who asks for reduced motion jumps straight there.
    page.emulate_media(reduced_motion="reduce")
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("link", name="API reference").click()
    expect(page.get_by_role("heading", name="API reference", level=1)).to_be_visible()
    # axe's run of this long page holds it for seconds: a count polled during the parse
    # would look again only after the run (CI once timed out on 44 of 54 that way).
    browser_checks.wait_for_the_load_check(page)
    expect(page.locator("article[id^=op-]")).to_have_count(len(operations))
    first = operations[0]
    contents = page.get_by_role("navigation", name="Contents of the API reference")
    contents.locator(f'a[href="#{first.anchor}"]').click()
    expect(page.locator(f"#{first.anchor}")).to_be_in_viewport()
    expect(page.locator(f"#{first.anchor}")).to_contain_text(first.scopes[0])

    # A problem's `type` lands on its code's entry.
    page.goto(f"{live_server}/api-docs#problem-invalid_token")
    expect(page.locator("#problem-invalid_token")).to_be_in_viewport()
    expect(page.get_by_role("link", name="Download openapi.json")).to_be_visible()

    page.get_by_role("link", name="kmeweb").click()  # the end-of-test check: a short page
    expect(page).to_have_url(f"{live_server}/")
