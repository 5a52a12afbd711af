"""Profile and reseller operations of the client, and the KME profile rules of the simulator."""

from __future__ import annotations

import threading
import time

import pytest

from kmeweb.knox import KnoxRejectedError, Profile
from kmeweb.knox.errors import (
    BULK_ENROLL_PROFILE_INVALID,
    BULK_ENROLL_PROFILE_NAME_CONFLICT,
    BULK_ENROLL_PROFILE_NOT_FOUND,
)

from .conftest import valid_profile


def test_profile_lifecycle(sim, client):
    created = client.create_profile(valid_profile())
    assert created.id and created.name == "Sales phones"
    assert created.update_time is not None

    got = client.get_profile(created.id)
    assert (got.name, got.supported_mdm, got.mdm_server_uri) == (
        "Sales phones",
        "kmeweb",
        "https://mdm.example.test",
    )
    assert got.custom_json == '{"enrollment_token": "abc"}'

    got.name = "Sales phones EU"
    got.description = "renamed"
    updated = client.update_profile(got)
    assert (updated.id, updated.name, updated.description) == (
        created.id,
        "Sales phones EU",
        "renamed",
    )
    assert updated.update_time >= created.update_time
    assert [p.name for p in client.list_profiles()] == ["Sales phones EU"]
    assert client.find_profile_by_name("sales PHONES eu").id == created.id

    client.delete_profile(created.id)
    assert client.list_profiles() == []
    with pytest.raises(KnoxRejectedError) as info:
        client.get_profile(created.id)
    assert (info.value.status, info.value.code) == (404, BULK_ENROLL_PROFILE_NOT_FOUND)


def test_deleting_a_profile_unassigns_its_devices(sim, client):
    sim.approve_all(client)
    ids = [d.id for d in next(client.iter_device_pages(page_size=3)).devices]
    profile = client.create_profile(valid_profile())
    client.assign_profile(profile.id, ids)
    client.delete_profile(profile.id)
    assert all(sim.control("GET", f"/devices/{i}")["profileId"] is None for i in ids)


def test_profile_list_pages(sim, client):
    for n in range(7):
        client.create_profile(valid_profile(f"Profile {n}"))
    with sim.client(client.config.auth_mode, page_size=3) as small:
        assert [p.name for p in small.list_profiles()] == [f"Profile {n}" for n in range(7)]
    assert sim.calls("GET /kcs/v1/kme/profiles/list")["calls"] == 3


def test_create_async_polls_until_complete(sim, client):
    tx = client.create_profile_async(valid_profile("Async one"), poll_interval=0.02, timeout=5)
    assert tx.done and tx.succeeded and tx.state == "Complete"
    assert client.get_profile(tx.profile_id).name == "Async one"
    assert sim.calls("GET /kcs/v1/kme/profiles/status")["calls"] >= 1


