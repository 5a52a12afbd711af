"""The console's look in Chromium: every page at desktop and phone width for an admin and a
viewer, the navigation menu at phone width, the colour mode, and the checks every browser
test relies on (axe-core and the Content-Security-Policy) catching what they should."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from kmeweb.audit import services as audit
from kmeweb.operations import services as operations
from kmeweb.outbox.models import Change
from kmeweb.security import CONTENT_SECURITY_POLICY
from tests.browser.checks import check_a11y
from tests.browser.navigation import open_phone_menu
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

DESKTOP, PHONE = 1280, 390


def _seed(session) -> dict[str, int]:
    """Operations in every state, one with a long error and changes, and audit events."""
    ids = {}
    rows = [
        ("done", "Sync from KME", 1450, 1450, None),
        ("running", "Move 1,200 devices to Field Sales (Samsung Galaxy XCover)", 1200, 480, None),
        ("queued", "Approve upload 4411 from Acme Reseller", 250, 0, None),
        ("failed", "Move 5 devices to Warehouse", 5, 0,
         "1 of 1 changes failed: KME refused it (4001700): the device is already assigned "
         "to a profile managed by another MDM tenant"),
    ]  # fmt: skip
    for status, label, total, done, error in rows:
        op = operations.create_operation(session, "device.move", label, total, "test")
        op.status, op.done, op.error = status, done, error
        ids[status] = op.id
    session.add(
        Change(kind="device_move", payload={}, device_count=5, status="failed", attempts=8,
               operation_id=ids["failed"], last_error="KME refused it (4001700)")
    )  # fmt: skip
    for i in range(12):
        audit.record(
            session, "sync", "device.move", "profile", 1000 + i,
            {"from": "Samsung KME Default Profile", "to": "Field Sales", "count": i * 100},
            ip="192.0.2.10",
        )  # fmt: skip
    session.commit()
    return ids


def _fits(page, width: int) -> None:
    """The page does not scroll sideways at this width."""
    scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width} px wide at {width} px"


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_every_page_fits_desktop_and_phone_width(
    role, sign_in, live_server, session, browser_checks
):
    page = sign_in(role)
    ids = _seed(session)
    pages = [
        ("/", "Overview"),
        ("/operations/", "Operations"),
        ("/operations/?status=failed", "Operations"),
        (f"/operations/{ids['failed']}", f"Operation {ids['failed']}"),
        ("/audit/", "Audit log"),
        ("/audit/?date_from=yesterday", "Audit log"),
        ("/no/such/page", "Page not found"),
    ]
    for width in (DESKTOP, PHONE):
        page.set_viewport_size({"width": width, "height": 900})
        for path, heading in pages:
            page.goto(live_server + path)
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            _fits(page, width)
        check_a11y(page)  # the last page once more, at this width

    # What differs between the roles: only an admin is offered Retry.
    page.goto(f"{live_server}/operations/?status=failed")
    # axe looked at each page at both widths (as the browser left it).
    for path, _heading in pages:
        assert browser_checks.pages_checked.count(live_server + path) >= 2, path
    retry = page.locator(f"#op-row-{ids['failed']}").get_by_role("button", name="Retry")
    expect(retry).to_have_count(1 if role == "admin" else 0)
    expect(page.locator(".whoami")).to_contain_text(f"{role}@example.com")
    expect(page.locator(".whoami")).to_contain_text(role)


def test_wide_tables_scroll_inside_their_own_box_at_phone_width(signed_in, live_server, session):
    page = signed_in
    ids = _seed(session)
    page.set_viewport_size({"width": PHONE, "height": 900})
    page.goto(f"{live_server}/operations/{ids['failed']}")
    box = page.get_by_role("region", name="Changes sent to KME")
    wider = box.evaluate("el => el.scrollWidth > el.clientWidth")
    assert wider, "the changes table fits at 390 px; this test no longer tests scrolling"
    _fits(page, PHONE)
    note = box.get_by_role("columnheader", name="Note")
    expect(note).not_to_be_in_viewport()
    box.hover()
    page.mouse.wheel(1000, 0)  # a sideways swipe scrolls the table, not the page
    expect(note).to_be_in_viewport()
    _fits(page, PHONE)
    box.focus()  # and a keyboard user can reach it and scroll it back
    page.keyboard.press("ArrowLeft")
    expect(box).to_be_focused()


def test_the_navigation_collapses_into_a_menu_at_phone_width(
    signed_in, live_server, browser_checks
):
    page = signed_in
    nav = page.get_by_role("navigation", name="Main")
    menu = nav.get_by_role("button", name="Menu")
    audit_link = nav.get_by_role("link", name="Audit log")
    page.goto(f"{live_server}/operations/")
    expect(menu).to_be_hidden()  # desktop: the links are on the bar
    expect(audit_link).to_be_visible()

    page.set_viewport_size({"width": PHONE, "height": 800})
    expect(menu).to_be_visible()
    expect(audit_link).to_be_hidden()
    expect(nav.get_by_role("button", name="Sign out")).to_be_hidden()
    _fits(page, PHONE)

    open_phone_menu(page)
    expect(nav.get_by_role("link", name="Operations")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("button", name="Sign out")).to_be_visible()
    check_a11y(page)  # with the menu open
    audit_link.click()
    expect(page).to_have_url(f"{live_server}/audit/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    expect(audit_link).to_be_hidden()  # a new page starts with the menu closed

    # Sign out leaves the page: its navigation is held while axe checks the page as it
    # loaded, and opening the menu during that check makes it run again: the check is let
    # finish first, so the deadline times the sign-out alone.
    browser_checks.wait_for_the_load_check(page)
    open_phone_menu(page)
    nav.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server}/auth/login")
    signed_out = page.get_by_role("status").filter(has_text="You have been signed out.")
    expect(signed_out).to_be_visible()
    signed_out.get_by_role("button", name="Dismiss").click()  # Bootstrap's alert, under the CSP
    expect(signed_out).to_have_count(0)


def test_sign_in_with_errors_at_phone_width(page, live_server, make_admin):
    make_admin("admin@example.com", "admin")
    page.set_viewport_size({"width": PHONE, "height": 800})
    page.goto(f"{live_server}/auth/login")
    expect(page.get_by_role("button", name="Menu")).to_have_count(0)  # nothing to navigate
    _fits(page, PHONE)
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_role("button", name="Sign in").click()

    password = page.get_by_label("Password")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_accessible_description("This field is required.")
    expect(password).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(page.locator("#password-error")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value("admin@example.com")  # typed value kept
    expect(page.get_by_label("Email")).not_to_have_attribute("aria-invalid", "true")
    _fits(page, PHONE)

    password.fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")  # home after sign-in


def _background_luminance(locator) -> float:
    rgb = locator.evaluate("el => getComputedStyle(el).backgroundColor")
    r, g, b = (int(x) / 255 for x in re.findall(r"\d+", rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_the_colour_mode_follows_the_system(signed_in, live_server, session):
    page = signed_in
    _seed(session)
    page.emulate_media(color_scheme="dark")
    page.goto(f"{live_server}/operations/")  # axe checks it in dark on load
    html, body = page.locator("html"), page.locator("body")
    expect(html).to_have_attribute("data-bs-theme", "dark")
    assert _background_luminance(body) < 0.2
    assert _background_luminance(page.locator(".card").first) < 0.2
    page.get_by_role("link", name="Failed").click()  # htmx swap, still dark
    expect(page).to_have_url(f"{live_server}/operations/?status=failed")
    check_a11y(page)

    page.emulate_media(color_scheme="light")  # the system changes while the page is open
    expect(html).to_have_attribute("data-bs-theme", "light")
    assert _background_luminance(body) > 0.8
    check_a11y(page)


def test_every_answer_carries_the_content_security_policy(signed_in, live_server):
    page = signed_in
    for path in ("/operations/", "/audit/", "/no/such/page", "/static/css/app.css"):
        response = page.goto(live_server + path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    page.goto(f"{live_server}/operations/")
    # The libraries run under it: htmx answers and Bootstrap's JavaScript loaded.
    assert page.evaluate("() => typeof htmx.ajax === 'function' && 'Modal' in bootstrap")


def test_the_checks_catch_a_csp_violation_and_an_axe_violation(
    signed_in, live_server, browser_checks
):
    page = signed_in
    page.goto(f"{live_server}/operations/")
    # The page as it loaded is checked first: what is put in it below is for check_a11y alone.
    browser_checks.wait_for_the_load_check(page)
    assert not browser_checks.csp
    # An inline style attribute, as a template might carry one: the CSP refuses it and the
    # recorder reports it.
    page.evaluate(
        """async () => {
          const seen = new Promise(resolve =>
            document.addEventListener("securitypolicyviolation", resolve, {once: true}));
          document.body.insertAdjacentHTML("beforeend", '<p id="bad" style="color: red">x</p>');
          await seen;
          await window.kmewebCspReported;  // the Python side has it
        }"""
    )
    assert [v["directive"] for v in browser_checks.csp if "directive" in v] == ["style-src-attr"]
    # An image without a text alternative: axe-core's image-alt rule (critical).
    page.evaluate(
        """() => document.getElementById("bad").insertAdjacentHTML(
             "afterend", '<img id="no-alt" src="/static/vendor/bootstrap-icons.svg">')"""
    )
    with pytest.raises(AssertionError, match=r"critical image-alt .*#no-alt"):
        check_a11y(page)
    page.evaluate("() => ['bad', 'no-alt'].forEach(id => document.getElementById(id).remove())")
    browser_checks.csp.clear()  # found on purpose
