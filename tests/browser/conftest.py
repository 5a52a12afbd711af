"""Chromium (Debian's, never a downloaded build) against a live server in a thread.

Every test's `page` is checked by tests/browser/checks.py: axe-core on each page it visits
and no Content-Security-Policy violation, or the test fails. Every action waits for the load
of the page it acts on (`actions_wait_for_the_page_load`), so no test needs its own wait.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Keyboard, Locator, Mouse, Page, expect

from tests.browser.checks import BrowserChecks

CHROMIUM = os.environ.get("KMEWEB_CHROMIUM", "/usr/bin/chromium")
# Deadlines, not waits: an expectation passes as soon as it holds. Every page load also runs
# axe-core, and make test drives Chromium next to a second test run on two cores, so a page
# can take longer than Playwright's 5 s default without anything being wrong.
EXPECT_TIMEOUT_MS = 15_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is required at {CHROMIUM} (make test installs it)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


# Every action a test takes on a page element, the keyboard or the mouse.
LOCATOR_ACTIONS = (
    "check", "clear", "click", "dblclick", "dispatch_event", "drag_to", "fill", "focus",
    "hover", "press", "press_sequentially", "select_option", "select_text", "set_checked",
    "set_input_files", "tap", "type", "uncheck",
)  # fmt: skip


def _after_load(action):
    def act(self: Locator, *args, **kwargs):
        self.page.wait_for_load_state("load")
        return action(self, *args, **kwargs)

    return act


class _InputAfterLoad:
    """page.keyboard or page.mouse whose every call first waits for the page's load."""

    def __init__(self, device: Keyboard | Mouse, page: Page) -> None:
        self._device, self._page = device, page

    def __getattr__(self, name: str):
        call = getattr(self._device, name)

        def act(*args, **kwargs):
            self._page.wait_for_load_state("load")
            return call(*args, **kwargs)

        return act


@pytest.fixture(autouse=True)
def actions_wait_for_the_page_load(monkeypatch) -> None:
    """Every action of a browser test waits until the page it acts on has loaded.

    A click that navigates, an htmx redirect or `goto(wait_until="commit")` hands the test a
    page whose deferred scripts (htmx, Bootstrap) may not have run yet: a click then does
    nothing, or follows a link htmx has not taken over yet. Waiting for the load event before
    each action, here and nowhere else, closes that family of races for every test. It
    returns at once on a page that has loaded, and an htmx swap is not a new page.
    """
    for name in LOCATOR_ACTIONS:
        monkeypatch.setattr(Locator, name, _after_load(getattr(Locator, name)))
    for name in ("keyboard", "mouse"):
        device = getattr(Page, name)
        monkeypatch.setattr(
            Page,
            name,
            property(lambda page, device=device: _InputAfterLoad(device.fget(page), page)),
        )


@pytest.fixture
def browser_checks() -> BrowserChecks:
    """The axe and CSP findings of this test's page (a test may inspect or clear them).
    KMEWEB_BROWSER_AXE=0 leaves axe out (make test's PostgreSQL browser run: the pages and their
    markup are those the SQLite run checked)."""
    return BrowserChecks(axe=os.environ.get("KMEWEB_BROWSER_AXE", "1") != "0")


@pytest.fixture
def page(page, browser_checks: BrowserChecks):
    """pytest-playwright's page, with axe-core on every load and a CSP violation recorder."""
    page.set_default_timeout(2 * EXPECT_TIMEOUT_MS)
    browser_checks.watch(page)
    yield page
    browser_checks.finish(page)


@pytest.fixture
def sign_in(page, live_server, make_admin):
    """sign_in(role="admin") creates `<role>@example.com`, signs in through the sign-in
    endpoint (the form's POST, with its CSRF token, from the page's own cookie jar) and opens
    the Overview. The sign-in page itself is driven in Chromium by test_login_browser.py; here
    it would cost every test a page load and an axe-core run."""
    from tests.conftest import PASSWORD, csrf_token_from

    def _sign_in(role: str = "admin"):
        email = f"{role}@example.com"
        make_admin(email, role)
        form = page.request.get(f"{live_server}/auth/login")
        data = {"email": email, "password": PASSWORD, "csrf_token": csrf_token_from(form.text())}
        answer = page.request.post(f"{live_server}/auth/login", form=data, max_redirects=0)
        assert answer.status == 303, answer.text()
        page.goto(f"{live_server}/")
        return page

    return _sign_in


@pytest.fixture
def signed_in(sign_in):
    """A page signed in as an admin, on the Overview."""
    return sign_in("admin")
