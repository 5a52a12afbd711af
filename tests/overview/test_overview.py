"""The Overview at `/`: the funnel's counts against known numbers, its filters, Needs attention
with its actions, Sync health with the changes-per-hour sparkline, the empty account."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from kmeweb.extensions import utcnow
from kmeweb.operations import services as operations
from kmeweb.outbox.models import Change
from kmeweb.overview import services
from tests.factories import (
    bulk_devices,
    make_default_profile,
    make_profile,
    make_reseller,
    make_upload,
)


@pytest.fixture
def tenant(session):
    """Known numbers. Reseller A: an upload of 10 pending devices and one of 20 approved (5 in
    the Default Profile, 15 in Sales of which 6 registered). Reseller B: 8 in Field of which 2
    registered. One device pulled without an upload, in Sales, registered. Four devices in a
    self-maintained profile (3 registered) are no reseller's: left out."""
    now = utcnow()
    default = make_default_profile(session)
    sales = make_profile(session, name="Sales")
    field = make_profile(session, name="Field")
    local = make_profile(session, name="Local CSV", kind="self_maintained", config={})
    a, b = make_reseller(session, name="Acme"), make_reseller(session, name="Bravo")
    make_upload(session, pending=10, reseller_id=a.id, uploaded_at=now - timedelta(hours=30))
    a2 = make_upload(session, reseller_id=a.id, status="approved")
    b1 = make_upload(session, reseller_id=b.id, status="approved")
    bulk_devices(session, 5, default, upload_id=a2.id)
    bulk_devices(session, 9, sales, upload_id=a2.id)
    bulk_devices(session, 6, sales, upload_id=a2.id, registered_at=now)
    bulk_devices(session, 6, field, upload_id=b1.id)
    bulk_devices(session, 2, field, upload_id=b1.id, registered_at=now)
    bulk_devices(session, 1, sales, registered_at=now)
    bulk_devices(session, 1, local)
    bulk_devices(session, 3, local, registered_at=now)
    return {"a": a, "b": b, "sales": sales, "field": field, "default": default}


def _counts(stages) -> list[int]:
    return [s.count for s in stages]


def test_funnel_counts_and_filters(session, tenant):
    stages = services.funnel(session)
    assert [s.key for s in stages] == ["uploaded", "approved", "in_profile", "registered"]
    assert _counts(stages) == [39, 29, 24, 9]
    assert [s.percent_text for s in stages] == ["100%", "74%", "62%", "23%"]
    assert _counts(services.funnel(session, reseller_id=tenant["a"].id)) == [30, 20, 15, 6]
    assert _counts(services.funnel(session, profile_id=tenant["sales"].id)) == [16, 16, 16, 7]
    assert _counts(services.funnel(session, profile_id=tenant["default"].id)) == [5, 5, 0, 0]
    both = services.funnel(session, reseller_id=tenant["b"].id, profile_id=tenant["sales"].id)
    assert _counts(both) == [0, 0, 0, 0] and both[0].percent_text == "0%"


def test_overview_page_draws_the_funnel_and_filters_it_through_htmx(client, login, htmx, tenant):
    login("viewer")
    body = client.get("/").get_data(as_text=True)
    assert "<h1" in body and "Enrollment funnel" in body
    table = body[body.index('data-testid="funnel-table"') :]
    rows = re.findall(r'<th scope="row">([^<]+)</th><td>([\d,]+)</td><td>([^<]+)</td>', table)
    assert rows[:4] == [
        ("Uploaded by resellers", "39", "100%"),
        ("Approved", "29", "74%"),
        ("In a KME profile", "24", "62%"),
        ("Registered", "9", "23%"),
    ]
    # The bars are drawn to scale: the first is the full width, the others in proportion.
    widths = [
        float(w) for w in re.findall(r'class="kme-bar kme-bar-\d"[^>]*width="([\d.]+)%"', body)
    ]
    assert widths == [pytest.approx(100 * n / 39, abs=0.01) for n in (39, 29, 24, 9)]

    fragment = htmx.get(f"/?reseller={tenant['a'].id}&profile=").get_data(as_text=True)
    assert "<html" not in fragment and 'id="funnel"' in fragment
    assert '<th scope="row">Registered</th><td>6</td>' in fragment
    assert "Needs attention" not in fragment  # the fragment is the funnel alone
    bad = client.get("/?profile=999999")
    assert bad.status_code == 422
    assert "Not a valid choice: pick one from the list." in bad.get_data(as_text=True)


