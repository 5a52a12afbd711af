"""Admin › Knox Integration in Chromium, against a live server, a real worker process and the
KME simulator: set up and activate, approve an upload through the dialog, download the CSV,
a routing rule approves a reseller's next upload; and the same approval without JavaScript."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from kmeweb.devices.models import Device
from kmeweb.integration.models import Reseller, Upload
from kmeweb.profiles.models import Profile
from kmeweb.rules import services as rules
from tests.browser.checks import check_a11y
from tests.sync_fixtures import wait_until, with_sync_config

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def _pending(session, upload_id: int) -> int:
    return session.scalar(
        select(func.count()).where(Device.upload_id == upload_id, Device.approval == "pending")
    )


def test_set_up_activate_approve_download_and_approve_by_rule(
    signed_in, live_server, session, sim, worker_processes
):
    page = signed_in
    worker_processes.start("integration-worker", scheduler=False)
    page.goto(f"{live_server}/integration/")
    expect(page.get_by_test_id("integration-state")).to_have_text("Not set up")

    # Settings with the simulator's OAuth client; Test connection answers in place.
    page.get_by_label("Integration Name").fill("Knox (simulator)")
    page.get_by_label("Description").fill("The KME simulator")
    expect(page.get_by_label("OAuth")).to_be_checked()
    page.get_by_label("Client ID", exact=True).fill(sim.creds["oauth_client_id"])
    page.get_by_label("Client secret").fill("not-the-secret")
    page.get_by_label("Region").select_option("custom")
    page.get_by_label("Custom URL").fill(sim.url)
    page.get_by_text("Advanced").click()
    page.get_by_label("Token URL").fill(sim.url + "/ams/v1/oauth2/token")
    page.get_by_label("Customer ID").fill(sim.creds["customer_id"])
    page.get_by_label("Sync interval (minutes)").fill("15")
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_test_id("connection-result")).to_contain_text(
        "Samsung refused the credentials: they are wrong or expired"
    )
    page.get_by_label("Client secret").fill(sim.creds["oauth_client_secret"])
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_test_id("connection-result")).to_have_text(
        "Connected to Samsung Knox: the tenant holds 1,450 devices."
    )
    check_a11y(page)

    # Activate: the Default Profile exists, the first pull runs and shows its progress.
    page.get_by_role("button", name="Activate").click()
    expect(page.locator("#flash-area")).to_contain_text("The Knox integration is active")
    expect(page.get_by_test_id("integration-state")).to_have_text("Active")
    expect(page.get_by_test_id("active-since")).not_to_have_text("—")
    expect(page.get_by_label("Client secret")).to_have_value("")  # write-only
    expect(page.locator("#sync-operation").get_by_test_id("op-status")).to_have_text(
        "done", timeout=60_000
    )
    page.reload()
    expect(page.get_by_test_id("last-pull")).not_to_have_text("—")
    expect(page.get_by_test_id("pending-changes")).to_have_text("0")

    # Uploads: the two seeded uploads; View one.
    page.get_by_role("link", name="Uploads").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    big = session.scalar(select(Upload).where(Upload.device_count == 1200))
    small = session.scalar(select(Upload).where(Upload.device_count == 250))
    expect(page.locator(f"#upload-row-{big.id} [data-testid=pending]")).to_have_text("1,200")
    page.locator(f"#upload-row-{big.id}").get_by_role("link", name="View").click()
    expect(page.get_by_role("heading", name=f"Upload {big.kme_upload_id}")).to_be_visible()
    expect(page.get_by_text("1–50 of 1,200")).to_be_visible()
    one = session.scalar(select(Device.imei).where(Device.upload_id == big.id).limit(1))
    page.get_by_role("searchbox", name="Search").fill(one)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("1–1 of 1")).to_be_visible()
    expect(page.locator("tbody")).to_contain_text(one)

    # Approve All Devices through the dialog; its progress replaces the question.
    page.get_by_role("link", name="All uploads").click()
    page.locator(f"#upload-row-{big.id}").get_by_role("link", name="Approve All Devices").click()
    dialog = page.locator("#approve-dialog")
    expect(dialog.get_by_test_id("approve-question")).to_have_text(
        "Approve 1,200 devices from reseller Demo Reseller Ltd?", timeout=20_000
    )
    check_a11y(page)
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(dialog.get_by_role("heading")).to_have_text(f"Approving upload {big.kme_upload_id}")
    expect(dialog.get_by_test_id("op-status")).to_have_text("done", timeout=60_000)
    expect(dialog).to_contain_text("1,200 of 1,200")
    dialog.get_by_role("link", name="Close").click()
    expect(page.locator(f"#upload-row-{big.id} [data-testid=pending]")).to_have_text("0")
    expect(page.locator(f"#upload-row-{big.id} .badge")).to_have_text("approved")

    default = session.scalar(select(Profile).where(Profile.kind == "kme_default"))
    in_default = session.scalar(
        select(func.count()).where(
            Device.upload_id == big.id,
            Device.profile_id == default.id,
            Device.approval == "approved",
            Device.sync_state == "synced",
        )
    )
    assert in_default == 1200
    with sim.state.lock:
        tenant = sim.state.tenants[sim.creds["customer_id"]]
        assert tenant.uploads[big.kme_upload_id].status == "Approved"  # approved in KME too

    # Download Devices as CSV: the other upload's 250 unapproved devices.
    with page.expect_download() as download:
        page.locator(f"#upload-row-{small.id}").get_by_role("link", name="View").click()
        page.get_by_role("link", name="Download Devices as CSV").click()
    assert re.fullmatch(
        rf"upload-{small.kme_upload_id}-unapproved-devices-\d{{4}}-\d\d-\d\d\.csv",
        download.value.suggested_filename,
    )
    body = open(download.value.path(), encoding="utf-8-sig").read()
    rows_csv = list(csv.reader(io.StringIO(body)))
    assert rows_csv[0][:3] == ["imei", "serial", "model"]
    assert len(rows_csv) == 251
    assert {r[3] for r in rows_csv[1:]} == {small.kme_upload_id}

    # A routing rule approves the reseller's uploads at once (its editor is tested in
    # test_rules_browser.py): the next upload is approved by the pull, without a click, and
    # the Resellers tab names the rule.
    reseller = session.scalar(select(Reseller).where(Reseller.name == "Demo Reseller Ltd"))
    rules.create_rule(
        session,
        {"name": "Demo approved at once", "reseller_ids": [reseller.id], "action": "approve"},
        "test",
    )
    session.commit()
    page.get_by_role("link", name="Resellers").click()
    expect(page.get_by_test_id("reseller-rules").first).to_have_text("Demo approved at once")
    new = sim.upload(30, reseller="Demo Reseller Ltd")
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#flash-area")).to_contain_text("Sync from KME started.")
    expect(page.locator("#sync-operation").get_by_test_id("op-status")).to_have_text(
        "done", timeout=60_000
    )
    added = wait_until(
        lambda: session.scalar(select(Upload).where(Upload.kme_upload_id == new["uploadId"])),
        what="the new upload pulled",
    )
    wait_until(lambda: _pending(session, added.id) == 0, what="the new upload auto-approved")
    page.get_by_role("link", name="Uploads").click()
    expect(page.locator(f"#upload-row-{added.id} [data-testid=pending]")).to_have_text("0")
    expect(page.locator(f"#upload-row-{added.id} .badge")).to_have_text("approved")


def test_approve_all_devices_without_javascript(
    browser, live_server, make_admin, session, integration, sim, work
):
    from tests.conftest import PASSWORD

    make_admin("nojs@example.com", "admin")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{live_server}/auth/login")
        page.get_by_label("Email").fill("nojs@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        from kmeweb.sync.jobs import start_pull

        start_pull(session, "test")
        work()
        small = session.scalar(select(Upload).where(Upload.device_count == 250))
        page.goto(f"{live_server}/integration/uploads")
        page.locator(f"#upload-row-{small.id}").get_by_role(
            "link", name="Approve All Devices"
        ).click()
        expect(page).to_have_url(re.compile(rf"/integration/uploads/{small.id}/approve$"))
        expect(page.get_by_test_id("approve-question")).to_have_text(
            "Approve 250 devices from reseller Demo Reseller Ltd?"
        )
        page.get_by_role("button", name="Approve", exact=True).click()
        expect(page).to_have_url(re.compile(rf"/integration/uploads/{small.id}$"))
        expect(page.locator("#flash-area")).to_contain_text("started")
        work()
        page.reload()
        expect(page.get_by_test_id("op-status")).to_have_text("done")
        expect(page.get_by_test_id("upload-pending")).to_have_text("0")
        assert _pending(session, small.id) == 0
    finally:
        context.close()


def test_a_viewer_sees_every_tab_at_both_widths_without_controls(
    browser, live_server, make_admin, session, integration, sim, work, browser_checks
):
    from kmeweb.sync.jobs import start_pull
    from tests.conftest import PASSWORD

    start_pull(session, "test")
    work()
    upload = session.scalar(select(Upload).where(Upload.device_count == 1200))
    make_admin("viewer@example.com", "viewer")
    context = browser.new_context()
    page = context.new_page()
    browser_checks.watch(page)
    try:
        page.goto(f"{live_server}/auth/login")
        page.get_by_label("Email").fill("viewer@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        pages = [
            "/integration/",
            "/integration/uploads",
            f"/integration/uploads/{upload.id}",
            "/integration/resellers",
        ]
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            for path in pages:
                page.goto(live_server + path)
                expect(page.get_by_role("heading", level=1)).to_have_text("Knox Integration")
                wide = page.evaluate("() => document.documentElement.scrollWidth")
                assert wide <= width, f"{path} is {wide} px wide at {width} px"
                for name in ("Save", "Sync now", "Deactivate", "Approve All Devices", "Edit"):
                    expect(page.get_by_role("button", name=name)).to_have_count(0)
                    expect(page.get_by_role("link", name=re.compile(f"^{name}"))).to_have_count(0)
            check_a11y(page)
        page.goto(f"{live_server}/integration/")
        expect(page.get_by_test_id("integration-state")).to_have_text("Active")
        expect(page.locator("main")).to_contain_text("Demo KME")
        page.goto(f"{live_server}/integration/uploads/{upload.id}")
        expect(page.get_by_role("link", name="Download Devices as CSV")).to_be_visible()
    finally:
        browser_checks.finish(page)
        context.close()
