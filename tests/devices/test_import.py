"""Import devices into a Self-Maintained profile: every rule a file can break answers 4xx with
the row, column, value and reason and writes nothing; a good file is previewed, confirmed and
applied all or nothing by the import job."""

from __future__ import annotations

import csv
import io

import pytest
import redis
from sqlalchemy import event, select

from kmeweb import crypto
from kmeweb.audit.models import AuditEvent
from kmeweb.csvimport import ImportRejected
from kmeweb.devices import importer
from kmeweb.devices.importer.preview import store_preview
from kmeweb.devices.models import Device, DeviceEvent
from kmeweb.extensions import db
from kmeweb.operations.models import Operation
from tests.factories import count_rows, make_device, make_end_user, make_profile, next_imei

IMEI = "356938035643809"  # a valid IMEI (Luhn)
IMEI_BAD_LUHN = "356938035643800"


@pytest.fixture
def small_limits(app_config: dict) -> dict:
    app_config.update({"CSV_MAX_ROWS": 3, "CSV_MAX_BYTES": 400})
    return app_config


@pytest.fixture
def target(session):
    return make_profile(session, name="Warehouse", kind="self_maintained", config={})


@pytest.fixture
def jane(session):
    return make_end_user(session, username="jane.doe")


def upload(actions, profile, content: bytes | str, filename: str = "devices.csv", **kw):
    raw = content.encode() if isinstance(content, str) else content
    return actions.post(
        f"/profiles/{profile.id}/import",
        data={"file": (io.BytesIO(raw), filename)},
        content_type="multipart/form-data",
        **kw,
    )


def written(session) -> tuple[int, int]:
    """(devices, audit events): what a refused file must leave as it was."""
    session.expire_all()
    return count_rows(session, Device), count_rows(session, AuditEvent)


def _kme_device(session):
    return make_device(session, make_profile(session, name="Field Sales"))


def _pending_device(session):
    return make_device(session, None)


def _other_device(session):
    make_device(session, make_profile(session, kind="self_maintained", config={}), imei=IMEI)
    return make_device(session, None, imei=None, serial="R58M12ABCDE", approval="approved")


# (id, csv text or a callable(session) -> csv text, status, row, column, reason)
RULES = [
    ("imei-luhn", f"imei\n{IMEI_BAD_LUHN}\n", 422, 2, "imei", "Luhn"),
    ("imei-length", "imei\n12345\n", 422, 2, "imei", "15 digits"),
    ("meid-prefix", "imei\n1234567890123A\n", 422, 2, "imei", "A0 to FF"),
    ("serial-in-imei", "imei\nR58M12ABCDE\n", 422, 2, "imei", "serial column"),
    ("serial-rule", "serial\nAB-12\n", 422, 2, "serial", "8 to 16 letters"),
    ("imei-in-serial", f"serial\n{IMEI}\n", 422, 2, "serial", "imei column"),
    ("no-identifier", "imei,username\n,jane.doe\n", 422, 2, "imei", "IMEI or a serial"),
    ("duplicate-imei", f"imei\n{IMEI}\n{IMEI}\n", 422, 3, "imei", "A duplicate of row 2"),
    (
        "duplicate-serial",
        "serial\nr58m12abcde\nR58M12ABCDE\n",
        422,
        3,
        "serial",
        "A duplicate of row 2",
    ),
    ("unknown-user", f"imei,username\n{IMEI},nobody\n", 422, 2, "username", "No such user"),
    ("username-space", f"imei,username\n{IMEI},jane doe\n", 422, 2, "username", "no spaces"),
    (
        "password-without-user",
        f"imei,enrollment_password\n{IMEI},s3cret\n",
        422,
        2,
        "enrollment_password",
        "needs a username",
    ),
    (
        "password-too-long",
        f"imei,username,enrollment_password\n{IMEI},jane.doe,{'x' * 246}\n",
        422,
        2,
        "enrollment_password",
        "245 bytes",
    ),
    (
        "password-space",
        f"imei,username,enrollment_password\n{IMEI},jane.doe, s3cret\n",
        422,
        2,
        "enrollment_password",
        "start or end",
    ),
    (
        "in-kme-profile",
        lambda s: f"imei\n{_kme_device(s).imei}\n",
        422,
        2,
        "imei",
        "Knox profile “Field Sales”",
    ),
    (
        "pending-approval",
        lambda s: f"imei\n{_pending_device(s).imei}\n",
        422,
        2,
        "imei",
        "Waiting for approval",
    ),
    (
        "ids-of-two-devices",
        lambda s: f"imei,serial\n{IMEI},{_other_device(s).serial}\n",
        422,
        2,
        "serial",
        "Another device",
    ),
    ("extra-cells", f"imei\n{IMEI},blue\n", 422, 2, "", "the header has 1 column."),
    ("missing-header", f"{IMEI}\n{next_imei()}\n", 422, 1, "", "column names"),
    ("misspelled-header", f"imie\n{IMEI}\n", 422, 1, "imie", "did you mean “imei”"),
    ("extra-column", f"imei,colour\n{IMEI},blue\n", 422, 1, "colour", "Unknown column"),
    ("duplicate-column", f"imei,IMEI\n{IMEI},{IMEI}\n", 422, 1, "imei", "Also column 1"),
    ("no-id-column", "username\njane.doe\n", 422, 1, "", "needs “imei” or “serial”"),
]