def _finished(client, transaction_id: str, timeout: float = 10):
    """The transaction once Knox reports it done (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        tx = client.get_transaction(transaction_id)
        if tx is not None and tx.done:
            return tx
        assert time.monotonic() < deadline, f"transaction {transaction_id} still {tx}"
        time.sleep(0.02)


def _kme_takes_its_time(sim) -> None:
    """createAsync transactions stay in progress until `_kme_finishes` (no race with a clock)."""
    sim.control("POST", "/settings", json={"asyncProfileDelayS": 3600})


def _kme_finishes(sim) -> None:
    sim.control("POST", "/transactions/finish")


def _transaction_pending(sim) -> bool:
    with sim.state.lock:
        return any(t.pending_tx for t in sim.state.tenants.values())


def test_create_async_without_waiting_then_status(sim, client):
    _kme_takes_its_time(sim)
    tx = client.create_profile_async(valid_profile("Later"), wait=False)
    assert not tx.done
    assert client.find_profile_by_name("Later") is None
    assert not client.get_transaction(tx.transaction_id).done
    _kme_finishes(sim)
    done = _finished(client, tx.transaction_id)
    assert done.succeeded and done.profile_name == "Later"
    assert client.find_profile_by_name("Later").id == done.profile_id


def test_name_conflict_is_409(sim, client):
    client.create_profile(valid_profile("Twice"))
    with pytest.raises(KnoxRejectedError) as info:
        client.create_profile(valid_profile("twice"))
    assert (info.value.status, info.value.code) == (409, BULK_ENROLL_PROFILE_NAME_CONFLICT)
    assert info.value.knox_message == "BULK_ENROLL_PROFILE_NAME_CONFLICT"


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"name": ""}, "name is required"),
        ({"name": "Sales (EU)"}, "forbidden characters"),
        ({"name": "a/b"}, "forbidden characters"),
        ({"description": "x" * 201}, "at most 200"),
        ({"skip_setup_wizard": False}, "skipSetupWizard must be true"),
        ({"supported_mdm": None}, "supportedMDM is required"),
        ({"allow_user_cancel": True}, "allowUserCancel must be false"),
        ({"do_enabled": False, "ae_enabled": False}, "supportPhoneNumber is required"),
        (
            {"do_enabled": False, "ae_enabled": True, "support_phone_number": "+1 555 0100"},
            "supportEmailAddress is required",
        ),
        (
            {
                "do_enabled": False,
                "ae_enabled": True,
                "skip_setup_wizard": False,
                "support_phone_number": "+1 555 0100",
                "support_email_address": "help@example.test",
            },
            "skipSetupWizard must be true",
        ),
    ],
)
def test_profile_rules_refused_with_documented_shape(sim, over, why):
    with sim.client() as client:
        with pytest.raises(KnoxRejectedError) as info:
            client.create_profile(valid_profile(**over))
    exc = info.value
    assert (exc.status, exc.code, exc.knox_message) == (
        400,
        BULK_ENROLL_PROFILE_INVALID,
        "BULK_ENROLL_PROFILE_INVALID",
    )
    assert why in exc.data
    assert exc.error_id
    assert sim.calls("POST /kcs/v1/kme/profiles/create") == {"calls": 1, "400": 1}  # no retry


def test_profile_without_device_owner_needs_only_support_contacts(sim):
    with sim.client() as client:
        p = client.create_profile(
            Profile(
                name="Basic",
                do_enabled=False,
                support_phone_number="+1 555 0100",
                support_email_address="help@example.test",
            )
        )
    assert p.id and p.do_enabled is False


def test_reseller_preferences_auto_approve_and_default_profile(sim, client):
    profile = client.create_profile(valid_profile())
    [reseller] = client.list_resellers()
    updated = client.approve_reseller(
        reseller.reseller_id, auto_approve=True, default_profile_id=profile.id
    )
    assert (updated.auto_approve, updated.default_profile_id) == (True, profile.id)

    upload = sim.control("POST", "/uploads", json={"resellerId": reseller.reseller_id, "count": 5})
    assert upload["status"] == "Approved"
    new_ids = {d["id"] for d in upload["devices"]}
    fresh = [d for d in client.list_devices(page_size=1000) if d.id in new_ids]
    assert len(fresh) == 5
    assert all(d.profile_id == profile.id and d.status == "Profile Assigned" for d in fresh)


def test_unknown_reseller_is_404(sim, client):
    with pytest.raises(KnoxRejectedError) as info:
        client.approve_reseller("R-nope")
    assert (info.value.status, info.value.code) == (404, 4042100)


def test_profile_aliases(sim, client):
    a = client.create_profile(valid_profile("A"))
    b = client.create_profile(valid_profile("B"))
    rid = sim.creds["reseller_id"]
    alias = client.create_profile_alias(rid, a.id, "Alias A")
    assert (alias.reseller_id, alias.profile_id, alias.name) == (rid, a.id, "Alias A")

    listed = {p.name: p for p in client.list_profiles(reseller_id=rid)}
    assert [x.alias_id for x in listed["A"].aliases] == [alias.alias_id]
    assert listed["B"].aliases == []

    moved = client.update_profile_alias(alias.alias_id, rid, b.id)
    assert moved.profile_id == b.id
    upload = sim.control("POST", "/uploads", json={"count": 2, "profileAliasId": alias.alias_id})
    sim.approve_all(client)
    ids = {d["id"] for d in upload["devices"]}
    assert {d.profile_id for d in client.list_devices(page_size=2000) if d.id in ids} == {b.id}

    client.delete_profile_alias(alias.alias_id)
    with pytest.raises(KnoxRejectedError) as info:
        client.delete_profile_alias(alias.alias_id)
    assert info.value.status == 404


def test_async_transaction_failing_in_knox(sim, client):
    _kme_takes_its_time(sim)
    tx = client.create_profile_async(valid_profile("Raced"), wait=False)
    client.create_profile(valid_profile("Raced"))  # takes the name before the transaction runs
    _kme_finishes(sim)
    failed = _finished(client, tx.transaction_id)
    assert failed.done and not failed.succeeded and failed.state == "Failed"
    assert "already exists" in failed.message


def test_waiting_async_create_raises_when_the_transaction_fails(sim, client):
    _kme_takes_its_time(sim)
    with sim.client(client.config.auth_mode) as other:

        def race() -> None:
            # Once the transaction is accepted (and waited on), another client takes the name.
            deadline = time.monotonic() + 10
            while not _transaction_pending(sim):
                assert time.monotonic() < deadline, "the createAsync transaction never came"
                time.sleep(0.01)
            other.create_profile(valid_profile("Raced"))
            _kme_finishes(sim)

        racer = threading.Thread(target=race)
        racer.start()
        with pytest.raises(KnoxRejectedError) as info:
            client.create_profile_async(valid_profile("Raced"), poll_interval=0.05, timeout=15)
        racer.join()
    assert "Failed" in str(info.value)
