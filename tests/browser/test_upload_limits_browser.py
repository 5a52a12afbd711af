"""A file over the size limit (413) says so where the admin is looking, on every upload route,
with and without JavaScript (issue 20, item 2): inside the Import devices dialog, next to the
CSV file of Admin › Users import, next to keys.json on the Knox Integration settings.

The limits are made small here so that the files stay small: CSV_MAX_BYTES (what the CSV
reader accepts) and MAX_CONTENT_LENGTH (what any request body may hold).

KMEWEB_SCREENSHOTS=<dir> also saves each refusal at 1280 and 390 pixels wide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.factories import make_profile, next_imei

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("KMEWEB_SCREENSHOTS")
CSV_LIMIT = 1024  # bytes: what an import reads
BODY_LIMIT = 64 * 1024  # bytes: what any request may send


@pytest.fixture
def app_config(app_config: dict) -> dict:
    app_config.update({"CSV_MAX_BYTES": CSV_LIMIT, "MAX_CONTENT_LENGTH": BODY_LIMIT})
    return app_config


def _shot(page, name: str) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)  # let the modal re-lay out (screenshots only)
        page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=width == 1280)
    page.set_viewport_size({"width": 1280, "height": 900})


def _csv(size: int) -> dict:
    lines = ["imei"]
    while sum(len(x) + 2 for x in lines) < size:
        lines.append(next_imei())
    return {"name": "big.csv", "mimeType": "text/csv", "buffer": "\r\n".join(lines).encode()}


@pytest.fixture
def nojs_page(browser, live_server, make_admin):
    """A page without JavaScript, signed in as an admin through the login form."""
    make_admin("nojs@example.com", "admin")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server}/auth/login")
    page.get_by_label("Email").fill("nojs@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    yield page
    context.close()


# A file the import reads and refuses (past CSV_MAX_BYTES), and one it refuses unread (past
# the limit and the form's overhead, or past MAX_CONTENT_LENGTH).
SIZES = [("read", 4 * CSV_LIMIT), ("unread", 2 * BODY_LIMIT)]


@pytest.mark.parametrize("size", [s for _, s in SIZES], ids=[n for n, _ in SIZES])
def test_import_devices_dialog_says_the_file_is_too_large(signed_in, live_server, session, size):
    page = signed_in
    profile = make_profile(session, name="Warehouse", kind="self_maintained", config={})
    page.goto(f"{live_server}/profiles/{profile.id}")
    page.get_by_role("link", name="Import devices").click()
    dialog = page.locator("#form-dialog")
    dialog.get_by_label("CSV file").set_input_files(_csv(size))
    dialog.get_by_role("button", name="Preview").click()
    expect(dialog.locator("#file-error")).to_contain_text("The file is larger than 1 KB")
    expect(dialog.get_by_label("CSV file")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#flash-area")).not_to_contain_text("413")
    _shot(page, f"import-too-large-{size}")


def test_import_devices_without_javascript_says_the_file_is_too_large(
    nojs_page, live_server, session
):
    page = nojs_page
    profile = make_profile(session, name="Warehouse", kind="self_maintained", config={})
    page.goto(f"{live_server}/profiles/{profile.id}/import")
    page.get_by_label("CSV file").set_input_files(_csv(4 * CSV_LIMIT))
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#file-error")).to_contain_text("The file is larger than 1 KB")


@pytest.mark.parametrize("size", [s for _, s in SIZES], ids=[n for n, _ in SIZES])
def test_users_import_says_the_file_is_too_large(signed_in, live_server, size):
    page = signed_in
    page.goto(f"{live_server}/admin/users/import")
    page.get_by_label("CSV file").set_input_files(_csv(size))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#file-error")).to_contain_text("The file is larger than 1 KB")
    expect(page.get_by_label("CSV file")).to_have_attribute("aria-invalid", "true")
    _shot(page, f"users-import-too-large-{size}")


def test_users_import_without_javascript_says_the_file_is_too_large(nojs_page, live_server):
    page = nojs_page
    page.goto(f"{live_server}/admin/users/import")
    page.get_by_label("CSV file").set_input_files(_csv(2 * BODY_LIMIT))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#file-error")).to_contain_text("The file is larger than 1 KB")


def _keys_json(size: int) -> dict:
    body = '{"Public": "' + "A" * size + '"}'
    return {"name": "keys.json", "mimeType": "application/json", "buffer": body.encode()}


def test_keys_json_too_large_says_so_next_to_the_field(signed_in, live_server):
    page = signed_in
    page.goto(f"{live_server}/integration/")
    page.get_by_label("Legacy").check()
    page.get_by_label("keys.json").set_input_files(_keys_json(2 * BODY_LIMIT))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#keys_file-error")).to_contain_text("larger than 20 KB")
    expect(page.get_by_label("keys.json")).to_have_attribute("aria-invalid", "true")
    _shot(page, "keys-json-too-large")


def test_keys_json_too_large_without_javascript(nojs_page, live_server):
    page = nojs_page
    page.goto(f"{live_server}/integration/")
    page.get_by_label("Legacy").check()
    page.get_by_label("keys.json").set_input_files(_keys_json(2 * BODY_LIMIT))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#keys_file-error")).to_contain_text("larger than 20 KB")
