"""Import devices, step 1: the file's own rules (design.md 6.4).

`check_file` reads the upload as a stream (kmeweb.csvimport: size and row limits while
reading, UTF-8 with or without BOM or Latin-1, the header) and checks every row: IMEI Luhn,
MEID, serial rules, duplicates inside the file, username and password rules. It reads no
database; kmeweb.devices.importer.check holds the database's rules.
"""

from __future__ import annotations

import re
from typing import IO, NamedTuple

from kmeweb import csvimport
from kmeweb.csvimport import RowError, shown
from kmeweb.devices.services import INVENTORY_HEADER
from kmeweb.directory.services import USERNAME_MAX
from kmeweb.identifiers import (
    ClassifiedId,
    all_imei_digits,
    classify_id,
    is_imei_digits,
    is_valid_serial,
    normalize_serial,
)

COLUMNS = ("imei", "serial", "username", "enrollment_password")
ID_COLUMNS = ("imei", "serial")
# Header spellings of admins' spreadsheets (compared as csvimport.column_key has them).
ALIASES = {
    "imei1": "imei",
    "imei_1": "imei",
    "imei_meid": "imei",
    "meid": "imei",
    "imei_number": "imei",
    "imei_no": "imei",
    "serial_number": "serial",
    "serial_no": "serial",
    "serialnumber": "serial",
    "s_n": "serial",
    "sn": "serial",
    "user": "username",
    "user_name": "username",
    "password": "enrollment_password",
    "enrolment_password": "enrollment_password",
}
# Columns a file may hold that the import leaves alone: a dual-SIM device's second IMEI (KME
# knows a device by its first) and what Download Existing Inventory adds (Model, Attributes,
# Registration, Sync state), so that its file imports back as it is.
IGNORED = frozenset(
    {"imei2", "imei_2"}
    | {
        key
        for key in map(csvimport.column_key, INVENTORY_HEADER)
        if ALIASES.get(key, key) not in COLUMNS
    }
)
ID_LABELS = {"imei": "IMEI", "serial": "serial number"}
TEMPLATE_ROW = ("356938035643809", "R58M12ABCDE", "jane.doe", "Change-me-2026")
PASSWORD_MAX_BYTES = 245  # as kmeweb.devices.services: what Samsung's RSA encryption takes
HIDDEN = "(hidden)"  # what a report shows instead of a password

