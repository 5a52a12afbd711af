"""CSV downloads: streamed from the database in chunks, formula-safe (design.md 6.4).

Every download goes through `csv_response`: rows are produced lazily (use `keyset_chunks`
to read the database a chunk at a time, never the whole result), encoded as they go,
and any cell a spreadsheet would run as a formula is prefixed with `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Response, stream_with_context
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A cell as text, with a leading `'` where a spreadsheet would see a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The header, then each row, as CSV text chunks of a few hundred rows each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    count = 0
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        count += 1
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def dated_filename(stem: str, now: datetime | None = None) -> str:
    """`stem-YYYY-MM-DD.csv`, with anything but letters, digits and dashes made a dash."""
    clean = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in stem).strip("-")
    day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    return f"{clean or 'export'}-{day}.csv"


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """A streamed CSV download (UTF-8 with a BOM, so spreadsheets read accents right)."""

    def generate() -> Iterator[bytes]:
        yield "\ufeff".encode()
        for chunk in csv_lines(header, rows):
            yield chunk.encode("utf-8")

    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass the stream on as it comes
    return response


def keyset_chunks(
    session: Session, stmt: Select, key: InstrumentedAttribute, chunk: int = 5000
) -> Iterator[Any]:
    """Rows of `stmt` in `key` order, `chunk` at a time (WHERE key > last LIMIT chunk).

    Memory stays at one chunk whatever the result's size; `stmt` must select `key` as a
    column of its rows, named like the attribute (`row.id`), or select the entity.
    """
    last = None
    name = key.key
    while True:
        page = stmt.order_by(key).limit(chunk)
        if last is not None:
            page = page.where(key > last)
        rows = session.execute(page).all()
        if not rows:
            return
        yield from rows
        tail = rows[-1]
        last = getattr(tail, name, None)
        if last is None:  # the statement selected an entity
            last = getattr(tail[0], name)
        if len(rows) < chunk:
            return
