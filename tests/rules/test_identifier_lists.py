"""Rules with long lists of identifiers: as many as an admin may paste (5,000 a rule), in
as many rules as they like, still preview, apply and route new devices. (Sent as one
parameter each, seven full lists passed the 65,535 parameters a PostgreSQL statement takes.)"""

from __future__ import annotations

from sqlalchemy import select

from kmeweb.devices.models import Approval, Device
from kmeweb.integration import routing
from kmeweb.rules import engine
from kmeweb.rules import services as rules
from kmeweb.rules.services import IDENTIFIERS_MAX
from tests.factories import make_default_profile, make_device, make_profile, make_upload

LISTS = 8


def test_eight_full_lists_of_identifiers_preview_and_route_a_new_device(session):
    make_default_profile(session)
    profiles = [make_profile(session, name=f"Batch {i}") for i in range(LISTS)]
    upload = make_upload(session)
    device = make_device(session, serial="RFLAST0004999", upload_id=upload.id)
    elsewhere = make_device(session, profiles[0], serial="RFLAST0000001")
    for i, profile in enumerate(profiles):
        prefix = "RFLAST" if i == LISTS - 1 else f"RFB{i:02d}X"
        serials = [f"{prefix}{n:07d}" for n in range(IDENTIFIERS_MAX)]
        rules.create_rule(
            session,
            {
                "name": f"Batch {i}",
                "identifiers": "\n".join(serials),
                "action": "approve",
                "profile_id": str(profile.id),
            },
            "admin@example.com",
        )
    session.commit()

    saved = engine.load_rules(session)
    last = next(r for r in saved if r.name == f"Batch {LISTS - 1}")
    preview = engine.preview(session, last, saved)
    assert (preview.pending, preview.approved) == (1, 1)
    assert preview.moves == [("Batch 0", 1)]
    assert routing.apply_plan(session).changes == 2

    stats = routing.route_uploads(session, [upload.id])
    assert stats["devices_auto_approved"] == 1
    session.expire_all()
    placed = session.execute(
        select(Device.approval, Device.profile_id, Device.rule_id).where(Device.id == device.id)
    ).one()
    assert tuple(placed) == (Approval.APPROVED, profiles[-1].id, last.key)
    assert session.get(Device, elsewhere.id).profile_id == profiles[0].id  # the pull moves none
