"""Admin › Routing rules in Chromium, against a live server, a real worker process and the KME
simulator: an admin writes the four example rules (their preview counts seen before saving),
reorders them with the Up buttons, a new upload is pulled and lands where the rules
say, the profile page says which rule placed each device, and Apply rules to existing devices
places the devices already here, its counts shown first."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from kmeweb.devices.models import Device
from kmeweb.integration.approvals import approve_upload
from kmeweb.integration.models import Upload
from kmeweb.profiles.models import Profile
from kmeweb.rules.models import RoutingRule
from kmeweb.sync.jobs import start_pull
from tests.browser.checks import check_a11y
from tests.factories import next_imei
from tests.sync_fixtures import kme_profile, wait_until, with_sync_config

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)


def _count(session, *where) -> int:
    return session.scalar(select(func.count()).select_from(Device).where(*where)) or 0


def _setup(session, work) -> dict:
    """The demo tenant pulled (uploads of 250 and 1,200 devices), the 250 approved into the
    Default Profile, and the three KME profiles the rules send devices to."""
    start_pull(session, "test")
    work()
    small = session.scalar(select(Upload).where(Upload.device_count == 250))
    approve_upload(session, small.id, "test")
    names = ("Sales", "Kiosk", "Executives")
    profiles = {name: kme_profile(session, name) for name in names}
    session.commit()
    work()
    assert all(p.kme_profile_id for p in profiles.values())
    return profiles


def _preview_total(page, n: int) -> None:
    expect(page.get_by_test_id("preview-total")).to_have_text(re.compile(rf"^{n:,} devices? match"))


def test_write_reorder_pull_filter_and_apply_rules(
    signed_in, live_server, session, integration, sim, work, worker_processes
):
    page = signed_in
    profiles = _setup(session, work)
    worker_processes.start("rules-worker", scheduler=False)
    default = session.scalar(select(Profile).where(Profile.kind == "kme_default"))
    tablets_pending = _count(session, Device.approval == "pending", Device.model.like("SM-T%"))
    tablets_in_default = _count(
        session, Device.profile_id == default.id, Device.model.like("SM-T%")
    )
    assert tablets_pending and tablets_in_default  # the demo uploads hold tablets
    executives = list(
        session.scalars(
            select(Device.imei)
            .where(Device.approval == "pending", Device.model.not_like("SM-T%"))
            .order_by(Device.id)
            .limit(3)
        )
    )
    new_executive = next_imei()

    # (a) reseller A's sales orders: approve at once into Sales (nothing matches yet).
    page.goto(f"{live_server}/admin/rules/")
    expect(page.get_by_test_id("rule-name")).to_have_text(["Everything else"])
    page.get_by_role("link", name="Add rule").click()
    expect(page.get_by_test_id("preview-empty")).to_be_visible()
    page.get_by_label("Rule name").fill("Sales orders")
    page.get_by_label("Demo Reseller Ltd").check()
    page.get_by_label("Order number").fill("PO-SALES-*")
    page.get_by_label("Approve at once").check()
    page.get_by_label("Profile", exact=True).select_option(label="Sales")
    _preview_total(page, 0)
    check_a11y(page)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#flash-area")).to_contain_text("Rule “Sales orders” was saved.")

    # (b) tablets: approve at once into Kiosk; the preview counts the demo's tablets.
    page.get_by_role("link", name="Add rule").click()
    page.get_by_label("Rule name").fill("Tablets")
    page.get_by_label("Model").fill("SM-T*")
    page.get_by_label("Approve at once").check()
    page.get_by_label("Profile", exact=True).select_option(label="Kiosk")
    _preview_total(page, tablets_pending + tablets_in_default)
    expect(page.get_by_test_id("preview-pending")).to_contain_text(f"{tablets_pending:,} waiting")
    expect(page.get_by_test_id("preview-approved")).to_contain_text(
        f"{tablets_in_default:,} would move to Kiosk"
    )
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#flash-area")).to_contain_text("Rule “Tablets” was saved.")

    # (c) a pasted list of IMEIs: approve at once into Executives.
    page.get_by_role("link", name="Add rule").click()
    page.get_by_label("Rule name").fill("Executives")
    page.get_by_label("IMEI or serial number in this list").fill(
        "\n".join([*executives, new_executive])
    )
    page.get_by_label("Approve at once").check()
    page.get_by_label("Profile", exact=True).select_option(label="Executives")
    _preview_total(page, 3)
    expect(page.get_by_test_id("preview-sample")).to_contain_text(executives[0])
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#flash-area")).to_contain_text("Rule “Executives” was saved.")

    # (d) the last rule: hold for approval in the Default Profile (as it is; saved as seen).
    page.get_by_role("link", name="Everything else", exact=True).click()
    expect(page.get_by_test_id("catch-all-note")).to_be_visible()
    expect(page.get_by_label("Hold for approval")).to_be_checked()
    expect(page.get_by_label("Profile", exact=True)).to_have_value("default")
    expect(page.get_by_test_id("preview-total")).to_be_visible()
    page.get_by_role("button", name="Save").click()
    names = page.get_by_test_id("rule-name")
    expect(names).to_have_text(["Sales orders", "Tablets", "Executives", "Everything else"])

    # Reorder with the buttons: Tablets up, then Executives up twice, to the top.
    page.get_by_role("button", name="Move Tablets up").click()
    expect(page.locator("#flash-area")).to_contain_text("The new order of the rules was saved.")
    expect(names).to_have_text(["Tablets", "Sales orders", "Executives", "Everything else"])
    page.get_by_role("button", name="Move Executives up").click()
    expect(names).to_have_text(["Tablets", "Executives", "Sales orders", "Everything else"])
    page.get_by_role("button", name="Move Executives up").click()
    expect(names).to_have_text(["Executives", "Tablets", "Sales orders", "Everything else"])
    page.reload()
    expect(names).to_have_text(["Executives", "Tablets", "Sales orders", "Everything else"])

    # New uploads: reseller A's sales order (2 phones, 2 tablets), and two from another
    # reseller (an executive's phone; a phone no rule names). Sync now pulls them.
    phones, tablets = [next_imei(), next_imei()], [next_imei(), next_imei()]
    other = next_imei()
    sim.upload(
        0,
        reseller="Demo Reseller Ltd",
        orderNo="PO-SALES-0042",
        devices=[{"mei": i, "model": "SM-G991B"} for i in phones]
        + [{"mei": i, "model": "SM-T505"} for i in tablets],
    )
    for order, imei, model in (("PO-77", new_executive, "SM-S918B"), ("PO-78", other, "SM-A546B")):
        sim.upload(
            0, reseller="Other Reseller", orderNo=order, devices=[{"mei": imei, "model": model}]
        )
    page.goto(f"{live_server}/integration/")
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#sync-operation").get_by_test_id("op-status")).to_have_text(
        "done", timeout=60_000
    )
    rules = {r.name: r for r in session.scalars(select(RoutingRule))}

    def placed(imeis: list[str]) -> set[tuple[int | None, str, int | None]]:
        rows = session.execute(
            select(Device.profile_id, Device.approval, Device.rule_id).where(Device.imei.in_(imeis))
        )
        return {tuple(row) for row in rows}

    new = [*phones, *tablets, new_executive, other]
    wait_until(lambda: _count(session, Device.imei.in_(new)) == 6, what="the uploads pulled")
    assert placed(phones) == {(profiles["Sales"].id, "approved", rules["Sales orders"].id)}
    assert placed(tablets) == {(profiles["Kiosk"].id, "approved", rules["Tablets"].id)}
    assert placed([new_executive]) == {
        (profiles["Executives"].id, "approved", rules["Executives"].id)
    }
    assert placed([other]) == {(None, "pending", rules["Everything else"].id)}  # held
    # The demo's big upload went through the rules once, at the first pull, before they were
    # written: the pull leaves it (saving moves nothing); its devices still name the last rule.
    kiosk = profiles["Kiosk"].id
    assert _count(session, Device.profile_id == kiosk) == 2
    assert placed(executives) == {(None, "pending", rules["Everything else"].id)}

    # The Sales profile's page: Placed by rule says which rule placed each device.
    page.goto(f"{live_server}/profiles/{profiles['Sales'].id}")
    page.get_by_label("Placed by rule").select_option(label="Sales orders")
    expect(page).to_have_url(re.compile(rf"rule={rules['Sales orders'].id}"))
    expect(page.get_by_test_id("device-row")).to_have_count(2)
    for row in page.get_by_test_id("device-row").all():
        expect(row.get_by_test_id("placed-by")).to_have_text(
            "Placed by rule Sales orders (version 1)"
        )
    expect(page.get_by_test_id("devices-table")).to_contain_text(phones[0])
    page.goto(f"{live_server}/profiles/{kiosk}?rule={rules['Tablets'].id}")
    expect(page.get_by_text("Select all 2 matching devices")).to_be_visible()

    # Apply rules to existing devices: the counts first, then the operation.
    page.goto(f"{live_server}/admin/rules/")
    page.get_by_role("link", name="Apply rules to existing devices").click()
    line = page.locator("[data-testid=plan-line][data-rule='Tablets']")
    expect(line.get_by_test_id("plan-approve")).to_have_text("0")
    expect(line.get_by_test_id("plan-wait")).to_have_text(f"{tablets_pending:,}")
    expect(line.get_by_test_id("plan-move")).to_have_text(f"{tablets_in_default:,}")
    expect(line.get_by_test_id("plan-stay")).to_have_text("2")
    line = page.locator("[data-testid=plan-line][data-rule='Executives']")
    expect(line.get_by_test_id("plan-wait")).to_have_text("3")
    line = page.locator("[data-testid=plan-line][data-rule='Everything else']")
    held = _count(session, Device.approval == "pending") - tablets_pending - 3
    expect(line.get_by_test_id("plan-hold")).to_have_text(f"{held:,}")
    total = tablets_in_default
    expect(page.get_by_test_id("apply-total")).to_have_text(f"{total:,} devices would change.")
    check_a11y(page)
    page.get_by_role("button", name=re.compile("^Confirm: apply to")).click()
    expect(page.locator("#flash-area")).to_contain_text(f"Apply routing rules to {total:,} devices")
    expect(page.get_by_test_id("apply-operation").get_by_test_id("op-status")).to_have_text(
        "done", timeout=60_000
    )
    assert _count(session, Device.model.like("SM-T%"), Device.profile_id == default.id) == 0
    assert _count(session, Device.profile_id == kiosk) == tablets_in_default + 2
    page.goto(f"{live_server}/admin/rules/apply")
    expect(page.get_by_test_id("apply-total")).to_have_text(
        "Every device is where the rules say: nothing would change."
    )
