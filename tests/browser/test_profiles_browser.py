"""Devices › Bulk Enrollment in Chromium against a live server, a real worker and the KME
simulator: a KME profile from Add to Delete, with every device action on its page."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from kmeweb.devices.models import Device
from kmeweb.directory import services as directory
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.profiles.models import Profile
from kmeweb.profiles.services import DEFAULT_PROFILE_NAME
from tests.browser.checks import check_a11y
from tests.sync_fixtures import wait_until, with_sync_config

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


@pytest.fixture
def approved(session, integration, sim, work):
    """The demo's 250-device upload pulled from the simulator and approved: the devices sit
    in the Samsung KME Default Profile."""
    from kmeweb.sync.jobs import start_pull

    start_pull(session, "test")
    session.commit()
    work()
    upload = session.scalar(select(Upload).where(Upload.device_count == 250))
    approvals.approve_upload(session, upload.id, "test")
    for username, display in (("jane.doe", "Jane Doe"), ("bob.smith", "Bob Smith")):
        directory.get_or_create_user(session, username, f"{username}@example.com", display)
    session.commit()
    work()
    return upload


def _ids_on_page(page) -> list[str]:
    return page.locator('input[name="device_ids"]').evaluate_all("els => els.map(e => e.value)")


def _wait_done(page) -> None:
    expect(page.get_by_test_id("op-status")).to_have_text("done", timeout=60_000)


def test_kme_profile_from_add_to_delete(
    signed_in, live_server, session, approved, sim, worker_processes
):
    page = signed_in
    default = session.scalar(select(Profile).where(Profile.kind == "kme_default"))

    # Add → Samsung Knox Mobile Enrollment → Next
    page.goto(f"{live_server}/profiles/")
    expect(page.get_by_test_id("profile-row").first).to_contain_text(DEFAULT_PROFILE_NAME)
    page.get_by_role("link", name="Add").click()
    page.get_by_label("Samsung Knox Mobile Enrollment").check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Device registration without token")).not_to_be_checked()
    page.get_by_label("Profile Name").fill("Field Sales")
    page.get_by_label("Search users").fill("jane")
    expect(page.get_by_label("Select User").locator("option")).to_have_count(2)
    page.get_by_label("Select User").select_option(label="Jane Doe (jane.doe)")
    page.get_by_label("MDM (EMM)").fill("Other")
    page.get_by_label("Agent APK URL").fill("https://mdm.example.com/agent.apk")
    page.get_by_label("Server URL").fill("https://mdm.example.com")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Skip encryption").select_option("true")
    page.get_by_label("Wi-Fi SSID").fill("corp")
    page.get_by_label("Wi-Fi security type").select_option("WPA")
    page.get_by_label("Wi-Fi password").fill("hunter2hunter2")
    page.locator("#custom_keys-0-key").fill("site")
    page.locator("#custom_keys-0-value").fill("berlin")
    page.get_by_role("button", name="Add key").click()
    page.locator("#custom_keys-1-key").fill("max_apps")
    page.locator("#custom_keys-1-type").select_option("integer")
    page.locator("#custom_keys-1-value").fill("12")
    preview = page.get_by_test_id("bundle-preview")
    # the preview follows the form: the user, the extras, the custom keys, the masked secret
    expect(preview).to_contain_text('"user": "jane.doe"')
    expect(preview).to_contain_text('"android.app.extra.PROVISIONING_TIME_ZONE": "Europe/Berlin"')
    expect(preview).to_contain_text('"max_apps": "12"')
    expect(preview).to_contain_text('"android.app.extra.PROVISIONING_WIFI_PASSWORD": "••••••••"')
    expect(preview).not_to_contain_text("hunter2")
    page.locator("#custom_keys-1-value").fill("twelve")
    expect(page.get_by_test_id("preview-error")).to_contain_text("Enter a whole number.")
    page.locator("#custom_keys-1-value").fill("12")
    expect(page.get_by_test_id("preview-error")).to_have_count(0)
    page.get_by_role("button", name="Done").click()

    expect(page.locator("#flash-area")).to_contain_text("Profile “Field Sales” was created.")
    row = page.get_by_test_id("profile-row").filter(has_text="Field Sales")
    expect(row).to_contain_text("Jane Doe")  # the name, not the username
    profile = session.scalar(select(Profile).where(Profile.name == "Field Sales"))
    # no worker yet: the profile waits in the outbox; its badge polls itself until synced
    expect(row.get_by_test_id("sync-status")).to_have_text("pending")
    worker_processes.start("profiles-worker", scheduler=False)
    expect(row.get_by_test_id("sync-status")).to_have_text("synced", timeout=60_000)
    assert any(p["name"] == "Field Sales" for p in sim.profiles().values())

    # Move 3 devices from the Default Profile into it
    page.get_by_role("link", name=f"View {DEFAULT_PROFILE_NAME}").click()
    expect(page.get_by_test_id("fact-devices")).to_have_text("250")
    first_three = _ids_on_page(page)[:3]
    for device_id in first_three:
        page.locator(f'input[name="device_ids"][value="{device_id}"]').check()
    page.get_by_role("button", name="Move Devices").click()
    dialog = page.locator("#form-dialog")
    expect(dialog.get_by_test_id("selection-summary")).to_contain_text("3 devices: ")
    check_a11y(page)
    expect(dialog.get_by_label("Move to").locator("option")).to_have_text(
        ["Choose a profile", "Field Sales"]
    )
    dialog.get_by_label("Move to").select_option(label="Field Sales")
    dialog.get_by_role("button", name="Move").click()
    expect(page.locator("#flash-area")).to_contain_text("Move 3 devices to Field Sales")
    _wait_done(page)

    # search, select "all N matching", move them
    model = session.execute(
        select(Device.model, func.count())
        .where(Device.profile_id == default.id)
        .group_by(Device.model)
        .order_by(func.count().desc())
    ).first()
    page.get_by_label("Search devices").fill(model[0])
    expect(page.get_by_text(re.compile(r"Select all \d+ matching devices"))).to_be_visible()
    matching = session.scalar(
        select(func.count()).where(Device.profile_id == default.id, Device.model == model[0])
    )
    assert matching > 3  # more than a page would show is not needed; more than one is
    page.get_by_label(f"Select all {matching} matching devices").check()
    page.get_by_role("button", name="Move Devices").click()
    expect(dialog.get_by_test_id("selection-summary")).to_contain_text(
        f"All {matching} devices matching the search “{model[0]}”"
    )
    dialog.get_by_label("Move to").select_option(label="Field Sales")
    dialog.get_by_role("button", name="Move").click()
    _wait_done(page)
    expect(page.get_by_test_id("fact-devices")).to_have_text(str(250 - 3 - matching))
    kme_id = wait_until(lambda: session.get(Profile, profile.id).kme_profile_id)
    wait_until(
        lambda: sum(1 for d in sim.devices().values() if d.profile_id == kme_id) == 3 + matching,
        what="the moves reaching KME",
    )

    # on the new profile: Refresh Token with Never expires
    page.goto(f"{live_server}/profiles/{profile.id}")
    expect(page.get_by_test_id("fact-devices")).to_have_text(str(3 + matching))
    old_token = page.get_by_test_id("token").inner_text()
    page.get_by_role("link", name="Refresh Token").click()
    dialog.get_by_label("Never expires").check()
    dialog.get_by_role("button", name="Refresh").click()
    dialog.get_by_role("button", name="Refresh token").click()  # once confirmed
    expect(page.get_by_test_id("fact-expiry")).to_have_text("never expires")
    expect(page.get_by_test_id("token")).not_to_have_text(old_token)

    # Change Associate User: search, select, Apply
    page.get_by_role("link", name="Change Associate User").click()
    dialog.get_by_label("Search users").fill("bob")
    expect(dialog.get_by_label("Associated user").locator("option")).to_have_count(3)
    dialog.get_by_label("Associated user").select_option(label="Bob Smith (bob.smith)")
    dialog.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("fact-user")).to_have_text("Bob Smith (bob.smith)")

    # Edit attributes on 2 devices
    ids = _ids_on_page(page)
    for device_id in ids[:2]:
        page.locator(f'input[name="device_ids"][value="{device_id}"]').check()
    page.get_by_role("button", name="Edit", exact=True).click()
    dialog.locator("#rows-0-key").fill("asset tag")
    dialog.locator("#rows-0-value").fill("A-17")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("#flash-area")).to_contain_text("Attributes of 2 devices were saved.")
    expect(page.get_by_test_id("device-row").filter(has_text="asset tag: A-17")).to_have_count(2)

    # Unassign 1
    page.locator(f'input[name="device_ids"][value="{ids[0]}"]').check()
    page.get_by_role("button", name="Unassign").click()
    dialog.get_by_role("button", name="Unassign").click()
    _wait_done(page)
    expect(page.get_by_test_id("fact-devices")).to_have_text(str(3 + matching - 1))

    # Delete 1 from the Default Profile
    page.goto(f"{live_server}/profiles/{default.id}")
    victim = _ids_on_page(page)[0]
    imei = session.scalar(select(Device.imei).where(Device.id == int(victim)))
    page.locator(f'input[name="device_ids"][value="{victim}"]').check()
    page.get_by_role("button", name="Delete").click()
    expect(dialog.get_by_test_id("delete-warning")).to_contain_text("1 device is removed")
    dialog.get_by_role("button", name="Delete 1 device").click()
    _wait_done(page)
    wait_until(
        lambda: all(d.mei != imei for d in sim.devices().values()), what="the device deleted in KME"
    )
    assert session.get(Device, int(victim)) is None

    # delete the profile: its devices come back to the Default Profile
    left = 3 + matching - 1
    page.goto(f"{live_server}/profiles/")
    row.get_by_role("button", name="Delete").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text(
        f"Its {left} devices return to the Samsung KME Default Profile."
    )
    confirm.get_by_role("button", name="Yes").click()
    expect(page.locator("#flash-area")).to_contain_text(f"{left} devices went back")
    expect(row).to_have_count(0)
    default_row = page.get_by_test_id("profile-row").filter(has_text=DEFAULT_PROFILE_NAME)
    expect(default_row.get_by_test_id("device-count")).to_have_text(str(250 - 1))

    # Download Existing Inventory of the Default Profile
    with page.expect_download() as download:
        default_row.get_by_role("link", name="Download Existing Inventory").click()
    text = open(download.value.path(), encoding="utf-8-sig").read()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "IMEI",
        "Serial",
        "Model",
        "User",
        "Attributes",
        "Registration",
        "Sync state",
    ]
    assert len(rows) == 1 + 249
    assert any("asset tag" in r[4] for r in rows[1:])  # the unassigned device kept its tag
    assert imei not in text


def test_viewer_sees_no_action_buttons(page, live_server, session, make_admin):
    from tests.conftest import PASSWORD
    from tests.factories import bulk_devices, make_default_profile, make_profile

    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    bulk_devices(session, 3, default)
    bulk_devices(session, 2, sales)
    make_admin("viewer@example.com", "viewer")
    page.goto(f"{live_server}/auth/login")
    page.get_by_label("Email").fill("viewer@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live_server}/profiles/")
    expect(page.get_by_test_id("profile-row")).to_have_count(2)
    expect(page.get_by_role("link", name="Add")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    page.get_by_role("link", name="View Sales").click()
    expect(page.get_by_test_id("device-row")).to_have_count(2)
    for name in ("Move Devices", "Unassign", "Edit", "Delete"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    for name in ("Modify Configuration", "Refresh Token", "Change Associate User"):
        expect(page.get_by_role("link", name=name)).to_have_count(0)
    expect(page.locator('input[type="checkbox"]')).to_have_count(0)
