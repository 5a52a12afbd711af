"""The demo tenant of the simulator, written straight into its own state (no client code)."""

from __future__ import annotations

from typing import Any

from kmeweb.knox.simulator import keys
from kmeweb.knox.simulator.state import SimState

DEMO_CUSTOMER_ID = "KMEDEMO00001"
DEMO_TENANT_NAME = "Demo Company"
DEMO_OAUTH_CLIENT_ID = "kmeweb-demo"
DEMO_OAUTH_CLIENT_SECRET = "kmeweb-demo-secret"
DEMO_RESELLER_ID = "R000000001"
DEMO_RESELLER_NAME = "Demo Reseller Ltd"
DEMO_UPLOAD_SIZES = (250, 1200)


def seed_demo(sim_state: SimState, *, legacy_private_key: str | None = None) -> dict[str, Any]:
    """Seed the demo tenant once and return its credentials (idempotent: a state that already
    holds the demo tenant just returns them).

    Seeds: tenant DEMO_CUSTOMER_ID with OAuth client kmeweb-demo / kmeweb-demo-secret, a legacy
    key pair (generated unless `legacy_private_key`, PEM or base64 DER, is given) and client
    identifier, one reseller and two PENDING uploads of 250 and 1,200 devices. Writes to the
    state file when there is one. Keys of the returned dict: see docs/knox.md.
    """
    with sim_state.lock:
        demo = sim_state.demo
        if demo and demo.get("customer_id") in sim_state.tenants:
            return dict(demo)
        key = keys.read_private(legacy_private_key) if legacy_private_key else None
        creds = sim_state.add_tenant(
            DEMO_CUSTOMER_ID,
            DEMO_TENANT_NAME,
            oauth_client_id=DEMO_OAUTH_CLIENT_ID,
            oauth_client_secret=DEMO_OAUTH_CLIENT_SECRET,
            legacy_key=key,
        )
        t = sim_state.tenants[DEMO_CUSTOMER_ID]
        reseller = sim_state.add_reseller(t, DEMO_RESELLER_NAME, reseller_id=DEMO_RESELLER_ID)
        uploads = []
        for n, size in enumerate(DEMO_UPLOAD_SIZES, start=1):
            upload, _ = sim_state.add_upload(t, reseller, size, order_no=f"PO-DEMO-{n:04d}")
            uploads.append(upload.upload_id)
        demo = {
            **creds,
            "oauth_scope": "kme",
            "encryption_public_key": sim_state.encryption_public_key_b64(),
            "reseller_id": reseller.reseller_id,
            "reseller_name": reseller.name,
            "upload_ids": uploads,
        }
        sim_state.demo = demo
        sim_state._save_meta("demo", demo)
        sim_state.flush()
        return dict(demo)