def preview(session, profile, content: bytes | str) -> importer.Preview:
    raw = content.encode() if isinstance(content, str) else content
    return importer.preview_import(session, profile.id, io.BytesIO(raw), "devices.csv", "test")


@pytest.mark.parametrize(
    "content,status,row,column,reason", [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_a_row_rule_broken_refuses_the_file_with_its_report(
    session, target, jane, content, status, row, column, reason
):
    if callable(content):
        content = content(session)
    before = written(session)
    try:
        errors = preview(session, target, content).errors
    except ImportRejected as err:  # a header problem: the file cannot be read at all
        assert err.status == status
        errors = err.errors
    found = [(e.row, e.column, e.reason) for e in errors]
    assert any(r == row and c == column and reason in why for r, c, why in found), found
    assert written(session) == before


def test_a_file_with_bad_rows_answers_422_with_the_report_and_no_confirm(
    session, login, actions, target
):
    login()
    response = upload(actions, target, f"imei\n{IMEI}\n{IMEI_BAD_LUHN}\n{IMEI}\n")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "nothing was imported" in html and "Confirm import" not in html
    assert [r[:3] for r in _report_rows(html)] == [
        ["3", "imei", IMEI_BAD_LUHN],
        ["4", "imei", IMEI],
    ]
    assert 'data-testid="count-errors">2<' in html and 'data-testid="count-new">1<' in html
    response = upload(actions, target, f"imie\n{IMEI}\n")
    assert response.status_code == 422
    assert _report_rows(response.get_data(as_text=True))[0][:2] == ["1", "imie"]
    assert count_rows(session, Device) == 0


def _report_rows(html: str) -> list[list[str]]:
    """The rows of the preview's error table: [row, column, value, reason]."""
    import re

    body = html.split('data-testid="import-errors"', 1)[-1].split("</table>", 1)[0]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        if cells:
            rows.append(cells)
    return rows


FILE_RULES = [
    ("empty-file", b"", 422, "The file is empty"),
    ("blank-only", b"\r\n\r\n", 422, "The first row is empty"),
    ("header-only", b"imei,serial\r\n", 422, "no rows below its header"),
    ("excel-workbook", b"PK\x03\x04\x14\x00\x06\x00rest-of-zip", 422, "Excel workbook"),
    ("utf-16", "imei\r\n356938035643809\r\n".encode("utf-16"), 422, "UTF-16"),
    ("binary", b"imei\n\x00\x01\x02\n", 422, "not CSV text"),
    (
        "too-many-rows",
        f"imei\n{next_imei()}\n{next_imei()}\n{next_imei()}\n{next_imei()}\n",
        422,
        "more than 3 rows",
    ),
    (
        "too-large",
        ("imei\n" + "\n".join(next_imei() for _ in range(30))).encode(),
        413,
        "larger than",
    ),
]


@pytest.mark.parametrize(
    "content,status,message", [r[1:] for r in FILE_RULES], ids=[r[0] for r in FILE_RULES]
)
def test_a_file_that_cannot_be_read_is_refused_with_a_message(
    small_limits, session, target, content, status, message
):
    before = written(session)
    with pytest.raises(ImportRejected) as refused:
        preview(session, target, content)
    assert refused.value.status == status
    assert message in refused.value.message
    assert written(session) == before


def test_a_file_too_large_answers_413_in_the_dialog(small_limits, session, login, actions, target):
    login()
    response = upload(actions, target, "imei\n" + "\n".join(next_imei() for _ in range(30)))
    assert response.status_code == 413
    assert "larger than" in response.get_data(as_text=True)
    assert "Confirm import" not in response.get_data(as_text=True)


def test_no_file_chosen_says_so(session, login, actions, target):
    login()
    response = actions.post(f"/profiles/{target.id}/import", data={})
    assert response.status_code == 422
    assert "Choose a CSV file." in response.get_data(as_text=True)


def test_a_2gb_upload_is_refused_before_its_body_is_read(app, session, login, actions, target):
    """The declared size alone refuses it: the body (never sent here) is not read."""
    login()
    token = actions.token(f"/profiles/{target.id}/import")

    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):  # pragma: no cover - must never be called
            raise AssertionError("the body was read")

    before = written(session)
    response = actions.client.post(
        f"/profiles/{target.id}/import",
        content_type="multipart/form-data; boundary=x",
        environ_overrides={"wsgi.input": Endless(), "CONTENT_LENGTH": str(2 * 1024**3)},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 413
    assert "larger than 20 MB" in response.get_data(as_text=True)
    assert written(session) == before


def test_encodings_bom_latin1_and_blank_lines_are_read(session, login, actions, target):
    make_end_user(session, username="josé")
    login()
    latin1 = f"IMEI,Username\r\n\r\n{IMEI},josé\r\n\r\n{IMEI_BAD_LUHN},\r\n".encode("cp1252")
    response = upload(actions, target, latin1)
    rows = _report_rows(response.get_data(as_text=True))
    # The blank lines are skipped but counted: the bad IMEI is on the spreadsheet's row 5.
    assert rows == [["5", "imei", IMEI_BAD_LUHN, rows[0][3]]]
    bom = ("\ufeffimei,username\r\n" + f"{IMEI},josé\r\n").encode()
    response = upload(actions, target, bom)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Confirm import" in response.get_data(as_text=True)


def _confirm_url(html: str) -> str:
    import re

    match = re.search(r'action="(/profiles/\d+/import/[^/"]+/confirm)"', html)
    assert match, html
    return match.group(1)


def test_preview_then_confirm_imports_every_device(session, login, actions, target, jane, work):
    other = make_profile(session, kind="self_maintained", config={}, name="Old shelf")
    moved = make_device(session, other)
    same = make_device(session, target)
    touched = make_device(session, target)
    admin = login()
    text = (
        "imei,serial,username,enrollment_password\r\n"
        f"{IMEI},r58m12abcde,jane.doe,S3cret-pass\r\n"
        ",R58N99XYZ01,,\r\n"
        "a1000000000001,,,\r\n"
        f"{moved.imei},,jane.doe,\r\n"
        f"{same.imei},,,\r\n"
        f"{touched.imei},,JANE.DOE,\r\n"
    )
    response = upload(actions, target, text)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    for key, n in (("new", 3), ("moved", 1), ("updated", 1), ("unchanged", 1), ("errors", 0)):
        assert f'data-testid="count-{key}">{n}<' in html, key
    assert count_rows(session, Device) == 3  # the preview wrote nothing

    response = actions.post(_confirm_url(html))
    assert response.status_code == 303
    operation = session.scalar(select(Operation).order_by(Operation.id.desc()))
    assert operation.kind == "device.import" and operation.total == 6
    assert f"op={operation.id}" in response.headers["Location"]
    work()

    session.expire_all()
    assert session.get(Operation, operation.id).status == "done"
    assert session.get(Operation, operation.id).done == 6
    device = session.scalar(select(Device).where(Device.imei == IMEI))
    assert (device.serial, device.profile_id, device.end_user_id) == (
        "R58M12ABCDE",
        target.id,
        jane.id,
    )
    assert device.approval == "approved" and device.sync_state == "synced"
    assert device.enrollment_password_enc != "S3cret-pass"
    assert crypto.decrypt(device.enrollment_password_enc) == "S3cret-pass"
    assert session.scalar(select(Device.imei).where(Device.serial == "R58N99XYZ01")) is None
    assert session.scalar(select(Device.id).where(Device.imei == "A1000000000001"))
    assert session.get(Device, moved.id).profile_id == target.id
    assert session.get(Device, touched.id).end_user_id == jane.id
    assert count_rows(session, Device, Device.profile_id == target.id) == 6
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("device.import%")).order_by(AuditEvent.id)
    ).all()
    assert [e.action for e in events] == ["device.import.start", "device.import"]
    assert events[1].details["counts"] == {"new": 3, "moved": 1, "updated": 1, "unchanged": 1}
    assert events[1].actor_id == admin.id
    assert "S3cret" not in str([e.details for e in events])
    # The password is never shown again: not on the profile page, not in the inventory.
    page = actions.client.get(f"/profiles/{target.id}").get_data(as_text=True)
    inventory = actions.client.get(f"/profiles/{target.id}/inventory.csv").get_data(as_text=True)
    assert IMEI in page and "S3cret" not in page + inventory
    # The preview is gone once applied.
    assert actions.post(_confirm_url(html)).status_code in (303, 404)


