"""The audit log as a script reads it: filters by time, actor, action and object, paged by
cursor, and the NDJSON export."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kmeweb.audit import services
from kmeweb.audit.models import AuditEvent

DAY = datetime(2001, 3, 10, tzinfo=UTC)
# The events of the fixture, without those of making the token (which happen now).
MINE = "to=2002-01-01T00:00:00Z"


@pytest.fixture
def events(session, api) -> list[AuditEvent]:
    """Six events over three days in 2001, oldest first (after the token's own)."""
    rows = [
        ("alice@example.com", "profile.update", "profile", "7", DAY - timedelta(days=1)),
        ("alice@example.com", "device.move", "device", None, DAY + timedelta(hours=1)),
        ("bob@example.com", "profile.update", "profile", "8", DAY + timedelta(hours=2)),
        (
            "bob@example.com (API token nightly)",
            "device.move",
            "device",
            None,
            DAY + timedelta(hours=3),
        ),
        ("sync", "sync.start", "operation", "3", DAY + timedelta(hours=23, minutes=59)),
        ("alice@example.com", "profile.update", "profile", "7", DAY + timedelta(days=1)),
    ]
    made = []
    for actor, action, target_type, target_id, at in rows:
        event = services.record(session, actor, action, target_type, target_id, {"n": len(made)})
        event.at = at
        made.append(event)
    session.commit()
    return made


def ids(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [e["id"] for e in response.get_json()["items"]]


def test_everything_newest_first_with_every_field(api, events):
    r = api.get("/audit?" + MINE)
    assert ids(r) == [e.id for e in reversed(events)]
    first = r.get_json()["items"][-1]
    assert first == {
        "id": events[0].id,
        "at": "2001-03-09T00:00:00Z",
        "actor": "alice@example.com",
        "action": "profile.update",
        "target_type": "profile",
        "target_id": "7",
        "details": {"n": 0},
        "ip": None,
    }


def test_filters_by_action_actor_time_and_object(api, events):
    e = events
    assert ids(api.get("/audit?action=device.move")) == [e[3].id, e[1].id]
    assert ids(api.get("/audit?actor=BOB")) == [e[3].id, e[2].id]
    assert ids(api.get("/audit?actor=token nightly&action=device.move")) == [e[3].id]
    # from is inclusive, to exclusive: one UTC day
    day = api.get("/audit?from=2001-03-10T00:00:00Z&to=2001-03-11T00:00:00Z")
    assert ids(day) == [e[4].id, e[3].id, e[2].id, e[1].id]
    # a time in another zone, and one without a zone (UTC)
    since = "/audit?from=2001-03-10T04:30:00%2B02:00&" + MINE
    assert ids(api.get(since)) == [e[5].id, e[4].id, e[3].id]
    assert ids(api.get("/audit?to=2001-03-10T01:00:00")) == [e[0].id]
    assert ids(api.get("/audit?target_type=profile&target_id=7")) == [e[5].id, e[0].id]
    assert ids(api.get("/audit?action=no.such")) == []


def test_pages_by_cursor_newest_first(api, events):
    seen, cursor = [], None
    while True:
        r = api.get(f"/audit?limit=4&{MINE}" + (f"&cursor={cursor}" if cursor else ""))
        seen.append(ids(r))
        cursor = r.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [[e.id for e in reversed(events)][:4], [events[1].id, events[0].id]]
    filtered = api.get("/audit?limit=1&action=device.move").get_json()
    after = api.get(f"/audit?limit=1&action=device.move&cursor={filtered['next_cursor']}")
    assert ids(after) == [events[1].id] and after.get_json()["next_cursor"] is None


def test_a_bad_time_is_a_422_naming_the_field(api, events):
    r = api.get("/audit?from=yesterday")
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == "from"


def test_export_streams_one_json_object_per_line_matching_the_filters(api, events):
    r = api.get("/audit/export?action=profile.update&from=2001-03-09T12:00:00Z")
    assert r.status_code == 200
    assert r.mimetype == "application/x-ndjson"
    assert r.is_streamed
    lines = r.get_data(as_text=True).splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["id"] for row in rows] == [events[5].id, events[2].id]
    assert {row["action"] for row in rows} == {"profile.update"}
    assert rows[0] == api.get("/audit?action=profile.update").get_json()["items"][0]

    everything = api.get("/audit/export?" + MINE).get_data(as_text=True)
    assert everything.endswith("\n") and len(everything.splitlines()) == len(events)
    assert len(api.get("/audit/export").get_data(as_text=True).splitlines()) > len(events)
    assert api.get("/audit/export?action=no.such").get_data() == b""


def test_export_reads_the_log_a_chunk_at_a_time(session, events):
    stmt = services.query_events(actor="alice")
    read = [e.id for e in services.iter_events(session, stmt, chunk=2)]
    assert read == [events[5].id, events[1].id, events[0].id]


def test_the_audit_routes_need_the_audit_scope(api_as, events):
    other = api_as(scopes=["kme.devices:read"])
    for path in ("/audit", "/audit/export"):
        r = other.get(path)
        assert r.status_code == 403 and r.get_json()["code"] == "insufficient_scope"
    viewer = api_as(role="viewer")
    assert viewer.get("/audit").status_code == 200
