"""Transient failures are retried with backoff (honouring Retry-After); others are not."""

from __future__ import annotations

import logging
import time

import pytest

from kmeweb.knox import KnoxRejectedError, KnoxTransientError, RetryPolicy

LIST = "GET /kcs/v1/kme/devices/list"


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_retried_to_success(sim, auth_mode, status):
    sim.fault(path="/kcs/v1/kme/devices/list", status=status, remaining=2)
    with sim.client(auth_mode) as client:
        assert client.check_connection() == 1450
    assert sim.calls(LIST) == {"calls": 3, str(status): 2, "200": 1}


def test_random_rate_of_failures_still_completes_a_full_listing(sim):
    sim.fault(path="/kcs/v1/kme/*", status=503, rate=0.3)
    retry = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01)
    with sim.client("oauth", retry=retry) as client:
        assert len(client.list_devices(page_size=100)) == 1450
    counts = sim.calls(LIST)
    assert counts["200"] == 15 and counts.get("503", 0) > 0


def test_retry_after_is_honoured(sim):
    sim.fault(path="/kcs/v1/kme/devices/list", status=429, retryAfter=1, remaining=1)
    with sim.client("oauth") as client:
        started = time.monotonic()
        client.check_connection()
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.5  # the backoff alone would be at most 0.01 s


def test_retry_after_beyond_the_policy_raises_at_once_with_it(sim):
    sim.fault(path="/kcs/v1/kme/devices/list", status=503, retryAfter=60)
    with sim.client("oauth") as client, pytest.raises(KnoxTransientError) as info:
        client.check_connection()
    assert info.value.retry_after == 60
    assert info.value.status == 503 and info.value.attempts == 1
    assert sim.calls(LIST)["calls"] == 1


def test_persistent_outage_gives_up_after_max_attempts(sim, caplog):
    caplog.set_level(logging.WARNING, logger="kmeweb.knox")
    sim.fault(path="/kcs/v1/kme/devices/list", status=503)
    with sim.client("oauth") as client, pytest.raises(KnoxTransientError) as info:
        client.check_connection()
    assert info.value.attempts == 4
    assert info.value.code == 5030000
    assert sim.calls(LIST) == {"calls": 4, "503": 4}
    assert caplog.text.count("retry") == 3
    assert sim.creds["oauth_client_secret"] not in caplog.text


def test_timeouts_are_retried(sim):
    sim.fault(path="/kcs/v1/kme/devices/list", hangS=0.6, remaining=1)
    with sim.client("oauth", read_timeout=0.2) as client:
        started = time.monotonic()
        assert client.check_connection() == 1450
        assert time.monotonic() - started >= 0.2
    # The timed-out call is still served, like on a slow real server: both calls end as 200.
    deadline = time.monotonic() + 10
    while sim.calls(LIST) != {"calls": 2, "200": 2}:
        assert time.monotonic() < deadline, sim.calls(LIST)
        time.sleep(0.05)


def test_connection_refused_is_transient(sim):
    with sim.client("oauth", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(KnoxTransientError) as info:
            client.check_connection()
    assert info.value.attempts == 4 and "connection failed" in str(info.value)


def test_a_400_is_not_retried_and_its_code_surfaces(sim):
    sim.fault(
        path="/kcs/v1/kme/devices/list", status=400, code=4001701, message="CUSTOMER_ID_INVALID"
    )
    with sim.client("oauth") as client, pytest.raises(KnoxRejectedError) as info:
        client.check_connection()
    exc = info.value
    assert (exc.status, exc.code, exc.knox_message) == (400, 4001701, "CUSTOMER_ID_INVALID")
    assert "4001701" in str(exc)
    assert sim.calls(LIST)["calls"] == 1


def test_a_500_is_not_retried(sim):
    sim.fault(path="/kcs/v1/kme/devices/list", status=500)
    with sim.client("oauth") as client, pytest.raises(KnoxRejectedError) as info:
        client.check_connection()
    assert (info.value.status, info.value.code) == (500, 5000000)
    assert not isinstance(info.value, KnoxTransientError)
    assert sim.calls(LIST)["calls"] == 1


def test_transient_failure_mid_batch_keeps_partial_result(sim):
    from .conftest import valid_profile

    with sim.client("oauth", batch_size=500) as client:
        sim.approve_all(client)
        ids = [d.id for d in client.list_devices(page_size=1000)]
        profile = client.create_profile(valid_profile())
        # The first batch passes, then assignProfile is down for good.
        sim.fault(path="/kcs/v1/kme/devices/assignProfile", latencyMs=1, remaining=1)
        sim.fault(path="/kcs/v1/kme/devices/assignProfile", status=503, remaining=100)
        with pytest.raises(KnoxTransientError) as info:
            client.assign_profile(profile.id, ids)
    partial = info.value.partial_result
    assert partial is not None and partial.outcomes == {}
    # Faults are evaluated in order: the latency rule does not stop the 503 rule.
    assert sim.calls("PUT /kcs/v1/kme/devices/assignProfile")["calls"] == 4


def test_latency_injection_slows_calls(sim):
    sim.fault(path="/kcs/v1/kme/devices/list", latencyMs=200, remaining=1)
    with sim.client("oauth") as client:
        started = time.monotonic()
        client.check_connection()
        assert time.monotonic() - started >= 0.2