def test_needs_attention_lists_what_waits_with_its_actions(client, login, actions, session, tenant):
    from kmeweb.alerts.models import AlertDestination
    from kmeweb.integration.models import Integration

    now = utcnow()
    make_profile(session, name="Soon", token_expires_at=now + timedelta(days=3), waiting_devices=1)
    make_profile(session, name="Gone", token_expires_at=now - timedelta(days=1), waiting_devices=1)
    make_profile(
        session, name="Later", token_expires_at=now + timedelta(days=40), waiting_devices=1
    )
    failed = operations.create_operation(session, "device.move", "Move 5 devices to Field", 5)
    failed.status, failed.error, failed.finished_at = "failed", "KME refused it (4001700)", now
    bulk_devices(session, 2, tenant["field"], sync_state="error", sync_error="refused")
    session.add(Integration(name="KME", last_error="KME answered 503", last_error_at=now))
    session.add(
        AlertDestination(
            name="Ops Slack",
            url="https://hooks.example.com/x",
            events=[],
            failing=True,
            last_error="HTTP 500: boom",
        )  # fmt: skip
    )
    session.commit()

    login("admin")
    body = client.get("/").get_data(as_text=True)
    section = body[body.index('data-testid="needs-attention"') : body.index("Enrollment funnel")]
    assert "1 upload waiting for approval" in section and "10 devices pending" in section
    assert "View<span" in section
    assert "2 enrollment tokens expired or expiring within 3 days" in section
    assert "Soon</a>:" in section and "expires in 3 days" in section and "Later" not in section
    assert section.index("Gone") < section.index("Soon")  # expired first
    assert section.count("Extend<span") == 2
    assert "Move 5 devices to Field" in section and "KME refused it (4001700)" in section
    assert f'action="/operations/{failed.id}/retry"' in section
    assert "2 devices whose push to KME failed" in section
    assert f"/profiles/{tenant['field'].id}?sync=error" in section
    assert "KME answered 503" in section
    assert "Alert destination “Ops Slack” is failing" in section and "HTTP 500: boom" in section

    actions.post("/auth/logout")
    login("viewer")
    viewer = client.get("/").get_data(as_text=True)
    assert "Move 5 devices to Field" in viewer
    assert "Retry<span" not in viewer and "Extend<span" not in viewer


def test_sync_health_counts_changes_per_hour(client, login, session):
    # Half past the hour: the window starts at a whole hour 23 hours back, so "23 hours and a
    # minute ago" fell outside it when the test ran in the first minute of an hour.
    now = utcnow().replace(minute=30, second=0, microsecond=0)
    for hours_ago, n in ((0, 3), (5, 1), (23, 2), (30, 4)):  # the last one is too old
        for _ in range(n):
            session.add(Change(kind="device.move", payload={}, status="done",
                               created_at=now - timedelta(hours=hours_ago, minutes=1)))  # fmt: skip
    session.commit()
    counts = services.changes_per_hour(session, now)
    assert len(counts) == 24 and sum(counts) == 6
    assert counts[-1] + counts[-2] >= 3 and counts[0] + counts[1] >= 2  # newest last
    login("viewer")
    body = client.get("/").get_data(as_text=True)
    assert "6 changes, peak 3/h" in body
    assert "Changes sent to KME per hour over the last 24 hours: 6 in all" in body
    assert body.count('class="kme-spark-bar"') == 3


def test_an_empty_account_gets_a_way_to_start(client, login):
    login("admin")
    response = client.get("/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Set up Knox Integration" in body and 'href="/integration/"' in body
    assert "No devices yet" in body
    assert "Nothing needs your attention" in body
    # The Overview is the first entry of the navigation, and the brand link goes there.
    nav = body[body.index('aria-label="Main"') :]
    assert nav.index(">Overview</a>") < nav.index("Bulk Enrollment")


def test_funnel_counts_are_reused_for_the_cache_time_and_say_so(
    app, client, login, session, tenant
):
    login("viewer")
    registered = re.compile(r'<th scope="row">Registered</th><td>(\d+)</td>')
    body = client.get("/").get_data(as_text=True)
    assert registered.search(body)[1] == "9" and "Counts as of" in body
    bulk_devices(session, 1, tenant["sales"], registered_at=utcnow())
    assert registered.search(client.get("/").get_data(as_text=True))[1] == "9"  # within 30 s
    # The scheduler's job counts again ahead of the next visit.
    from kmeweb.overview.jobs import refresh_funnel_job

    assert refresh_funnel_job() == 40
    assert registered.search(client.get("/").get_data(as_text=True))[1] == "10"
    bulk_devices(session, 1, tenant["sales"], registered_at=utcnow())
    app.config["OVERVIEW_CACHE_S"] = 0  # counted on every request
    assert registered.search(client.get("/").get_data(as_text=True))[1] == "11"


def test_needs_attention_counts_portal_changes_and_devices_not_in_kme(
    client, login, session, tenant
):
    from sqlalchemy import update

    from kmeweb.devices.models import Device

    ids = bulk_devices(session, 5, tenant["field"]) + bulk_devices(session, 2, tenant["sales"])
    now = utcnow()
    session.execute(
        update(Device).where(Device.id.in_(ids[:3] + ids[5:6])).values(portal_changed_at=now)
    )
    session.execute(update(Device).where(Device.id.in_(ids[3:4])).values(kme_missing_at=now))
    session.commit()
    attention = services.needs_attention(session, now)
    assert attention.portal_changes_total == 4 and attention.not_in_kme_total == 1
    assert [(p["name"], p["count"]) for p in attention.portal_changes] == [
        ("Field", 3),
        ("Sales", 1),
    ]
    login("viewer")
    page = client.get("/").get_data(as_text=True)
    assert "4 devices changed in the Samsung portal" in page
    assert "1 device not found in KME" in page
    assert f"/profiles/{tenant['field'].id}?kme=changed" in page
    assert f"/profiles/{tenant['field'].id}?kme=missing" in page
