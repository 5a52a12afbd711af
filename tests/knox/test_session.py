"""A whole session as a new user runs it: the client built from Samsung's keys.json and a
customer id only, against a simulator that refuses reused jtis and calls without
`Content-Type: application/json`."""

from __future__ import annotations

import json

from kmeweb.knox import KnoxClient, KnoxConfig

from .conftest import valid_profile

LIST = "GET /kcs/v1/kme/devices/list"


def test_keys_json_session_against_a_server_refusing_reused_jtis(make_sim):
    sim = make_sim(legacy_require_unique_request_jti=True, require_json_content_type=True)
    tenant = sim.control("POST", "/tenants", json={"name": "New user", "legacy": True})
    sim.control(
        "POST",
        "/uploads",
        json={"customerId": tenant["customer_id"], "resellerName": "Acme", "count": 600},
    )
    keys_json_text = json.dumps(tenant["legacy_keys_json"])  # the file as downloaded
    assert "Identifier" in tenant["legacy_keys_json"]
    config = KnoxConfig(
        base_url=sim.url,
        auth_mode="legacy",
        keys_json=keys_json_text,
        customer_id=tenant["customer_id"],
        encryption_public_key=tenant["encryption_public_key"],
    )
    with KnoxClient(config) as client:
        assert client.check_connection() == 600
        uploads = client.list_uploads()
        assert [u.pending for u in uploads] == [True]
        approved = client.approve_uploads([u.upload_id for u in uploads])
        assert approved.ok and approved.succeeded == [uploads[0].upload_id]
        devices = client.list_devices()
        assert len(devices) == 600 and len({d.id for d in devices}) == 600
        assert {d.status for d in devices} == {"Pending Enrollment"}
        profile = client.create_profile(valid_profile("Field phones"))
        imeis = [d.mei for d in devices]
        assigned = client.assign_profile(profile.id, imeis)
        assert assigned.ok and len(assigned.succeeded) == 600
        assert {d.profile_id for d in client.list_devices()} == {profile.id}
        unassigned = client.unassign_profile([d.serial for d in devices])
        assert unassigned.ok and len(unassigned.succeeded) == 600
        assert {d.profile_id for d in client.list_devices()} == {None}
        deleted = client.delete_devices(imeis)
        assert deleted.ok and len(deleted.succeeded) == 600
        assert client.check_connection() == 0
    counters = sim.control("GET", "/counters")["endpoints"]
    refused = {key: c for key, c in counters.items() if c.get("400")}
    # Exactly one call was refused (the first reuse of a signed token), then re-signed.
    assert sum(c["400"] for c in refused.values()) == 1, refused
    assert counters["POST /ams/v1/users/accesstoken"] == {"calls": 1, "200": 1}


def test_calls_without_json_content_type_are_what_the_strict_server_refuses(make_sim):
    sim = make_sim(require_json_content_type=True)
    headers = sim.oauth_headers()
    bare = sim.http.get(sim.url + "/kcs/v1/kme/devices/list", headers=headers)
    assert bare.status_code == 400
    with sim.client("oauth") as client:
        assert client.check_connection() == 1450  # GET with the header
        profile = client.create_profile(valid_profile("To delete"))
        client.delete_profile(profile.id)  # DELETE with the header
    assert sim.calls(LIST) == {"calls": 2, "200": 1, "400": 1}


def test_one_unknown_upload_id_does_not_block_the_others(sim):
    with sim.client("oauth") as client:
        known = [u.upload_id for u in client.list_uploads()]
        result = client.approve_uploads([known[0], "no-such-upload", known[1]])
        assert result.succeeded == known
        assert result.not_found == ["no-such-upload"]
        assert not [u for u in client.list_uploads() if u.pending]


def test_replies_naming_devices_by_kme_id_count_for_the_ids_sent(sim):
    sim.control("POST", "/settings", json={"answerWithKmeIds": True})
    with sim.client("oauth") as client:
        sim.approve_all(client)
        devices = client.list_devices()[:5]
        profile = client.create_profile(valid_profile("By KME id"))
        aliases = {d.id: d.mei for d in devices}
        result = client.assign_profile(profile.id, [d.mei for d in devices], aliases=aliases)
        assert result.ok and result.succeeded == [d.mei for d in devices]
        result = client.unassign_profile([d.mei for d in devices], aliases=aliases)
        assert result.ok and sorted(result.succeeded) == sorted(d.mei for d in devices)
        blind = client.unassign_profile([d.mei for d in devices])  # without the mapping
        assert blind.counts()["failed"] == 5
