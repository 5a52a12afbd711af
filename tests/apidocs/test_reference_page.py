"""The console's API reference (/api-docs): read from the OpenAPI document, so every route the
API has is on it, with the problem codes a problem's `type` links to."""

from __future__ import annotations

import html

import pytest

from kmeweb.api.docs import document
from kmeweb.apidocs import reference
from kmeweb.errors import PROBLEM_CODES

# A document with what today's routes lack: a body whose field is an object of its own.
BODY_DOC = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "tags": [{"name": "devices"}],
    "paths": {
        "/api/v1/devices/move": {
            "post": {
                "summary": "Move devices.",
                "description": "By ids, or by `filter` with `expected_count`.",
                "operationId": "move_devices",
                "tags": ["devices"],
                "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/MoveIn"}}
                    }
                },
                "responses": {
                    "202": {
                        "description": "Accepted",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Accepted"}
                            }
                        },
                    }
                },
                "security": [{"bearer": ["kme.devices:write"]}],
            }
        }
    },
    "components": {
        "schemas": {
            "MoveIn": {
                "type": "object",
                "required": ["target_profile_id"],
                "properties": {
                    "target_profile_id": {"type": "integer", "minimum": 1},
                    "device_ids": {
                        "anyOf": [
                            {
                                "type": "array",
                                "items": {"type": "integer"},
                                "minItems": 1,
                                "maxItems": 100000,
                            },
                            {"type": "null"},
                        ]
                    },
                    "filter": {
                        "anyOf": [{"$ref": "#/components/schemas/DeviceFilter"}, {"type": "null"}]
                    },
                },
            },
            "DeviceFilter": {
                "type": "object",
                "properties": {
                    "profile_id": {"type": "integer", "description": "The profile's devices"},
                    "q": {"type": "string", "maxLength": 200, "default": ""},
                },
            },
            "Accepted": {
                "type": "object",
                "properties": {"operation_id": {"type": "integer"}},
            },
        }
    },
}


def test_a_viewer_reads_every_operation_of_the_document(client, login):
    login("viewer")
    r = client.get("/api-docs")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    operations = reference.build(document(), PROBLEM_CODES).operations
    assert operations, "the document lists the API's routes"
    for op in operations:
        assert f'id="{op.anchor}"' in page
        assert op.path in html.unescape(page) and str(reference.inline(op.summary)) in page
        assert ", ".join(f"<code>{s}</code>" for s in op.scopes) in page
    assert 'href="/admin/api-tokens/"' in page  # where tokens are made
    assert 'href="/api-docs/openapi.json"' in page


def test_the_refusals_every_route_gives_are_said_once(client, login):
    ref = reference.build(document(), PROBLEM_CODES)
    common = [a.status for a in ref.common_answers]
    assert {"401", "403", "429"} <= set(common)
    assert all(a.status not in common for op in ref.operations for a in op.answers)
    login("viewer")
    page = client.get("/api-docs").get_data(as_text=True)
    assert page.count('id="common-answers"') == 1
    assert page.count('href="#common-answers"') == len(ref.operations)


def test_every_problem_code_has_its_anchor(client, login):
    login("viewer")
    page = client.get("/api-docs").get_data(as_text=True)
    for code in PROBLEM_CODES:
        assert f'id="problem-{code}"' in page


def test_the_document_downloads_for_a_signed_in_person(client, login):
    assert client.get("/api-docs/openapi.json").status_code == 302  # sign in first
    login("viewer")
    r = client.get("/api-docs/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Disposition"] == "attachment; filename=openapi.json"
    assert r.get_json() == document()


def test_a_body_shows_its_fields_and_those_of_a_nested_object(client, login, monkeypatch):
    monkeypatch.setattr("kmeweb.apidocs.views.document", lambda: BODY_DOC)
    login("viewer")
    page = html.unescape(client.get("/api-docs").get_data(as_text=True))
    assert "filter.profile_id" in page and "filter.q" in page
    assert "The profile's devices" in page
    assert "at least 1 item;" in page and "at most 100,000 items" in page and "≥ 1" in page
    assert "<code>expected_count</code>" in page  # a code span of the description
    assert 'href="#model-DeviceFilter"' in page


@pytest.mark.parametrize(
    ("schema", "words", "model"),
    [
        ({"type": "integer"}, "integer", None),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "string or null", None),
        ({"type": "array", "items": {"$ref": "#/components/schemas/X"}}, "array of X", "X"),
        ({"anyOf": [{"$ref": "#/components/schemas/S"}, {"type": "null"}]}, "S or null", "S"),
        ({"type": "string", "format": "date-time"}, "string (date-time)", None),
    ],
)
def test_types_in_words(schema, words, model):
    assert reference.describe(schema) == (words, model)


def test_a_parameter_is_given_or_left_out_never_null():
    doc = {
        "paths": {
            "/x": {
                "get": {
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        }
                    ]
                }
            }
        }
    }
    assert reference.build(doc, {}).operations[0].parameters[0].type == "string"


def test_the_body_fields_nest_one_level():
    op = reference.build(BODY_DOC, {}).operations[0]
    assert op.scopes == ["kme.devices:write"] and op.body_model == "MoveIn"
    fields = {f.name: f for f in op.body}
    assert fields["target_profile_id"].required
    assert [c.name for c in fields["filter"].children] == ["profile_id", "q"]
    assert fields["filter"].children[1].constraints == [
        "at most 200 characters",
        'default ""',
    ]
    models = [m.name for m in reference.build(BODY_DOC, {}).models]
    assert models == ["Accepted", "DeviceFilter"]  # MoveIn's fields are on its operation
