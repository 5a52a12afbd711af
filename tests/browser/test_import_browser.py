"""Import devices in Chromium against a live server and a real worker: a file with errors is
refused with its report, the corrected file is previewed, confirmed and its devices appear.

KMEWEB_SCREENSHOTS=<dir> also saves the dialog, the refused preview and the result at 1280 and
390 pixels wide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from kmeweb.devices.models import Device
from tests.browser.checks import check_a11y
from tests.factories import make_end_user, make_profile, next_imei

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("KMEWEB_SCREENSHOTS")


def _shot(page, name: str) -> None:
    """Save the page at both widths (only when KMEWEB_SCREENSHOTS names a directory)."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)  # let the modal re-lay out (screenshots only)
        page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=width == 1280)
    page.set_viewport_size({"width": 1280, "height": 900})


def _csv(rows: list[str]) -> dict:
    text = "imei,serial,username,enrollment_password\r\n" + "\r\n".join(rows) + "\r\n"
    return {"name": "warehouse.csv", "mimeType": "text/csv", "buffer": text.encode()}


def test_import_a_file_with_errors_fix_it_and_see_the_devices(
    signed_in, live_server, session, worker_processes
):
    page = signed_in
    profile = make_profile(session, name="Warehouse", kind="self_maintained", config={})
    make_end_user(session, username="jane.doe")
    good = [next_imei() for _ in range(3)]
    bad_luhn = good[1][:-1] + str((int(good[1][-1]) + 1) % 10)

    page.goto(f"{live_server}/profiles/{profile.id}")
    page.get_by_role("link", name="Import devices").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_role("heading", name="Import devices")).to_be_visible()
    expect(dialog.get_by_role("link", name="Download template")).to_be_visible()
    check_a11y(page)
    _shot(page, "import-dialog")

    dialog.get_by_label("CSV file").set_input_files(
        _csv(
            [
                f"{good[0]},,jane.doe,Secret-2026",
                f"{bad_luhn},,,",
                f"{good[2]},,nobody,",
                f"{good[0]},,,",
            ]
        )
    )
    dialog.get_by_role("button", name="Preview").click()
    expect(dialog.get_by_test_id("import-refused")).to_contain_text("3 rows cannot be imported")
    errors = dialog.get_by_test_id("import-errors").locator("tbody tr")
    expect(errors).to_have_count(3)
    expect(errors.nth(0)).to_contain_text("Luhn")
    expect(errors.nth(1)).to_contain_text("No such user")
    expect(errors.nth(2)).to_contain_text("A duplicate of row 2")
    expect(dialog.get_by_role("button", name="Confirm import")).to_have_count(0)
    expect(dialog.get_by_test_id("error-report")).to_be_visible()
    check_a11y(page)
    _shot(page, "import-errors")
    assert session.scalar(select(func.count()).select_from(Device)) == 0

    dialog.get_by_label("CSV file").set_input_files(
        _csv([f"{good[0]},,jane.doe,Secret-2026", f"{good[1]},,,", f"{good[2]},R58M12ABCDE,,"])
    )
    dialog.get_by_role("button", name="Check the corrected file").click()
    expect(dialog.get_by_test_id("count-new")).to_have_text("3")
    expect(dialog.get_by_test_id("count-errors")).to_have_text("0")
    _shot(page, "import-confirm")
    worker_processes.start("import-worker", scheduler=False)
    dialog.get_by_role("button", name="Confirm import").click()

    page.wait_for_url("**/profiles/*?op=*", timeout=30_000)
    # (The flash message may already be gone: the finished import reloads the page.)
    expect(page.locator("#operation-area")).to_contain_text(
        "Import 3 devices into Warehouse", timeout=30_000
    )
    expect(page.get_by_test_id("op-status")).to_have_text("done", timeout=60_000)
    # The finished import reloads the page: its devices are listed and counted.
    expect(page.get_by_test_id("fact-devices")).to_have_text("3", timeout=10_000)
    table = page.locator("#devices")
    for imei in good:
        expect(table).to_contain_text(imei)
    expect(table).to_contain_text("jane.doe")
    expect(page.locator("body")).not_to_contain_text("Secret-2026")
    check_a11y(page)
    _shot(page, "import-done")