_SPACE = re.compile(r"\s")
_SERIAL_FAST = re.compile(r"[A-Za-z0-9]{8,16}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A whole column of cells, each followed by a line break, as _SERIAL_FAST and _SPACE pass
# them one at a time: serial numbers that are not all digits, usernames without spaces.
_SERIAL_COLUMN = re.compile(r"(?:(?![0-9]*\n)[A-Za-z0-9]{8,16}\n)*")
_USERNAME_COLUMN = re.compile(rf"(?:[^\s]{{1,{USERNAME_MAX}}}\n)*")


class ParsedRow(NamedTuple):
    """A row that passed the file's own rules (identifiers normalised; an empty cell is None).
    A tuple, so that the preview keeps its rows without copying them into lists."""

    row: int
    imei: str | None
    serial: str | None
    username: str | None
    password: str | None


def template_rows() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Download template: the header and one example row."""
    return COLUMNS, [TEMPLATE_ROW]


def _looks_like_id(cell: str) -> bool:
    return classify_id(cell).kind != "invalid" and any(ch.isdigit() for ch in cell)


def _id_error(column: str, raw: str) -> tuple[str | None, str]:
    """(why `raw` cannot stand in `column` or None, its normalised form)."""
    if column == "imei":
        if is_imei_digits(raw):  # the common case, quickly
            return None, raw
    elif _SERIAL_FAST.fullmatch(raw) and not raw.isdigit():  # letters: never an IMEI
        return None, raw.upper()
    found = classify_id(raw)
    if column == "imei":
        if found.kind in ("imei", "meid"):
            return None, found.value
        return _imei_error(raw, found), raw
    if found.kind == "imei":
        return "This is an IMEI: put it in the imei column.", raw
    serial = normalize_serial(raw)
    if is_valid_serial(serial):
        return None, serial
    return "A serial number has 8 to 16 letters and digits.", raw


def _imei_error(raw: str, found: ClassifiedId) -> str:
    """Why `raw` is no IMEI or MEID, in the words an admin can act on."""
    if raw.isdigit() and len(raw) == 15:
        return "The IMEI check digit (Luhn) is wrong: check the number."
    if raw.isdigit() and raw.isascii():  # digits only: no MEID (its first digits are A0 to FF)
        return f"An IMEI has 15 digits; this one has {len(raw)}."
    if len(raw) == 14 and all(ch in "0123456789abcdefABCDEF" for ch in raw):
        return "An MEID's first two hexadecimal digits are A0 to FF."
    if found.kind == "serial" and not raw.isdigit():
        return "This looks like a serial number: put it in the serial column."
    return "An IMEI has 15 digits (an MEID 14 hexadecimal digits starting A0 to FF)."


def _unique_id(
    number: int, column: str, raw: str, seen: dict[str, dict[str, int]], problems: list
) -> str | None:
    """The row's checked identifier, or None with its problem recorded (invalid, or already on
    an earlier row of the file)."""
    reason, value = _id_error(column, raw)
    if reason:
        problems.append(RowError(number, column, shown(raw), reason))
        return None
    first = seen[column].get(value)
    if first is not None:
        problems.append(
            RowError(
                number, column, value, f"A duplicate of row {first} (the same {ID_LABELS[column]})."
            )
        )
        return None
    seen[column][value] = number
    return value


def _check_row(
    row: csvimport.Row, seen: dict[str, dict[str, int]]
) -> tuple[ParsedRow | None, list[RowError]]:
    """A row checked by the file's own rules, every problem it has reported; `seen` holds the
    identifiers of earlier rows ({column: {value: row}})."""
    cells = row.cells
    number = row.number
    problems: list[RowError] = []
    if row.extra:
        problems.append(row.ragged_error())
    imei_raw = (cells.get("imei") or "").strip()
    serial_raw = (cells.get("serial") or "").strip()
    imei = _unique_id(number, "imei", imei_raw, seen, problems) if imei_raw else None
    serial = _unique_id(number, "serial", serial_raw, seen, problems) if serial_raw else None
    if not imei_raw and not serial_raw:
        problems.append(RowError(number, "imei", "", "Each row needs an IMEI or a serial number."))
    username = cells.get("username") or None
    if username is not None:
        username = username.strip() or None
        if username is None:
            pass
        elif len(username) > USERNAME_MAX:
            problems.append(
                RowError(
                    number,
                    "username",
                    shown(username),
                    f"A username has at most {USERNAME_MAX} characters.",
                )
            )
        elif _SPACE.search(username):
            problems.append(RowError(number, "username", username, "A username has no spaces."))
    password = cells.get("enrollment_password") or None
    if password is not None:
        reason = _password_error(password, username)
        if reason == "":
            password = None
        elif reason:
            problems.append(RowError(number, "enrollment_password", HIDDEN, reason))
    if problems:
        return None, problems
    return ParsedRow(number, imei, serial, username, password), problems


def _password_error(password: str, username: str | None) -> str | None:
    """Why a password cannot be stored, None when it can, "" when the cell is only blanks."""
    if not password.strip():
        return ""
    if username is None:
        return "A password needs a username on its row."
    if len(password.encode()) > PASSWORD_MAX_BYTES:
        return f"A password has at most {PASSWORD_MAX_BYTES} bytes."
    if password != password.strip():
        return "A password cannot start or end with a space."
    if _CONTROL.search(password):
        return "A password cannot hold tabs or line breaks."
    return None


def _clean_rows(table: csvimport.Table) -> list[ParsedRow] | None:
    """The rows of a file in which no row breaks a rule, checked a column at a time (a file of
    100,000 rows in a few hundredths of a second); None as soon as a row might break one (the
    caller then checks row by row, and reports). A row passes here only as _check_row would
    pass it unchanged: identifiers as a clean file has them, none twice, plain usernames."""
    width = table.header.width
    if any(len(cells) != width for cells in table.cells):
        return None
    imeis = table.column("imei")
    serials = table.column("serial")
    users = table.column("username")
    passwords = table.column("enrollment_password")
    if imeis is not None:
        present = [v for v in imeis if v]
        if not all_imei_digits(present) or len(set(present)) != len(present):
            return None
    if serials is not None:
        present = [v for v in serials if v]
        joined = "\n".join(present)
        if present and (
            joined.count("\n") != len(present) - 1  # a cell holding a line break
            or not _SERIAL_COLUMN.fullmatch(joined + "\n")
        ):
            return None
        upper = joined.upper().split("\n") if present else []
        if len(set(upper)) != len(upper):
            return None
        if len(upper) != len(serials):
            found = iter(upper)
            upper = [next(found) if v else "" for v in serials]
        serials = upper
    if imeis is None or serials is None:
        if "" in (imeis if serials is None else serials):  # type: ignore[operator]
            return None
    elif any(not i and not s for i, s in zip(imeis, serials, strict=True)):
        return None
    if users is not None:
        present = [v for v in users if v]
        joined = "\n".join(present)
        if present and (
            joined.count("\n") != len(present) - 1 or not _USERNAME_COLUMN.fullmatch(joined + "\n")
        ):
            return None
    if passwords is not None:
        for i, password in enumerate(passwords):
            user = users[i] or None if users is not None else None
            if password and _password_error(password, user) is not None:  # "": only blanks
                return None
    n = len(table)
    return [
        ParsedRow(*r)
        for r in zip(
            table.numbers,
            [v or None for v in imeis] if imeis is not None else [None] * n,
            [v or None for v in serials] if serials is not None else [None] * n,
            [v or None for v in users] if users is not None else [None] * n,
            [v or None for v in passwords] if passwords is not None else [None] * n,
            strict=True,
        )
    ]


def check_file(
    stream: IO[bytes], max_bytes: int, max_rows: int
) -> tuple[list[ParsedRow], list[RowError], bool]:
    """The rows of an upload and the errors of the file's own rules (not the database's).

    Returns (rows, errors, has_username_column). Raises ImportRejected for a file that
    cannot be read at all (too large, too many rows, not text, bad header, no rows).
    """
    table = csvimport.read_table(
        stream, COLUMNS, ID_COLUMNS, max_bytes, max_rows, _looks_like_id, ALIASES, IGNORED
    )
    has_user = "username" in table.header.index
    clean = _clean_rows(table)
    if clean is not None:
        return clean, [], has_user
    rows: list[ParsedRow] = []
    errors: list[RowError] = []
    seen: dict[str, dict[str, int]] = {"imei": {}, "serial": {}}
    for i in range(len(table)):
        parsed, problems = _check_row(table.row(i), seen)
        if problems:
            errors.extend(problems)
        elif parsed is not None:
            rows.append(parsed)
    return rows, errors, has_user
