"""Device operations of the client against the simulator, in both auth modes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from kmeweb.identifiers import is_valid_imei, is_valid_serial
from kmeweb.knox import DeviceAssignment, KnoxRejectedError
from kmeweb.knox.errors import TOO_MANY_DEVICES

from .conftest import valid_profile

DEMO_DEVICES = 250 + 1200


def test_list_devices_reads_every_page(sim, client):
    pages = list(client.iter_device_pages(page_size=400))
    assert [len(p.devices) for p in pages] == [400, 400, 400, 250]
    assert all(p.total_count == DEMO_DEVICES for p in pages)
    devices = [d for p in pages for d in p.devices]
    assert len({d.id for d in devices}) == DEMO_DEVICES
    d = devices[0]
    assert is_valid_imei(d.mei) and is_valid_serial(d.serial)
    assert d.model.startswith("SM-")
    assert d.status == "Pending Approval"
    assert d.reseller_name == sim.creds["reseller_name"]
    assert d.update_time.tzinfo is not None


def test_page_size_above_the_simulator_maximum_is_clamped(make_sim):
    sim = make_sim(max_page_size=500)
    with sim.client() as client:
        pages = list(client.iter_device_pages(page_size=1000))
    assert [len(p.devices) for p in pages] == [500, 500, 450]
    assert len({d.id for p in pages for d in p.devices}) == DEMO_DEVICES


def test_uploads_listed_and_approved(sim, client):
    uploads = client.list_uploads()
    assert sorted(u.device_count for u in uploads) == [250, 1200]
    assert all(u.pending and u.pending_count == u.device_count for u in uploads)
    result = client.approve_uploads([uploads[0].upload_id, "no-such-upload"])
    assert result.succeeded == [uploads[0].upload_id]
    assert result.not_found == ["no-such-upload"]
    after = {u.upload_id: u for u in client.list_uploads()}
    assert after[uploads[0].upload_id].status == "Approved"
    assert after[uploads[0].upload_id].pending_count == 0
    assert after[uploads[1].upload_id].pending


def test_changed_after_lists_only_changed_devices_over_several_pages(sim, client):
    sim.approve_all(client)
    devices = client.list_devices(page_size=1000)
    time.sleep(0.01)
    cursor = max(d.update_time for d in devices)
    time.sleep(0.01)
    profile = client.create_profile(valid_profile())
    changed = [d.id for d in devices[100:130]]
    assert client.assign_profile(profile.id, changed).ok
    sim.control("PATCH", f"/devices/{devices[500].serial}", json={"tags": ["portal"]})

    pages = list(client.iter_device_pages(changed_after=cursor, page_size=7))
    assert len(pages) == 5
    got = [d for p in pages for d in p.devices]
    assert sorted(d.id for d in got) == sorted([*changed, devices[500].id])
    assert all(d.update_time > cursor for d in got)
    by_id = {d.id: d for d in got}
    assert by_id[changed[0]].profile_id == profile.id
    assert by_id[changed[0]].profile_name == "Sales phones"
    assert by_id[devices[500].id].tags == ["portal"]
    # Nothing changed since the newest change.
    newest = max(d.update_time for d in got)
    assert client.list_devices(changed_after=newest) == []


def test_changed_after_iso_format(sim, auth_mode):
    with sim.client(auth_mode, changed_after_format="iso") as client:
        assert len(client.list_devices(changed_after=datetime(2000, 1, 1, tzinfo=UTC))) == 1450


def test_assign_with_credentials_encrypts_them_and_reports_each_device(sim, client):
    sim.approve_all(client)
    devices = client.list_devices(page_size=1000)
    profile = client.create_profile(valid_profile())
    result = client.assign_profile(
        profile.id,
        [
            DeviceAssignment(devices[0].id, user_name="alice@corp", password="s3cret-pw"),
            devices[1].mei,
            devices[2].serial.lower(),
            "353227410022504",  # bad Luhn digit
            "R58ZZZZZZZZ",  # well-formed, unknown
        ],
    )
    assert result.succeeded == [devices[0].id, devices[1].mei, devices[2].serial.lower()]
    assert result.invalid == ["353227410022504"]
    assert result.not_found == ["R58ZZZZZZZZ"]
    seen = sim.control("GET", f"/devices/{devices[0].id}")
    assert seen["profileId"] == profile.id
    assert seen["status"] == "Profile Assigned"
    assert (seen["userName"], seen["userToken"]) == ("alice@corp", "s3cret-pw")


def test_assign_to_unapproved_device_fails_for_that_device(sim, client):
    devices = client.list_devices(page_size=1000)
    profile = client.create_profile(valid_profile())
    result = client.assign_profile(profile.id, [devices[0].id])
    assert result.failed == [devices[0].id]
    assert "not approved" in result.reason(devices[0].id)


def test_assign_unknown_profile_is_rejected_with_its_code(sim, client):
    sim.approve_all(client)
    device = next(client.iter_devices(page_size=10))
    with pytest.raises(KnoxRejectedError) as info:
        client.assign_profile("nope", [device.id])
    assert (info.value.status, info.value.code) == (404, 4041700)
    assert info.value.partial_result is not None and info.value.partial_result.outcomes == {}


def test_assign_is_idempotent_and_counted(sim, client):
    sim.approve_all(client)
    ids = [d.id for d in next(client.iter_device_pages(page_size=5)).devices]
    profile = client.create_profile(valid_profile())
    client.assign_profile(profile.id, ids)
    before = {d.id: d.update_time for d in client.list_devices(page_size=1000) if d.id in ids}
    client.assign_profile(profile.id, ids)
    after = {d.id: d.update_time for d in client.list_devices(page_size=1000) if d.id in ids}
    assert before == after  # nothing changed the second time
    counters = sim.control("GET", "/counters", params={"deviceId": ids})["devices"]
    assert all(c["assign"] == 2 and c["profiles"] == [profile.id] * 2 for c in counters.values())


def test_batches_are_split_and_merged(sim, auth_mode):
    with sim.client(auth_mode, batch_size=100) as client:
        sim.approve_all(client)
        ids = [d.id for d in client.list_devices(page_size=1000)]
        profile = client.create_profile(valid_profile())
        result = client.assign_profile(profile.id, ids)
    assert result.batches == 15
    assert len(result.succeeded) == DEMO_DEVICES and result.ok
    assert sim.calls("PUT /kcs/v1/kme/devices/assignProfile") == {"calls": 15, "200": 15}


def test_too_many_devices_halves_the_batch(make_sim, auth_mode):
    sim = make_sim(max_devices_per_request=30)
    with sim.client(auth_mode, batch_size=100) as client:
        sim.approve_all(client)
        ids = [d.id for d in client.list_devices(page_size=1000)][:200]
        profile = client.create_profile(valid_profile())
        result = client.assign_profile(profile.id, ids)
        assert client.batch_size == 25
    assert len(result.succeeded) == 200 and result.ok
    counts = sim.calls("PUT /kcs/v1/kme/devices/assignProfile")
    assert counts["400"] == 2  # 100 -> 50 -> 25, then 25 for good
    assert counts["200"] == 8


def test_too_many_devices_answer_has_documented_shape(make_sim):
    sim = make_sim(max_devices_per_request=2)
    resp = sim.http.post(
        sim.url + "/kcs/v2/kme/devices/unassignProfile",
        json={"deviceIds": ["a", "b", "c"]},
        headers=sim.oauth_headers(),
    )
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"errorId", "code", "message", "data"}
    assert (body["code"], body["message"]) == (TOO_MANY_DEVICES, "TOO_MANY_DEVICES")


def test_unassign_v2_reports_partial_results(sim, client):
    sim.approve_all(client)
    devices = client.list_devices(page_size=1000)
    profile = client.create_profile(valid_profile())
    client.assign_profile(profile.id, [d.id for d in devices[:3]])
    result = client.unassign_profile(
        [devices[0].id, devices[1].serial, devices[2].mei, "R58ZZZZZZZZ", "not valid!"]
    )
    assert result.succeeded == [devices[0].id, devices[1].serial, devices[2].mei]
    assert result.not_found == ["R58ZZZZZZZZ"]
    assert result.invalid == ["not valid!"]
    for d in devices[:3]:
        assert sim.control("GET", f"/devices/{d.id}")["profileId"] is None


def test_unassign_v1_is_all_or_nothing_so_the_client_isolates_bad_ids(sim, client):
    sim.approve_all(client)
    devices = client.list_devices(page_size=1000)
    profile = client.create_profile(valid_profile())
    good = [d.id for d in devices[:6]]
    client.assign_profile(profile.id, good)
    result = client.unassign_profile([*good[:3], "R58ZZZZZZZZ", *good[3:], "bad id!"], version=1)
    assert sorted(result.succeeded) == sorted(good)
    assert result.not_found == ["R58ZZZZZZZZ"]
    assert result.invalid == ["bad id!"]
    assert all(sim.control("GET", f"/devices/{i}")["profileId"] is None for i in good)


def test_delete_devices_reports_partial_results(sim, client):
    devices = client.list_devices(page_size=1000)
    result = client.delete_devices([devices[0].mei, devices[1].serial, "R58ZZZZZZZZ", "??"])
    assert result.succeeded == [devices[0].mei, devices[1].serial]
    assert result.not_found == ["R58ZZZZZZZZ"]
    assert result.invalid == ["??"]
    remaining = {d.id for d in client.list_devices(page_size=1000)}
    assert len(remaining) == DEMO_DEVICES - 2
    assert devices[0].id not in remaining and devices[1].id not in remaining


def test_empty_device_list_is_refused_with_knox_code(sim):
    resp = sim.http.post(
        sim.url + "/kcs/v1/kme/devices/delete",
        json={"devices": {"imeiOrSerials": []}},
        headers=sim.oauth_headers(),
    )
    assert resp.status_code == 400
    body = resp.json()
    assert (body["code"], body["message"]) == (4000000, "RESOURCE_INVALID_PARAM")
    assert body["data"] == "Device ID list cannot be empty"


def test_empty_input_makes_no_call(sim, client):
    assert client.delete_devices([]).outcomes == {}
    assert sim.calls("POST /kcs/v1/kme/devices/delete")["calls"] == 0
