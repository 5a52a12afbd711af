"""Retry from the Operations pages through the confirmation dialog, and the clear message
when the page was stale."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from kmeweb.operations import services
from kmeweb.operations.models import Operation
from tests.browser.checks import check_a11y

pytestmark = pytest.mark.browser


def _failed(session, label: str) -> Operation:
    op = services.create_operation(session, "device.move", label, 5, "test")
    op.status, op.error = "failed", "1 of 1 changes failed: KME refused it (4001700)"
    session.commit()
    return op


def _status(session, op: Operation) -> str:
    session.expire_all()
    return session.get(Operation, op.id).status


def test_retry_requeues_and_a_stale_retry_explains_itself(signed_in, live_server, session):
    page = signed_in
    first = _failed(session, "Move 5 devices to Sales")
    second = _failed(session, "Move 5 devices to Field")
    page.goto(f"{live_server}/operations/?status=failed")
    expect(page.locator(f"#op-row-{first.id}")).to_contain_text("KME refused it (4001700)")
    dialog = page.get_by_role("dialog")

    # Someone else retried the second one meanwhile: this page is now stale.
    second.status, second.error = "done", None
    session.commit()
    page.locator(f"#op-row-{second.id}").get_by_role("button", name="Retry").click()
    dialog.get_by_role("button", name="Retry").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#flash-area")).to_contain_text("Only a failed operation can be retried.")
    expect(page).to_have_url(f"{live_server}/operations/?status=failed")  # nothing replaced

    page.locator(f"#op-row-{first.id}").get_by_role("button", name="Retry").click()
    dialog.get_by_role("button", name="Retry").click()
    expect(page).to_have_url(f"{live_server}/operations/{first.id}")
    expect(page.locator("#flash-area")).to_contain_text("was queued again")
    expect(page.get_by_test_id("op-status")).to_have_text("queued")


def test_the_htmx_retry_asks_first_and_cancel_sends_nothing(signed_in, live_server, session):
    page = signed_in
    op = _failed(session, "Move 5 devices to Sales")
    page.goto(f"{live_server}/operations/?status=failed")
    retry = page.locator(f"#op-row-{op.id}").get_by_role("button", name="Retry")
    retry.click()

    dialog = page.get_by_role("dialog", name=f"Retry operation {op.id}")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Queue “Move 5 devices to Sales” again?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice
    check_a11y(page)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(retry).to_be_focused()  # back where the admin was
    assert _status(session, op) == "failed"

    retry.click()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator(f"#op-row-{op.id}")).to_contain_text("failed")
    assert _status(session, op) == "failed"
    expect(page).to_have_url(f"{live_server}/operations/?status=failed")


def test_the_plain_form_retry_on_the_detail_page_asks_then_requeues(
    signed_in, live_server, session
):
    page = signed_in
    op = _failed(session, "Move 5 devices to Field")
    page.goto(f"{live_server}/operations/{op.id}")
    dialog = page.get_by_role("dialog")

    page.get_by_role("button", name="Retry").click()
    expect(dialog).to_contain_text("Its failed changes are sent to KME once more.")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("op-status")).to_have_text("failed")
    assert _status(session, op) == "failed"

    page.get_by_role("button", name="Retry").click()
    dialog.get_by_role("button", name="Retry").click()
    expect(page.locator("#flash-area")).to_contain_text("was queued again")
    expect(page.get_by_test_id("op-status")).to_have_text("queued")
    assert _status(session, op) == "queued"
