"""CSV downloads: formula-safe cells, chunked reads, a streamed response."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from kmeweb.audit import services as audit
from kmeweb.audit.models import AuditEvent
from kmeweb.csvexport import csv_response, dated_filename, keyset_chunks, safe_cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("356938035643809", "356938035643809"),
        (None, ""),
        (datetime(2026, 12, 1, 10, 0, tzinfo=UTC), "2026-12-01T10:00:00Z"),
    ],
)
def test_cells_a_spreadsheet_would_run_are_neutralised(value, cell):
    assert safe_cell(value) == cell


def test_dated_filename_is_safe():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert dated_filename('upload "42"/../x', now) == "upload--42-----x-2026-12-01.csv"


def test_keyset_chunks_reads_every_row_once_in_order(session):
    for n in range(23):
        audit.record(session, "t", f"a.{n:02d}")
    session.commit()
    rows = list(keyset_chunks(session, select(AuditEvent.id, AuditEvent.action), AuditEvent.id, 5))
    assert [r.action for r in rows] == [f"a.{n:02d}" for n in range(23)]
    entities = list(keyset_chunks(session, select(AuditEvent), AuditEvent.id, 4))
    assert [e[0].action for e in entities] == [f"a.{n:02d}" for n in range(23)]


@pytest.fixture
def export_route(app, session):
    @app.get("/_test/export")
    def _export():
        stmt = select(AuditEvent.id, AuditEvent.actor, AuditEvent.action)
        rows = ((r.actor, r.action) for r in keyset_chunks(session, stmt, AuditEvent.id, 2))
        return csv_response("events-2026-12-01.csv", ["actor", "action"], rows)


def test_csv_response_streams_a_download(export_route, session, client, login):
    login("admin")
    audit.record(session, "=cmd|' /C calc'!A0", "x.evil")
    session.commit()
    response = client.get("/_test/export")
    assert response.is_streamed
    assert response.headers["Content-Disposition"] == 'attachment; filename="events-2026-12-01.csv"'
    text = response.get_data().decode("utf-8-sig")
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["actor", "action"]
    assert ["'=cmd|' /C calc'!A0", "x.evil"] in parsed
