"""A cursor names the id a page starts after: one this API did not give out, or one past
the integer columns' range, is the invalid_cursor problem (it was a 500 on both databases)."""

from __future__ import annotations

import pytest

from kmeweb.api.paging import encode
from kmeweb.ids import MAX_DB_INT


@pytest.mark.parametrize(
    "cursor",
    [encode(MAX_DB_INT + 1), encode(-1), encode(10**30), encode("1"), encode(True), "!!"],
    ids=["past-int", "negative", "huge", "string", "bool", "not-base64"],
)
def test_a_cursor_that_names_no_id_is_invalid(api, cursor):
    r = api.get(f"/operations?cursor={cursor}")
    assert r.status_code == 422, r.get_data(as_text=True)
    assert r.get_json()["code"] == "invalid_cursor"


def test_the_largest_id_is_a_cursor(api):
    r = api.get(f"/operations?cursor={encode(MAX_DB_INT)}")
    assert r.status_code == 200
    assert r.get_json() == {"items": [], "next_cursor": None}