def test_preview_is_kept_server_side_bound_to_its_admin_and_expires(
    app, session, login, actions, client, target, make_admin
):
    login()
    response = upload(actions, target, f"imei,enrollment_password\n{IMEI},\n")
    html = response.get_data(as_text=True)
    token = _confirm_url(html).split("/")[-2]
    assert len(token) >= 32
    cookie = client.get_cookie("session")
    assert token not in (cookie.value if cookie else "")
    r = redis.Redis.from_url(app.config["REDIS_URL"])
    ttl = r.ttl(importer.KEY_PREFIX + token)
    assert 0 < ttl <= app.config["CSV_PREVIEW_TTL_S"]
    assert IMEI.encode() not in r.get(importer.KEY_PREFIX + token)  # encrypted at rest

    # Another admin cannot use it.
    client.post("/auth/logout", data={"csrf_token": actions.token(f"/profiles/{target.id}")})
    make_admin("other@example.com")
    actions.login("other@example.com")
    assert actions.post(_confirm_url(html)).status_code == 404
    # Expired: the same answer, and nothing written.
    r.delete(importer.KEY_PREFIX + token)
    assert actions.post(_confirm_url(html)).status_code == 404
    assert count_rows(session, Operation) == 0 and count_rows(session, Device) == 0


def test_error_report_downloads_as_formula_safe_csv(session, login, actions, target):
    login()
    response = upload(actions, target, f"imei,username\n{IMEI_BAD_LUHN},\n{IMEI},=HYPERLINK(1)\n")
    html = response.get_data(as_text=True)
    import re

    url = re.search(r'href="(/profiles/\d+/import/[^"]+/errors\.csv)"', html).group(1)
    report = actions.client.get(url)
    assert report.status_code == 200 and report.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == ["Row", "Column", "Value", "Reason"]
    assert ["2", "imei", IMEI_BAD_LUHN] == rows[1][:3]
    assert ["3", "username", "'=HYPERLINK(1)"] == rows[2][:3]


