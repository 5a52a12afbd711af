"""Shared by the bench scripts: run the KME simulator as a separate process and seed it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = 1000  # the simulator's maximum page size (and device cap per request)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_simulator(state_path: str | None) -> tuple[subprocess.Popen, str]:
    """Start `python -m kmeweb.knox.simulator serve` (with a SQLite state file unless None)
    and wait until it answers; returns the process and its base URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "kmeweb.knox.simulator", "serve", "--port", str(port), "--quiet",
        "--max-devices", str(PAGE_SIZE), "--max-page-size", str(PAGE_SIZE),
    ]  # fmt: skip
    if state_path:
        cmd += ["--state", state_path]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"simulator exited with {proc.returncode}")
        try:
            requests.get(url + "/_sim/stats", timeout=1)
            return proc, url
        except requests.RequestException:
            if time.monotonic() > deadline:
                proc.terminate()
                raise SystemExit("simulator did not start") from None
            time.sleep(0.1)


def client_config(creds: dict[str, Any], url: str, **overrides: Any) -> Any:
    """An OAuth KnoxConfig for a simulator tenant (token URL on the simulator too)."""
    from kmeweb.knox import KnoxConfig

    return KnoxConfig(
        base_url=url,
        token_url=url + "/ams/v1/oauth2/token",
        client_id=creds["oauth_client_id"],
        client_secret=creds["oauth_client_secret"],
        customer_id=creds["customer_id"],
        encryption_public_key=creds.get("encryption_public_key"),
        **overrides,
    )


def seed_tenant(url: str, devices: int) -> dict[str, Any]:
    """A tenant with an auto-approving reseller that uploaded `devices` devices; returns
    the tenant's credentials."""
    creds = requests.post(url + "/_sim/tenants", json={"legacy": False}, timeout=30).json()
    cid = creds["customer_id"]
    requests.post(
        url + "/_sim/resellers",
        json={"customerId": cid, "name": "Bench Reseller", "autoApprove": True},
        timeout=30,
    ).raise_for_status()
    requests.post(
        url + "/_sim/uploads", json={"customerId": cid, "count": devices}, timeout=600
    ).raise_for_status()
    return creds


class BarePager:
    """Fetches devices/list pages with bare requests + json.loads and nothing else."""

    def __init__(self, url: str, creds: dict) -> None:
        self.url, self.creds = url, creds
        self.http = requests.Session()
        token = self.http.post(
            url + "/ams/v1/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["oauth_client_id"],
                "client_secret": creds["oauth_client_secret"],
                "scope": "kme",
            },
            timeout=30,
        ).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def page(self, page_num: int, page_size: int = PAGE_SIZE) -> int:
        """How many devices page `page_num` holds."""
        return len(self.devices(page_num, page_size))

    def devices(self, page_num: int, page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """The `deviceList` of page `page_num`, parsed."""
        params = {
            "pageNum": page_num,
            "pageSize": page_size,
            "customerId": self.creds["customer_id"],
        }
        resp = self.http.get(
            self.url + "/kcs/v1/kme/devices/list", params=params, headers=self.headers
        )
        return json.loads(resp.content)["deviceList"]


def connect_integration(session: Any, url: str, creds: dict[str, Any]) -> None:
    """Save the Knox integration settings for a simulator tenant (OAuth, the token URL on the
    simulator too) and activate it, as an admin would; flushes, the caller commits."""
    from kmeweb.integration import activation, settings

    settings.save_settings(
        session,
        {
            "name": "Bench", "auth_mode": "oauth", "base_url": url,
            "token_url": url + "/ams/v1/oauth2/token",
            "client_id": creds["oauth_client_id"], "secret": creds["oauth_client_secret"],
            "customer_id": creds["customer_id"],
            "encryption_public_key": creds.get("encryption_public_key"),
        },
        "bench",
    )  # fmt: skip
    activation.activate_integration(session, "bench")
