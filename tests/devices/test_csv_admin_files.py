"""The CSV files admins actually have (issue 20, items 1 and 3): semicolon and tab files from
their spreadsheets, the header spellings they use, the file Download Existing Inventory gives
them imported back, and errors that name the problem in their words. Through the real app."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from kmeweb.devices.models import Device
from kmeweb.directory.models import EndUser
from kmeweb.operations.models import Operation
from tests.factories import count_rows, make_device, make_end_user, make_profile, next_imei


@pytest.fixture
def target(session):
    return make_profile(session, name="Warehouse", kind="self_maintained", config={})


def upload(actions, profile, text: str, encoding: str = "utf-8"):
    return actions.post(
        f"/profiles/{profile.id}/import",
        data={"file": (io.BytesIO(text.encode(encoding)), "devices.csv")},
        content_type="multipart/form-data",
    )


def counts(html: str) -> dict[str, int]:
    found = re.findall(r'data-testid="count-(\w+)">([\d,]+)<', html)
    return {key: int(n.replace(",", "")) for key, n in found}


def report(html: str) -> list[list[str]]:
    """The rows of the preview's error table: [row, column, value, reason]."""
    table = re.search(r'data-testid="import-errors">(.*?)</table>', html, re.S)
    assert table, html
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        if cells:
            rows.append(cells)
    return rows


def confirm(actions, html: str):
    url = re.search(r'action="(/profiles/\d+/import/[^/"]+/confirm)"', html)
    assert url, html
    return actions.post(url.group(1))


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_comma_semicolon_and_tab_files_are_read(session, login, actions, target, delimiter):
    make_end_user(session, username="jane.doe")
    login()
    a, b = next_imei(), next_imei()
    rows = [
        ["imei", "serial", "username", "enrollment_password"],
        [a, "R58M12ABCDE", "jane.doe", "Pass;word,1"],
        [b, "", "", ""],
    ]
    text = "\r\n".join(delimiter.join(r) for r in rows) + "\r\n"
    text = text.replace("Pass;word,1", '"Pass;word,1"')  # quoted, as spreadsheets do
    response = upload(actions, target, text)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert counts(html) == {"new": 2, "moved": 0, "updated": 0, "unchanged": 0, "errors": 0}


def test_the_header_spellings_admins_use_are_accepted(session, login, actions, target):
    make_end_user(session, username="jane.doe")
    login()
    text = (
        "IMEI1;Serial Number;User Name;Password\r\n"
        f"{next_imei()};r58m12abcde;jane.doe;S3cret-pass\r\n"
    )
    response = upload(actions, target, text, "cp1252")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert counts(html)["new"] == 1
    other = f"IMEI;S/N;User;Model;IMEI2\r\n{next_imei()};R58N99XYZ01;jane.doe;SM-A546B;{IMEI2}\r\n"
    response = upload(actions, target, other)
    assert response.status_code == 200, response.get_data(as_text=True)


IMEI2 = "356938035643817"


def test_a_misspelled_column_is_still_named(session, login, actions, target):
    login()
    response = upload(actions, target, f"imie;serial\r\n{next_imei()};\r\n")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "did you mean “imei”?" in html


def test_download_existing_inventory_imports_back(session, login, actions, target, work):
    jane = make_end_user(session, username="jane.doe")
    make_end_user(session, username="-minus")  # exported as '-minus: formula-safe
    minus = session.scalar(select(EndUser).where(EndUser.username == "-minus"))
    shelf = make_profile(session, name="Old shelf", kind="self_maintained", config={})
    devices = [
        make_device(session, shelf, serial="R58M12ABCDE", end_user_id=jane.id),
        make_device(session, shelf, imei=None, serial="R58N99XYZ01", model=None),
        make_device(
            session, shelf, end_user_id=minus.id, attributes={"site": "Lyon", "desk": "=4"}
        ),
    ]
    login()
    exported = actions.client.get(f"/profiles/{shelf.id}/inventory.csv")
    assert exported.status_code == 200
    text = exported.get_data(as_text=True)
    assert "'-minus" in text  # the export escaped it

    # Back into the same profile: nothing changes.
    response = upload(actions, shelf, text.lstrip("\ufeff"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert counts(html) == {"new": 0, "moved": 0, "updated": 0, "unchanged": 3, "errors": 0}

    # Into another profile: every device moves there, with its user.
    response = upload(actions, target, text.lstrip("\ufeff"))
    html = response.get_data(as_text=True)
    assert counts(html) == {"new": 0, "moved": 3, "updated": 0, "unchanged": 0, "errors": 0}
    assert confirm(actions, html).status_code == 303
    work()
    session.expire_all()
    assert session.scalar(select(Operation.status).order_by(Operation.id.desc())) == "done"
    moved = {d.id: d for d in session.scalars(select(Device))}
    assert {d.profile_id for d in moved.values()} == {target.id}
    assert [moved[d.id].end_user_id for d in devices] == [jane.id, None, minus.id]
    assert [moved[d.id].serial for d in devices] == ["R58M12ABCDE", "R58N99XYZ01", None]


def test_users_import_reads_semicolons_and_admin_headers(session, login, actions):
    login()
    text = "User Name;E-mail;Display Name\r\njane;jane@example.com;Doe, Jane\r\n"
    response = actions.post(
        "/admin/users/import",
        {"file": (io.BytesIO(text.encode("utf-8-sig")), "users.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    user = session.scalar(select(EndUser))
    assert (user.username, user.email, user.display_name) == (
        "jane",
        "jane@example.com",
        "Doe, Jane",
    )


# -- item 3: errors in the admin's words --------------------------------------------------


def test_a_repeated_row_says_which_row_it_duplicates(session, login, actions, target):
    login()
    imei = next_imei()
    response = upload(actions, target, f"imei,serial\r\n{imei},R58M12ABCDE\r\n{imei},\r\n")
    rows = report(response.get_data(as_text=True))
    assert response.status_code == 422
    assert rows == [["3", "imei", imei, "A duplicate of row 2 (the same IMEI)."]]


def test_a_ragged_row_says_how_many_columns_the_header_has(session, login, actions, target):
    login()
    response = upload(actions, target, f"imei,username\r\n{next_imei()},jane,extra,more\r\n")
    rows = report(response.get_data(as_text=True))
    assert response.status_code == 422
    assert rows[0][0] == "2"
    assert "4 cells" in rows[0][3] and "the header has 2 columns" in rows[0][3]


def test_a_14_digit_imei_says_an_imei_has_15_digits(session, login, actions, target):
    login()
    response = upload(actions, target, "imei\r\n35693803564380\r\n")
    rows = report(response.get_data(as_text=True))
    assert response.status_code == 422
    assert rows == [["2", "imei", "35693803564380", rows[0][3]]]
    assert "An IMEI has 15 digits" in rows[0][3] and "14" in rows[0][3]
    assert "MEID" not in rows[0][3] and "hexadecimal" not in rows[0][3]


def test_users_import_repeated_and_ragged_rows(session, login, actions):
    login()
    text = "username,email\r\njane,j@x.io\r\nJANE,\r\nbob,b@x.io,oops\r\n"
    response = actions.post(
        "/admin/users/import",
        {"file": (io.BytesIO(text.encode()), "users.csv")},
        content_type="multipart/form-data",
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "A duplicate of row 2 (the same username)." in body
    assert "the header has 2 columns" in body
    assert count_rows(session, EndUser) == 0