def test_template_download_is_a_valid_file(session, login, actions, target, jane):
    login()
    response = actions.client.get(f"/profiles/{target.id}/import/template.csv")
    text = response.get_data()
    assert text.decode("utf-8-sig").splitlines()[0] == "imei,serial,username,enrollment_password"
    preview = upload(actions, target, text)
    assert preview.status_code == 200, preview.get_data(as_text=True)


def test_import_is_for_self_maintained_profiles_and_admins(session, login, actions, target):
    kme = make_profile(session)
    login("viewer")
    assert upload(actions, target, f"imei\n{IMEI}\n").status_code == 403
    page = actions.client.get(f"/profiles/{target.id}").get_data(as_text=True)
    assert "Import devices" not in page
    assert actions.client.get(f"/profiles/{kme.id}/import").status_code == 409


def _confirmed(session, target, text: str, admin) -> Operation:
    rows, errors, has_user = importer.check_file(io.BytesIO(text.encode()), 10**7, 10**6)
    assert not errors
    data = {
        "admin_id": admin.id,
        "profile_id": target.id,
        "filename": "t.csv",
        "counts": {},
        "has_user": has_user,
        "total": len(rows),
        "errors": [],
        "rows": [[r.row, r.imei, r.serial, r.username, r.password] for r in rows],
    }
    token = "t" * 32
    store_preview(token, data)
    operation = importer.start_import(session, target.id, token, admin)
    session.commit()
    return operation


