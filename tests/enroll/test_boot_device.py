"""From a reseller upload to a registered device, every part real: the KME simulator over HTTP,
a real RQ worker for pull and push, kmeweb served over HTTP, and `kme-sim boot-device` playing
the device and its agent with the bundle the simulator's own profile carries."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from kmeweb.devices import services as device_services
from kmeweb.devices.models import Device
from kmeweb.directory.models import EndUser
from kmeweb.integration import approvals
from kmeweb.integration.models import Upload
from kmeweb.knox.simulator.cli import kme_sim
from kmeweb.profiles.models import Profile
from kmeweb.sync.jobs import start_pull
from tests.servers import serving, wsgi_server
from tests.sync_fixtures import kme_profile


@pytest.fixture
def kmeweb_url(app):
    """kmeweb itself on a free port (the agent's side of the network)."""
    with serving(wsgi_server(app)) as url:
        yield url


def _boot(sim, kmeweb_url: str, ident: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        kme_sim, ["boot-device", ident, "--url", sim.url, "--mdm-url", kmeweb_url]
    )
    return result.exit_code, result.output


def test_upload_to_approval_to_profile_to_boot_counts_the_device_registered(
    session, integration, sim, work, kmeweb_url, client, login
):
    created = sim.upload(3, reseller="Field Reseller", orderNo="PO-BOOT")["devices"]
    start_pull(session, "test")
    session.commit()
    work()
    upload = session.scalar(select(Upload).where(Upload.order_number == "PO-BOOT"))
    approvals.approve_upload(session, upload.id, "test")
    session.commit()
    work()
    devices = session.scalars(
        select(Device).where(Device.upload_id == upload.id).order_by(Device.id)
    ).all()
    assert [d.approval for d in devices] == ["approved"] * 3

    # Before a profile is assigned KME provisions nothing: the device boots as a plain phone.
    code, output = _boot(sim, kmeweb_url, devices[0].imei)
    assert code != 0 and "provisions nothing" in output

    ann = EndUser(username="ann@example.com", email="ann@example.com")
    session.add(ann)
    session.flush()
    field = kme_profile(session, "Field Team", end_user_id=ann.id)
    session.commit()
    work()  # the profile is created in KME
    device_services.move_devices(session, [d.id for d in devices], field.id, "test")
    session.commit()
    work()  # the devices are assigned in KME
    session.refresh(field)
    assert field.kme_profile_id and sim.device(devices[0].kme_device_id)["profileId"] == (
        field.kme_profile_id
    )

    # What KME hands the device comes from the simulator's own copy of the profile
    boot = sim.control("GET", f"/devices/{created[0]['mei']}/boot")
    bundle = boot["android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE"]
    assert bundle["enrollment_token"] == field.token and bundle["user"] == "ann@example.com"
    assert bundle["kmeUri"] == "https://mdm.example.com" and boot["profileName"] == "Field Team"

    code, output = _boot(sim, kmeweb_url, created[0]["mei"])
    assert code == 0, output
    assert "boots with profile 'Field Team'" in output
    assert "-> 200" in output and "(first registration)" in output
    assert field.token not in output  # secrets are masked unless --show-secrets
    # KME shows the enrollment as completed; kmeweb counts the device registered
    assert sim.device(created[0]["mei"])["status"] == "Enrollment Completed"
    session.expire_all()
    booted = session.scalar(select(Device).where(Device.imei == created[0]["mei"]))
    assert booted.registered_at is not None and booted.agent_version == "kme-sim-agent/1.0"

    login("viewer")
    page = client.get(f"/profiles/{field.id}").get_data(as_text=True)
    assert 'data-testid="fact-registered">1<' in page
    assert 'data-testid="fact-pending">2<' in page

    # Booting again (a factory reset) is harmless; the counts stay
    code, output = _boot(sim, kmeweb_url, created[0]["mei"])
    assert code == 0 and "(already registered)" in output
    page = client.get(f"/profiles/{field.id}").get_data(as_text=True)
    assert 'data-testid="fact-registered">1<' in page


def test_a_token_refreshed_after_the_push_is_refused_until_kme_has_it(
    session, integration, sim, work, kmeweb_url, admin
):
    """The agent sends the token from KME's bundle: until the refreshed token is pushed, KME
    still hands out the old one, which kmeweb no longer accepts."""
    from kmeweb.profiles import services as profile_services

    created = sim.upload(1, reseller="Field Reseller", orderNo="PO-TOKEN")["devices"]
    start_pull(session, "test")
    session.commit()
    work()
    upload = session.scalar(select(Upload).where(Upload.order_number == "PO-TOKEN"))
    approvals.approve_upload(session, upload.id, "test")
    session.commit()
    work()
    field = kme_profile(session, "Tokens")
    session.commit()
    work()
    device = session.scalar(select(Device).where(Device.upload_id == upload.id))
    device_services.move_devices(session, [device.id], field.id, "test")
    session.commit()
    work()

    profile_services.refresh_token(session, field.id, 30, admin)
    session.commit()
    code, output = _boot(sim, kmeweb_url, created[0]["mei"])
    assert code != 0 and "token_invalid" in output
    work()  # the profile update (new token in the bundle) reaches KME
    assert session.get(Profile, field.id).sync_state == "synced"
    code, output = _boot(sim, kmeweb_url, created[0]["mei"])
    assert code == 0, output
