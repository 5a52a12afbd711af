"""The Operations page shows a pull and its progress while a real worker runs it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.sync_fixtures import with_sync_config

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def test_pull_progress_is_shown_until_done(
    signed_in, live_server, session, integration, sim, worker_processes
):
    from kmeweb.sync.jobs import start_pull

    page = signed_in
    # Slow KME's device listing so the running state is visible.
    sim.fault(path="/kcs/v1/kme/devices/list", latencyMs=400, rate=1.0)
    integration.settings = {"page_size": 100}
    operation = start_pull(session, "test")
    session.commit()
    page.goto(f"{live_server}/operations/{operation.id}")
    expect(page.get_by_test_id("op-status")).to_have_text("queued")
    worker_processes.start("browser-worker", scheduler=False)
    expect(page.get_by_test_id("op-status")).to_have_text("running", timeout=20_000)
    expect(page.locator(".op-status")).to_contain_text("of 1,450", timeout=20_000)
    # the partial polls by itself until the pull is done, then stops
    expect(page.get_by_test_id("op-status")).to_have_text("done", timeout=60_000)
    expect(page.locator(".op-status")).to_contain_text("1,450 of 1,450")
    expect(page.locator(f"#op-status-{operation.id}[hx-trigger]")).to_have_count(0)

    page.get_by_role("link", name="All operations").click()
    row = page.locator(f"#op-row-{operation.id}")
    expect(row).to_contain_text("Sync from KME")
    expect(row.locator(".badge")).to_have_text("done")
