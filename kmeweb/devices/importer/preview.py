"""Import devices: the preview, kept server side until Confirm import.

`preview_import` runs the file's rules (parse.py) and the database's (check.py), keeps what it
parsed in Redis under an unguessable token bound to the admin and the profile, encrypted, for
CSV_PREVIEW_TTL_S, and returns the counts and every error. Nothing is written to the database.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from flask import current_app
from redis import Redis
from sqlalchemy.orm import Session

from kmeweb import crypto, gcpause
from kmeweb.csvimport import RowError
from kmeweb.devices.importer.check import ACTIONS, get_profile, plan_import
from kmeweb.devices.importer.parse import COLUMNS, check_file
from kmeweb.errors import NotFound
from kmeweb.operations import queue as rq_queue
from kmeweb.operations import services as operations
from kmeweb.profiles.models import Profile

KEY_PREFIX = "kmeweb:device-import:"
ERRORS_SHOWN = 500  # errors a preview page lists; the CSV report has every one
REPORT_HEADER = ("Row", "Column", "Value", "Reason")
COLUMNS_ORDER = {name: i for i, name in enumerate(("", *COLUMNS))}
# What a stored preview keeps under its rows key: the rows, and which of them name a device
# the preview found in the database (the import job looks only those up again).
ROW_KEYS = ("rows", "found")
ROW_FIELDS = ("row", "imei", "serial", "username", "password")


@dataclass
class Preview:
    """What Import devices found in a file; `token` names it for Confirm import."""

    token: str
    profile_id: int
    filename: str
    rows: int
    counts: dict[str, int]
    errors: list[RowError]
    message: str | None = None

    @property
    def error_count(self) -> int:
        return len(self.errors)

    @property
    def error_rows(self) -> int:
        return len({e.row for e in self.errors})

    @property
    def can_import(self) -> bool:
        return not self.errors and self.rows > 0


def _redis() -> Redis:
    return rq_queue.redis_connection()


def _key(token: str) -> str:
    return KEY_PREFIX + token


def _rows_key(token: str) -> str:
    return KEY_PREFIX + token + ":rows"


def _seal(value: Any) -> bytes:
    return crypto.encrypt_bytes(zlib.compress(json.dumps(value).encode(), 1))


def _open(blob: bytes | None) -> Any:
    """What _seal kept, or None (missing, or not readable with this key)."""
    if blob is None:
        return None
    try:
        with gcpause.paused():  # a preview of 100,000 rows is as many lists
            return json.loads(zlib.decompress(crypto.decrypt_bytes(blob)))
    except ValueError:
        return None


def _pack(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Rows of (row number, imei, serial, username, password) as columns: the numbers as a
    list, each text column as one string of its cells (None as "") joined by line breaks,
    which no checked cell holds (identifiers and usernames have no spaces, passwords no
    control characters). A third less to compress, encrypt and read back than a list per
    row."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(ROW_FIELDS)
    packed: dict[str, Any] = {"row": list(columns[0])}
    for name, cells in zip(ROW_FIELDS[1:], columns[1:], strict=True):
        text = "\n".join([cell or "" for cell in cells])
        if text.count("\n") != max(len(cells) - 1, 0):
            raise ValueError(f"a {name} holds a line break: not a checked row")
        packed[name] = text
    return packed


def _unpack(packed: dict[str, Any]) -> list[tuple[Any, ...]]:
    numbers = packed["row"]
    if not numbers:
        return []
    texts = [[cell or None for cell in packed[name].split("\n")] for name in ROW_FIELDS[1:]]
    return list(zip(numbers, *texts, strict=True))


def store_preview(token: str, data: dict[str, Any]) -> None:
    """Keep `data` under `token`, compressed and encrypted, for CSV_PREVIEW_TTL_S.

    Its rows (ROW_KEYS; "rows" as (row number, imei, serial, username, password), packed in
    columns) are kept under a key of their own, so that what reads only the summary (Confirm
    import, the error report) does not read and decrypt 100,000 rows."""
    summary = {k: v for k, v in data.items() if k not in ROW_KEYS}
    summary["row_count"] = len(data.get("rows") or [])
    detail = {k: data[k] for k in ROW_KEYS if k in data}
    if "rows" in detail:
        detail["rows"] = _pack(detail["rows"])
    ttl = max(1, int(current_app.config["CSV_PREVIEW_TTL_S"]))
    pipe = _redis().pipeline()  # MULTI ... EXEC: both keys or neither
    pipe.set(_rows_key(token), _seal(detail), ex=ttl)
    pipe.set(_key(token), _seal(summary), ex=ttl)
    pipe.execute()


def read_preview(token: str, rows: bool = True) -> dict[str, Any] | None:
    """What `token` names, whoever stored it (without its rows with rows=False); None when it
    expired or never existed."""
    if not token or len(token) > 64:
        return None
    data = _open(_redis().get(_key(token)))
    if not isinstance(data, dict):
        return None
    if rows and "rows" not in data:
        detail = _open(_redis().get(_rows_key(token)))
        if not isinstance(detail, dict):
            return None
        if isinstance(detail.get("rows"), dict):
            detail["rows"] = _unpack(detail["rows"])
        data.update(detail)
    return data


def row_count(data: dict[str, Any]) -> int:
    """How many rows a stored preview holds (read with or without its rows)."""
    if "row_count" in data:
        return int(data["row_count"])
    return len(data.get("rows") or [])


def load_preview(token: str, profile_id: int, actor: Any) -> dict[str, Any]:
    """The stored preview of this admin for this profile, without its rows (`row_count` says
    how many). Raises NotFound when it expired, never existed or belongs to someone else (all
    look the same)."""
    data = read_preview(token, rows=False)
    if (
        data is None
        or data.get("admin_id") != operations.actor_id(actor)
        or data.get("profile_id") != profile_id
    ):
        raise NotFound("This preview has expired; upload the file again.")
    return data


def preview_import(
    session: Session, profile_id: int, stream: IO[bytes], filename: str, actor: Any
) -> Preview:
    """Check an upload for Import devices and keep what it holds for Confirm import.

    Returns the Preview (counts, every error). Writes nothing to the database. Raises
    NotFound/Conflict (profile) or ImportRejected for a file that cannot be read at all.
    """
    profile = get_profile(session, profile_id)
    with gcpause.paused():
        return _preview(session, profile, stream, filename, actor)


def _preview(
    session: Session, profile: Profile, stream: IO[bytes], filename: str, actor: Any
) -> Preview:
    config = current_app.config
    rows, errors, has_user = check_file(stream, config["CSV_MAX_BYTES"], config["CSV_MAX_ROWS"])
    plan = plan_import(session, profile, rows, has_user)
    session.rollback()  # end the read transaction; nothing was written
    total = len(rows) + len({e.row for e in errors})
    errors = sorted([*errors, *plan.errors], key=lambda e: (e.row, COLUMNS_ORDER.get(e.column, 9)))
    counts = {action: plan.counts.get(action, 0) for action in ACTIONS}
    token = secrets.token_urlsafe(24)
    name = (filename or "devices.csv")[:200]
    store_preview(
        token,
        {
            "admin_id": operations.actor_id(actor),
            "actor": getattr(actor, "email", None),  # how the import job's audit names it
            "profile_id": profile.id,
            "filename": name,
            "counts": counts,
            "has_user": has_user,
            "total": total,
            "errors": [[e.row, e.column, e.value, e.reason] for e in errors],
            # The rows only when they can be imported: a file with errors is never applied.
            "rows": [] if errors else rows,
            "found": [] if errors else plan.found,
        },
    )
    return Preview(token, profile.id, name, total, counts, errors)


def error_report(data: dict[str, Any]) -> Iterable[tuple[Any, ...]]:
    """The rows of the downloadable error report (Row, Column, Value, Reason)."""
    for e in data["errors"]:
        yield tuple(e)


def forget_preview(token: str) -> None:
    """Drop the stored preview (once its import ran)."""
    _redis().delete(_key(token), _rows_key(token))
