"""Retry from the Operations page, and the clear message when the page was stale."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from kmeweb.operations import services
from kmeweb.operations.models import Operation

pytestmark = pytest.mark.browser


def _failed(session, label: str) -> Operation:
    op = services.create_operation(session, "device.move", label, 5, "test")
    op.status, op.error = "failed", "1 of 1 changes failed: KME refused it (4001700)"
    session.commit()
    return op


def test_retry_requeues_and_a_stale_retry_explains_itself(signed_in, live_server, session):
    page = signed_in
    first = _failed(session, "Move 5 devices to Sales")
    second = _failed(session, "Move 5 devices to Field")
    page.goto(f"{live_server}/operations/?status=failed")
    expect(page.locator(f"#op-row-{first.id}")).to_contain_text("KME refused it (4001700)")

    # Someone else retried the second one meanwhile: this page is now stale.
    second.status, second.error = "done", None
    session.commit()
    page.locator(f"#op-row-{second.id}").get_by_role("button", name="Retry").click()
    expect(page.locator("#flash-area")).to_contain_text("Only a failed operation can be retried.")
    expect(page).to_have_url(f"{live_server}/operations/?status=failed")  # nothing replaced

    page.locator(f"#op-row-{first.id}").get_by_role("button", name="Retry").click()
    expect(page).to_have_url(f"{live_server}/operations/{first.id}")
    expect(page.locator("#flash-area")).to_contain_text("was queued again")
    expect(page.get_by_test_id("op-status")).to_have_text("queued")
