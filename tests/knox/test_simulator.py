"""The simulator itself: persistence, control endpoints, error bodies, CLI."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from kmeweb.knox import DeviceAssignment, KnoxRejectedError
from kmeweb.knox.simulator import get_state, seed_demo
from kmeweb.knox.simulator.cli import kme_sim
from kmeweb.knox.simulator.state import SimState

from .conftest import valid_profile

DEMO_KEYS = {
    "customer_id",
    "tenant_name",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scope",
    "legacy_client_identifier",
    "legacy_keys_json",
    "encryption_public_key",
    "reseller_id",
    "reseller_name",
    "upload_ids",
}


def test_state_survives_restart(make_sim, tmp_path):
    path = str(tmp_path / "sim.sqlite")
    first = make_sim(state_path=path)
    with first.client("legacy") as client:
        first.approve_all(client)
        profile = client.create_profile(valid_profile())
        devices = client.list_devices(page_size=1000)
        client.assign_profile(profile.id, [DeviceAssignment(devices[0].id, "bob", "pw-1")])
        client.delete_devices([devices[1].serial])
        client.create_profile_alias(first.creds["reseller_id"], profile.id)
        snapshot = client.list_devices(page_size=1000)
    first.server.shutdown()
    with first.state.lock:
        first.state.close()

    second = make_sim(state_path=path)
    assert second.creds == first.creds  # demo not re-seeded, same credentials
    with second.client("legacy") as client:
        again = client.list_devices(page_size=1000)
        assert again == snapshot  # same devices, same order, same fields and times
        assert len(again) == 1449
        assert (again[0].profile_id, again[0].user_name) == (profile.id, "bob")
        assert [p.name for p in client.list_profiles()] == ["Sales phones"]
        assert all(not u.pending for u in client.list_uploads())
        assert len(client.list_profiles(reseller_id=second.creds["reseller_id"])[0].aliases) == 1
        # New changes still get later update times than restored ones.
        newest = max(d.update_time for d in again)
        client.unassign_profile([devices[0].id])
        assert [d.id for d in client.list_devices(changed_after=newest)] == [devices[0].id]
    assert second.control("GET", f"/devices/{devices[0].id}")["userToken"] == "pw-1"


def test_seed_demo_is_idempotent_and_documented_keys(sim):
    assert set(sim.creds) == DEMO_KEYS
    assert seed_demo(sim.state) == sim.creds
    stats = sim.control("GET", "/stats")
    assert stats == {
        sim.creds["customer_id"]: {
            "devices": 1450,
            "uploads": 2,
            "profiles": 0,
            "resellers": 1,
            "aliases": 0,
        }
    }


def test_control_endpoints_404_when_disabled(make_sim):
    sim = make_sim(enable_control=False)
    resp = sim.http.get(sim.url + "/_sim/credentials")
    assert resp.status_code == 404
    assert resp.json()["code"] == 4040000


def test_unknown_path_and_method_answer_knox_json(sim):
    missing = sim.http.get(sim.url + "/kcs/v1/kme/nothing")
    assert missing.status_code == 404
    assert set(missing.json()) == {"errorId", "code", "message", "data"}
    wrong = sim.http.delete(sim.url + "/kcs/v1/kme/devices/list")
    assert wrong.status_code == 405
    assert wrong.json()["message"] == "METHOD_NOT_ALLOWED"


def test_v2_unassign_accepts_put_too(sim):
    resp = sim.http.put(
        sim.url + "/kcs/v2/kme/devices/unassignProfile",
        json={"deviceIds": ["R58ZZZZZZZZ"]},
        headers=sim.oauth_headers(),
    )
    assert resp.status_code == 200 and resp.json()["notFoundDeviceList"] == ["R58ZZZZZZZZ"]


def test_changed_after_accepts_relative_and_iso_forms(sim):
    headers = sim.oauth_headers()
    for value in ("24h", "30m", "2000-01-01T00:00:00Z", "946684800000"):
        resp = sim.http.get(
            sim.url + "/kcs/v1/kme/devices/list",
            params={"changedAfter": value, "pageSize": 1},
            headers=headers,
        )
        assert resp.json()["totalCount"] == 1450, value
    bad = sim.http.get(
        sim.url + "/kcs/v1/kme/devices/list", params={"changedAfter": "soon"}, headers=headers
    )
    assert bad.status_code == 400


def test_portal_edits_are_seen_by_pull(sim, auth_mode):
    with sim.client(auth_mode) as client:
        sim.approve_all(client)
        profile = client.create_profile(valid_profile())
        old = client.get_profile(profile.id)
        time.sleep(0.005)
        edited = sim.control(
            "PATCH", f"/profiles/{profile.id}", json={"description": "edited in portal"}
        )
        assert edited["description"] == "edited in portal"
        fresh = client.get_profile(profile.id)
        assert fresh.description == "edited in portal"
        assert fresh.update_time > old.update_time

        devices = client.list_devices(page_size=1000)
        cursor = max(d.update_time for d in devices)
        time.sleep(0.005)
        device = devices[0]
        sim.control("PATCH", f"/devices/{device.id}", json={"profileId": profile.id, "tags": ["x"]})
        [changed] = client.list_devices(changed_after=cursor)
        assert (changed.id, changed.profile_id, changed.tags) == (device.id, profile.id, ["x"])


def test_portal_profile_edit_still_validated(sim):
    with sim.client() as client:
        profile = client.create_profile(valid_profile())
    resp = sim.http.patch(sim.url + f"/_sim/profiles/{profile.id}", json={"name": "a/b"})
    assert resp.status_code == 400 and resp.json()["code"] == 4001700


def test_fault_rules_can_be_listed_and_cleared(sim):
    rule = sim.fault(path="/kcs/*", status=503, rate=0.5)
    assert [f["id"] for f in sim.control("GET", "/faults")] == [rule["id"]]
    sim.control("DELETE", "/faults")
    assert sim.control("GET", "/faults") == []


def test_reset_and_reseed(sim):
    sim.control("POST", "/reset")
    assert sim.control("GET", "/stats") == {}
    creds = sim.control("POST", "/reset", json={"seedDemo": True})
    assert set(creds) == DEMO_KEYS
    assert sim.control("GET", "/stats")[creds["customer_id"]]["devices"] == 1450


def test_settings_change_limits_at_run_time(sim):
    out = sim.control("POST", "/settings", json={"maxDevicesPerRequest": 5, "maxPageSize": 10})
    assert out["maxDevicesPerRequest"] == 5
    with sim.client("oauth") as client:
        pages = list(client.iter_device_pages(page_size=100))
    assert len(pages) == 145


def test_cli_upload_adds_devices_to_a_running_simulator(sim):
    result = CliRunner().invoke(
        kme_sim, ["upload", "--url", sim.url, "--reseller", "Acme Phones", "--count", "25"]
    )
    assert result.exit_code == 0, result.output
    assert "25 devices" in result.output
    uploads = {u["resellerName"]: u for u in _uploads(sim)}
    assert uploads["Acme Phones"]["deviceCount"] == 25
    assert uploads["Acme Phones"]["status"] == "Pending"


def _uploads(sim):
    resp = sim.http.get(sim.url + "/kcs/v1/kme/devices/uploads/list", headers=sim.oauth_headers())
    return resp.json()["uploadList"]


def test_cli_serve_in_a_subprocess(tmp_path):
    creds_file = tmp_path / "creds.json"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kmeweb.knox.simulator",
            "serve",
            "--port",
            "0",
            "--quiet",
            "--seed-demo",
            "--state",
            str(tmp_path / "s.sqlite"),
            "--credentials-out",
            str(creds_file),
        ],  # fmt: skip
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        for _ in range(5):
            line = proc.stdout.readline()
            m = re.search(r"KME simulator on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "simulator did not announce its URL"
        creds = json.loads(creds_file.read_text())
        assert creds["base_url"] == url and set(creds) == DEMO_KEYS | {"base_url"}
        assert (
            requests.get(url + "/_sim/stats", timeout=5).json()[creds["customer_id"]]["devices"]
            == 1450
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_get_state_is_the_live_state(sim):
    assert sim.state.tenants[sim.creds["customer_id"]].name == "Demo Company"
    assert get_state  # public accessor used by the app's `make run`


def test_non_object_json_body_is_a_400(sim):
    resp = sim.http.post(
        sim.url + "/kcs/v1/kme/profiles/create",
        json=["not", "an", "object"],
        headers=sim.oauth_headers(),
    )
    assert resp.status_code == 400 and resp.json()["code"] == 4000000


def test_simulator_routes_take_their_own_overrides(make_sim):
    moved = {"devices_unassign_v2": "PUT /kcs/v9/kme/devices/unassign"}
    sim = make_sim(paths=moved)
    with sim.client("oauth") as default_paths:
        sim.approve_all(default_paths)
        ids = [d.id for d in default_paths.list_devices()[:3]]
        with pytest.raises(KnoxRejectedError) as info:
            default_paths.unassign_profile(ids)
        assert info.value.status == 404  # the documented path is gone from this simulator
    with sim.client("oauth", paths=moved) as client:
        assert client.unassign_profile(ids).ok
    assert sim.calls("PUT /kcs/v9/kme/devices/unassign") == {"calls": 1, "200": 1}


class _RepeatsTheFirstDevice(random.Random):
    """A random source that, once armed, draws the next generated device's identifiers twice:
    after that device's six draws (IMEI digits, serial parts, model) it rewinds once."""

    DRAWS_PER_DEVICE = 6

    def arm(self) -> None:
        self._draws, self._start = 0, None

    def _before(self) -> None:
        if getattr(self, "_draws", None) == 0 and self._start is None:
            self._start = self.getstate()

    def _after(self) -> None:
        if getattr(self, "_draws", None) is None:
            return
        self._draws += 1
        if self._draws == self.DRAWS_PER_DEVICE:
            self.setstate(self._start)

    def choice(self, seq):  # noqa: ANN001, ANN201 - random.Random's own signature
        self._before()
        value = super().choice(seq)
        self._after()
        return value

    def choices(self, population, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        self._before()
        value = super().choices(population, *args, **kwargs)
        self._after()
        return value


def test_an_upload_of_n_generated_devices_holds_n_even_when_a_draw_repeats():
    state = SimState()
    state.rng = _RepeatsTheFirstDevice(11)
    tenant = state.tenants[state.add_tenant()["customer_id"]]
    reseller = state.add_reseller(tenant, "Repeat Reseller")
    state.rng.arm()
    upload, created = state.add_upload(tenant, reseller, 5, order_no="PO-1")
    assert len(created) == 5
    assert len({d.mei for d in created}) == 5 and len({d.serial for d in created}) == 5
    assert sum(1 for d in tenant.devices.values() if d.upload_id == upload.upload_id) == 5
