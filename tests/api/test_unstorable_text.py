"""Text no database can store (a NUL, which PostgreSQL refuses, or a lone UTF-16 surrogate)
is a 400 problem naming where it was, before any route runs: never a database error."""

from __future__ import annotations

import pytest

from kmeweb.errors import PROBLEM_MIMETYPE


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800", "\\udfff"])
def test_a_json_body_with_text_that_is_not_text_is_a_400(api, escape):
    raw = '{"device_ids": [1], "filter": {"q": "abXcd"}}'.replace("X", escape)
    r = api.client.post(
        "/api/v1/operations/1/retry",
        data=raw,
        content_type="application/json",
        headers=api._headers(None),
    )
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.mimetype == PROBLEM_MIMETYPE
    body = r.get_json()
    assert body["code"] == "bad_request"
    assert body["errors"] == [{"field": "filter.q", "message": "Not text a database can store."}]


def test_a_key_or_a_list_item_is_named_too(api):
    r = api.post("/operations/1/retry", json={"items": ["ok", "a\x00"]})
    assert r.get_json()["errors"][0]["field"] == "items.1"
    r = api.post("/operations/1/retry", json={"a\x00": 1})
    assert r.get_json()["errors"][0]["field"] == "a\x00"


def test_a_query_with_a_nul_is_a_400_problem(api):
    r = api.get("/operations?kind=a%00b")
    assert r.status_code == 400
    assert r.get_json()["code"] == "bad_request"


def test_the_token_is_checked_first(client):
    r = client.post("/api/v1/operations/1/retry", json={"q": "a\x00"})
    assert r.status_code == 401
