"""The Audit log reads as text (issue 19, item 12): IMEIs and names in place of database
ids and nested dictionaries; the words around numbers agree with them."""

from __future__ import annotations

from kmeweb.audit import services as audit
from kmeweb.audit.readable import readable
from kmeweb.text import count
from tests.factories import make_device, make_end_user, make_profile


def test_count_agrees_with_its_number():
    assert [count(n, "device") for n in (0, 1, 2, 1450)] == [
        "0 devices",
        "1 device",
        "2 devices",
        "1,450 devices",
    ]
    assert count(1, "entry", "entries") == "1 entry" and count(3, "entry", "entries") == "3 entries"


def test_ids_become_imeis_and_names_and_dicts_become_text(session):
    sales = make_profile(session, name="Field Sales")
    user = make_end_user(session, username="jane.doe", display_name="Jane Doe")
    devices = [make_device(session, sales) for _ in range(7)]
    event = audit.record(
        session,
        "admin@example.com",
        "device.move",
        "profile",
        sales.id,
        {
            "devices": 7,
            "from_profiles": {str(sales.id): 7},
            "device_ids": {"count": 7, "first": [d.id for d in devices]},
            "end_user_id": user.id,
            "password_changed": False,
            "profile_id": 999_999,  # gone since: its id, as recorded
        },
    )
    session.flush()
    shown = readable(session, [event])[event.id]
    assert shown.target == "profile Field Sales"
    assert dict(shown.details) == {
        "Devices": "7",
        "From": "Field Sales: 7",
        "IMEIs": ", ".join(d.imei for d in devices[:5]) + " and 2 more",
        "User": "Jane Doe",
        "Password changed": "no",
        "Profile": "#999999",
    }
