"""Fixtures for the Knox client and simulator tests: a real simulator over HTTP in a thread.

Self-contained: nothing here depends on tests/conftest.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from kmeweb.knox import KnoxClient, KnoxConfig, Profile, RetryPolicy
from kmeweb.knox.simulator import create_simulator, get_state
from kmeweb.knox.simulator.state import SimState
from tests.knox_config import client_config
from tests.servers import start_serving, wsgi_server

logging.getLogger("werkzeug").setLevel(logging.WARNING)

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=5)


@dataclass
class Sim:
    """A running simulator: its URL, state, demo credentials and helpers."""

    url: str
    state: SimState
    creds: dict[str, Any]
    server: Any
    http: requests.Session

    def control(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.http.request(method, self.url + "/_sim" + path, timeout=30, **kw)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def fault(self, **rule: Any) -> dict[str, Any]:
        return self.control("POST", "/faults", json=rule)

    def oauth_headers(self) -> dict[str, str]:
        """A bearer token for the demo tenant, fetched from the token endpoint."""
        resp = self.http.post(
            self.url + "/ams/v1/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.creds["oauth_client_id"],
                "client_secret": self.creds["oauth_client_secret"],
                "scope": "kme",
            },
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": "Bearer " + resp.json()["access_token"]}

    def calls(self, key: str) -> dict[str, int]:
        """Endpoint counter, e.g. calls("GET /kcs/v1/kme/devices/list")."""
        return self.control("GET", "/counters")["endpoints"].get(key, {"calls": 0})

    def config(self, mode: str = "oauth", **over: Any) -> KnoxConfig:
        over.setdefault("retry", FAST_RETRY)
        base_url = over.pop("base_url", self.url)
        return client_config(self.creds, base_url, mode, **over)

    def client(self, mode: str = "oauth", **over: Any) -> KnoxClient:
        return KnoxClient(self.config(mode, **over))

    def approve_all(self, client: KnoxClient) -> None:
        client.approve_uploads(u.upload_id for u in client.list_uploads())


@pytest.fixture
def make_sim(rsa_keys: dict[str, str]) -> Iterator[Callable[..., Sim]]:
    """Factory: start a simulator (demo seeded, control on) with create_simulator overrides."""
    running: list[Sim] = []

    def start(**kw: Any) -> Sim:
        kw.setdefault("enable_control", True)
        kw.setdefault("seed_demo_data", True)
        kw.setdefault("async_profile_delay_s", 0.05)
        kw.setdefault("encryption_private_key", rsa_keys["encryption"])
        kw.setdefault("demo_legacy_private_key", rsa_keys["legacy"])
        app = create_simulator(**kw)
        server = wsgi_server(app)
        url = start_serving(server)
        state = get_state(app)
        sim = Sim(
            url=url,
            state=state,
            creds=dict(state.demo or {}),
            server=server,
            http=requests.Session(),
        )
        running.append(sim)
        return sim

    yield start
    for sim in running:
        sim.server.shutdown()
        sim.server.server_close()
        with sim.state.lock:
            sim.state.close()


@pytest.fixture
def sim(make_sim: Callable[..., Sim]) -> Sim:
    return make_sim()


@pytest.fixture(params=["oauth", "legacy"])
def auth_mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(sim: Sim, auth_mode: str) -> Iterator[KnoxClient]:
    with sim.client(auth_mode) as c:
        yield c


def valid_profile(name: str = "Sales phones", **over: Any) -> Profile:
    """A profile that passes the KME rules (Device Owner mode)."""
    fields: dict[str, Any] = {
        "name": name,
        "description": "Phones for the sales team",
        "do_enabled": True,
        "skip_setup_wizard": True,
        "supported_mdm": "kmeweb",
        "allow_user_cancel": False,
        "mdm_server_uri": "https://mdm.example.test",
        "custom_json": '{"enrollment_token": "abc"}',
    }
    fields.update(over)
    return Profile(**fields)
