"""On PostgreSQL, the pull's lookup of a page's KME ids is planned for the table as it is
when the statement runs, not as it was when the connection first ran it.

psycopg prepares a statement on the server after 5 executions; PostgreSQL's default then
keeps one generic plan, made from the table's size at that moment. A pull that starts on an
empty device table went on scanning the whole table (and searching the page's 1,000 ids for
each row) at 200,000 devices: minutes for what takes seconds. kmeweb's connections plan each
statement for its values (plan_cache_mode=force_custom_plan)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, text

from kmeweb.devices.models import Device
from kmeweb.extensions import db
from tests.conftest import TEST_DB

pytestmark = pytest.mark.skipif(TEST_DB != "postgresql", reason="PostgreSQL's plan cache")


def _lookup(session, ids: list[str]) -> int:
    rows = session.execute(select(Device.id).where(Device.kme_device_id.in_(ids)))
    return len(rows.all())


def test_a_page_lookup_uses_the_index_once_the_table_has_grown(app):
    session = db.session

    def add(start: int, n: int) -> None:
        session.execute(
            insert(Device),
            [
                {"serial": f"R5PLAN{i:06d}", "kme_device_id": f"kme-{i:06d}",
                 "approval": "pending", "version": 1, "attributes": {}}
                for i in range(start, start + n)
            ],
        )  # fmt: skip

    # The pull's first pages: each looks up its ids, then adds its devices.
    for page in range(8):  # past psycopg's prepare threshold, on a small table
        ids = [f"kme-{i:06d}" for i in range(page * 1000, page * 1000 + 1000)]
        assert _lookup(session, ids) == 0
        add(page * 100, 100)
    add(800, 4200)
    # The same statement again, on the same connection, as the pull's later pages run it.
    assert _lookup(session, [f"kme-{i:06d}" for i in range(3000, 4000)]) == 1000
    plans = session.execute(
        text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE '%device.kme_device_id IN%'"
        )
    ).all()
    assert plans, "the lookup was prepared on the server"
    assert all(generic == 0 for generic, _custom in plans), plans
    # Whatever the costs say at the sixth execution: never a plan made for other values.
    assert session.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
