"""The device page in Chromium (issue 24): an admin types an IMEI in the header's search, lands
on the device's page, presses Check with Samsung and, once a real worker asked the simulator,
sees Samsung's value beside kmeweb's.

KMEWEB_SCREENSHOTS=<dir> also saves the page before and after the check at 1280 and 390 wide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from kmeweb.devices.models import Device
from kmeweb.sync.jobs import start_pull
from tests.sync_fixtures import wait_until, with_sync_config

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("KMEWEB_SCREENSHOTS")


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def _shot(page, name: str) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)  # let the page re-lay out (screenshots only)
        page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_search_an_imei_open_the_device_and_check_with_samsung(
    signed_in, live_server, session, integration, sim, worker_processes
):
    page = signed_in
    start_pull(session, "test")
    session.commit()
    worker_processes.start("device-page-worker", scheduler=False)
    wait_until(lambda: session.scalar(select(func.count(Device.id))) == 1450, what="the pull")
    device = session.scalar(select(Device).order_by(Device.id).limit(1))
    sim.control("PATCH", f"/devices/{device.kme_device_id}", json={"userName": "zoe@example.com"})

    page.get_by_test_id("header-search").fill(device.imei)
    page.get_by_test_id("header-search").press("Enter")
    expect(page).to_have_url(f"{live_server}/devices/{device.id}")
    expect(page.get_by_test_id("device-title")).to_have_text(device.imei)
    expect(page.get_by_test_id("fact-upload")).to_contain_text(
        sim.devices()[device.kme_device_id].upload_id
    )
    _shot(page, "device-page")

    page.get_by_role("button", name="Check with Samsung").click()
    expect(page.get_by_test_id("now-user")).to_have_text("zoe@example.com", timeout=30_000)
    expect(page.get_by_test_id("ours-user")).to_have_text("—")
    expect(page.get_by_test_id("check-running")).to_have_count(0)
    expect(page.locator("#kme-check[hx-trigger]")).to_have_count(0)  # polling stopped
    _shot(page, "device-page-checked")