def test_a_stored_preview_reads_back_its_rows_as_they_were(app):
    """The rows are kept packed in columns; they read back as stored, None as None."""
    rows = [
        [2, IMEI, None, "jane.doe", "pä ss'word"],
        [3, None, "R58M12ABCDE", None, None],
        [5, "A1000000000001", "R58N99XYZ01", "josé", None],
    ]
    data = {"admin_id": 1, "profile_id": 2, "errors": [], "rows": rows, "found": [1]}
    store_preview("r" * 32, data)
    back = importer.preview.read_preview("r" * 32)
    assert [list(r) for r in back["rows"]] == rows and back["found"] == [1]
    assert importer.preview.read_preview("r" * 32, rows=False)["row_count"] == 3
    store_preview("s" * 32, {**data, "rows": []})
    assert importer.preview.read_preview("s" * 32)["rows"] == []


def test_a_failure_half_way_leaves_the_database_as_it_was(session, target, admin):
    other = make_profile(session, kind="self_maintained", config={}, name="Old shelf")
    moving = make_device(session, other)
    text = "imei\n" + "\n".join([next_imei() for _ in range(50)] + [moving.imei]) + "\n"
    operation = _confirmed(session, target, text, admin)

    def fail_on_update(conn, cursor, statement, *args):
        if statement.startswith("UPDATE device"):  # after the 50 inserts went through
            raise RuntimeError("disk full")

    event.listen(db.engine, "before_cursor_execute", fail_on_update)
    try:
        with pytest.raises(RuntimeError):
            importer.import_job(operation.id)
    finally:
        event.remove(db.engine, "before_cursor_execute", fail_on_update)
    session.expire_all()
    assert count_rows(session, Device) == 1
    assert session.get(Device, moving.id).profile_id == other.id
    failed = session.get(Operation, operation.id)
    assert failed.status == "failed" and "disk full" in failed.error
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.import") == 0


def test_devices_that_changed_since_the_preview_fail_the_import(session, target, admin):
    other = make_profile(session, kind="self_maintained", config={}, name="Old shelf")
    device = make_device(session, other)
    operation = _confirmed(session, target, f"imei\n{next_imei()}\n{device.imei}\n", admin)
    device.profile_id = make_profile(session, name="Field Sales").id  # meanwhile, into Knox
    session.commit()
    importer.import_job(operation.id)
    session.expire_all()
    failed = session.get(Operation, operation.id)
    assert failed.status == "failed"
    assert "changed since the preview" in failed.error and "Field Sales" in failed.error
    assert count_rows(session, Device) == 1


def _previewed(session, target, text: str, admin) -> Operation:
    """Preview `text` (which the preview finds all new) and confirm it: the job to run."""
    checked = importer.preview_import(session, target.id, io.BytesIO(text.encode()), "t.csv", admin)
    assert checked.can_import, checked.errors
    operation = importer.start_import(session, target.id, checked.token, admin)
    session.commit()
    return operation


@pytest.mark.parametrize("column", ["imei", "serial"])
def test_a_device_added_since_the_preview_into_knox_fails_the_import(
    session, target, admin, column
):
    """The job reads again only the devices its preview found; a row it found new whose
    device appeared since (here in a Knox profile) is refused all the same, by name."""
    imei, serial = next_imei(), "R58NEW00001"
    rows = [next_imei() for _ in range(20)]
    text = "imei,serial\n" + "".join(f"{i},\n" for i in rows) + f"{imei},{serial}\n"
    operation = _previewed(session, target, text, admin)
    knox = make_profile(session, name="Field Sales")
    make_device(
        session, knox, **({"imei": imei} if column == "imei" else {"imei": None, "serial": serial})
    )
    importer.import_job(operation.id)
    session.expire_all()
    failed = session.get(Operation, operation.id)
    assert failed.status == "failed"
    assert "changed since the preview" in failed.error and "Field Sales" in failed.error
    assert count_rows(session, Device) == 1
    assert count_rows(session, Device, Device.profile_id == target.id) == 0
    assert session.get(type(target), target.id).device_count == 0
    assert count_rows(session, AuditEvent, AuditEvent.action == "device.import") == 0


