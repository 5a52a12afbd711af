"""`kme-sim` commands: run the simulator, add reseller uploads to a running one.

A plain click group (no app context needed), so it works both as `flask kme-sim ...` (the app's
cli.py adds it) and as `python -m kmeweb.knox.simulator ...`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any
from urllib.parse import quote

import click
import requests
from werkzeug.serving import make_server

from kmeweb.knox.simulator.app import create_simulator, get_state
from kmeweb.knox.simulator.demo import seed_demo as do_seed
from kmeweb.knox.simulator.device import agent_request, call_enroll, enroll_url


@click.group("kme-sim", help="Local Knox Mobile Enrollment API simulator.")
def kme_sim() -> None:
    pass


@kme_sim.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--state", "state_path", default=None, help="SQLite state file (default: memory).")
@click.option("--control/--no-control", default=True, show_default=True, help="Mount /_sim/.")
@click.option("--seed-demo", is_flag=True, help="Seed the demo tenant (idempotent).")
@click.option(
    "--credentials-out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the demo credentials (JSON, plus base_url) to this file.",
)
@click.option("--max-devices", default=1000, show_default=True, help="Devices per request cap.")
@click.option("--max-page-size", default=1000, show_default=True)
@click.option("--oauth-token-lifetime", default=599.0, show_default=True, help="Seconds.")
@click.option("--legacy-token-lifetime", default=1800.0, show_default=True, help="Seconds.")
@click.option(
    "--paths",
    default=None,
    help='JSON route overrides, e.g. \'{"devices_unassign_v2": "PUT /kcs/v2/..."}\' '
    "(the simulator's own; KMEWEB_KNOX_PATHS is the client's).",
)
@click.option("--quiet", is_flag=True, help="Do not log every request.")
def serve(
    host: str,
    port: int,
    state_path: str | None,
    control: bool,
    seed_demo: bool,
    credentials_out: str | None,
    max_devices: int,
    max_page_size: int,
    oauth_token_lifetime: float,
    legacy_token_lifetime: float,
    paths: str | None,
    quiet: bool,
) -> None:
    """Run the simulator until interrupted (threaded werkzeug server)."""
    app = create_simulator(
        state_path=state_path,
        enable_control=control,
        max_devices_per_request=max_devices,
        max_page_size=max_page_size,
        oauth_token_lifetime_s=oauth_token_lifetime,
        legacy_token_lifetime_s=legacy_token_lifetime,
        paths=json.loads(paths) if paths else None,
    )
    state = get_state(app)
    server = make_server(host, port, app, threaded=True)
    base_url = f"http://{host}:{server.server_port}"
    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if seed_demo:
        creds = do_seed(state)
        click.echo(
            f"demo tenant {creds['customer_id']}: OAuth client {creds['oauth_client_id']} / "
            f"{creds['oauth_client_secret']}, reseller {creds['reseller_name']}, "
            f"uploads {', '.join(creds['upload_ids'])}"
        )
        if credentials_out:
            with open(credentials_out, "w", encoding="utf-8") as fh:
                json.dump({**creds, "base_url": base_url}, fh, indent=2)
    click.echo(
        f"KME simulator on {base_url} (state: {state_path or 'memory'}, "
        f"control: {'on' if control else 'off'})",
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        with state.lock:
            state.close()


@kme_sim.command("upload")
@click.option("--url", default="http://127.0.0.1:8765", show_default=True)
@click.option("--reseller", "reseller_name", required=True, help="Reseller name (created if new).")
@click.option("--count", required=True, type=click.IntRange(1, 1_000_000))
@click.option("--customer-id", default=None, help="Tenant (default: the demo tenant).")
@click.option("--order-no", default=None)
def upload(
    url: str, reseller_name: str, count: int, customer_id: str | None, order_no: str | None
) -> None:
    """Add a reseller upload of COUNT generated devices to a running simulator (via /_sim/)."""
    body = {"resellerName": reseller_name, "count": count}
    if customer_id:
        body["customerId"] = customer_id
    if order_no:
        body["orderNo"] = order_no
    try:
        resp = requests.post(url.rstrip("/") + "/_sim/uploads", json=body, timeout=300)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"simulator not reachable at {url}: {type(exc).__name__}"
        ) from None
    if resp.status_code != 201:
        raise click.ClickException(f"simulator answered {resp.status_code}: {resp.text[:300]}")
    data = resp.json()
    click.echo(
        f"upload {data['uploadId']} from {data['resellerName']}: {data['deviceCount']} devices "
        f"({data['status']})"
    )


SECRET_HINTS = ("password", "token")


def _masked(value: Any, show: bool) -> Any:
    """The answer with secret-looking values masked (unless `show`)."""
    if show:
        return value
    if isinstance(value, dict):
        return {
            k: ("••••••••" if v and any(h in k.lower() for h in SECRET_HINTS) else _masked(v, show))
            for k, v in value.items()
        }
    return value


@kme_sim.command("boot-device")
@click.argument("ident", metavar="IMEI")
@click.option(
    "--mdm-url",
    default=None,
    help="kmeweb's base URL (default: the server URL in the profile's bundle).",
)
@click.option("--url", default="http://127.0.0.1:8765", show_default=True, help="Simulator URL.")
@click.option("--customer-id", default=None, help="Tenant (default: the demo tenant).")
@click.option("--agent-version", default="kme-sim-agent/1.0", show_default=True)
@click.option("--show-secrets", is_flag=True, help="Print passwords and tokens unmasked.")
def boot_device(
    ident: str,
    mdm_url: str | None,
    url: str,
    customer_id: str | None,
    agent_version: str,
    show_secrets: bool,
) -> None:
    """Play a device's first boot: KME hands the agent its profile's admin-extras bundle and the
    agent calls kmeweb's POST /enroll with it (IMEI may also be a serial number or KME id)."""
    sim = url.rstrip("/") + "/_sim/devices/" + quote(ident, safe="")
    params = {"customerId": customer_id} if customer_id else None
    try:
        resp = requests.get(sim + "/boot", params=params, timeout=30)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"simulator not reachable at {url}: {type(exc).__name__}"
        ) from None
    if resp.status_code != 200:
        raise click.ClickException(
            f"KME provisions nothing for {ident}: {resp.status_code} {resp.text[:300]}"
        )
    boot = resp.json()
    click.echo(f"KME: device {ident} boots with profile {boot['profileName']!r}")
    body = agent_request(boot, agent_version)
    try:
        target = enroll_url(boot, mdm_url)
        status, answer = call_enroll(target, body)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except requests.RequestException as exc:
        raise click.ClickException(f"{mdm_url or 'kmeweb'} not reachable: {exc}") from None
    click.echo(f"agent: POST {target} -> {status}")
    click.echo(json.dumps(_masked(answer, show_secrets), indent=2, ensure_ascii=False))
    if status != 200 or not isinstance(answer, dict):
        code = answer.get("error") if isinstance(answer, dict) else status
        raise click.ClickException(f"enrollment refused: {code}")
    # Like KME once the device finished provisioning: the status becomes Enrollment Completed.
    requests.patch(sim, params=params, json={"enrolled": True}, timeout=30)
    first = "first registration" if answer.get("first_registration") else "already registered"
    click.echo(f"device {ident} registered ({first})")