def test_a_device_added_since_the_preview_to_another_shelf_is_moved(session, target, admin):
    """A row the preview found new whose device appeared since in another Self-Maintained
    profile is planned again like every row: it moves here."""
    imei = next_imei()
    others = [next_imei() for _ in range(20)]
    operation = _previewed(session, target, "imei\n" + "\n".join([*others, imei]) + "\n", admin)
    shelf = make_profile(session, kind="self_maintained", config={}, name="Old shelf")
    device = make_device(session, shelf, imei=imei)
    assert importer.import_job(operation.id) == {
        "new": 20,
        "moved": 1,
        "updated": 0,
        "unchanged": 0,
    }
    session.expire_all()
    done = session.get(Operation, operation.id)
    assert (done.status, done.done) == ("done", 21)
    assert session.get(Device, device.id).profile_id == target.id
    assert count_rows(session, Device, Device.profile_id == target.id) == 21
    assert session.get(type(target), target.id).device_count == 21
    assert session.get(type(shelf), shelf.id).device_count == 0
    kinds = session.scalars(select(DeviceEvent.kind).where(DeviceEvent.device_id == device.id))
    assert list(kinds) == ["moved"]
    assert count_rows(session, DeviceEvent, DeviceEvent.kind == "uploaded") == 20


def test_rows_past_a_whole_statement_are_all_written(session, target, admin, jane):
    """The devices go in ROWS_PER_INSERT to a statement, the last statement the rest: each row
    is written with its own values."""
    n = 2 * importer.apply.ROWS_PER_INSERT + 5
    imeis = [next_imei() for _ in range(n)]
    lines = [
        f"{imei},jane.doe,Pass-{i:04d}" if i % 2 else f"{imei},," for i, imei in enumerate(imeis)
    ]
    text = "imei,username,enrollment_password\n" + "\n".join(lines) + "\n"
    operation = _previewed(session, target, text, admin)
    assert importer.import_job(operation.id)["new"] == n
    session.expire_all()
    devices = {d.imei: d for d in session.scalars(select(Device))}
    assert len(devices) == n
    for i, imei in enumerate(imeis):
        device = devices[imei]
        assert device.profile_id == target.id
        if i % 2:
            assert device.end_user_id == jane.id
            assert crypto.decrypt(device.enrollment_password_enc) == f"Pass-{i:04d}"
        else:
            assert device.end_user_id is None and device.enrollment_password_enc is None
    assert session.get(type(target), target.id).device_count == n
    events = session.execute(select(DeviceEvent.device_id, DeviceEvent.details)).all()
    assert sorted(e.device_id for e in events) == sorted(d.id for d in devices.values())
    assert {e.details["import"] for e in events} == {"t.csv"}


def test_100k_rows_import(session, target, admin, jane):
    """A file of 100,000 valid rows (the service directly; bench/import.py times it)."""
    lines = ["imei,username"] + [f"{next_imei()},jane.doe" for _ in range(100_000)]
    stream = io.BytesIO(("\r\n".join(lines) + "\r\n").encode())
    rows, errors, has_user = importer.check_file(stream, 20 * 1048576, 200_000)
    assert not errors and len(rows) == 100_000
    counts = importer.run_import(
        session,
        target.id,
        {
            "rows": [[r.row, r.imei, r.serial, r.username, r.password] for r in rows],
            "has_user": has_user,
            "filename": "big.csv",
        },
        admin,
    )
    session.commit()
    assert counts["new"] == 100_000
    assert (
        count_rows(session, Device, Device.profile_id == target.id, Device.end_user_id == jane.id)
        == 100_000
    )


def test_the_sweeper_leaves_a_waiting_import_alone(session, target, admin):
    """An import has no outbox changes: the sweeper must not call it done before it ran."""
    from kmeweb.sync.jobs import sweep_job

    operation = _confirmed(session, target, f"imei\n{next_imei()}\n", admin)
    sweep_job()
    session.expire_all()
    assert session.get(Operation, operation.id).status == "queued"
    importer.import_job(operation.id)
    session.expire_all()
    assert session.get(Operation, operation.id).status == "done"
    assert count_rows(session, Device, Device.profile_id == target.id) == 1
