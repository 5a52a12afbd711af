"""The OpenAPI document is honest: it validates as OpenAPI 3.1, lists every route of the API
with its method and the scope it needs, is served to a token only, and every problem `code`
the code can answer is explained in the reference (kmeweb.errors.PROBLEM_CODES)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from kmeweb.api.docs import document
from kmeweb.errors import HTTP_PROBLEM_CODES, PROBLEM_CODES, PROBLEM_MIMETYPE

PACKAGE = Path(__file__).resolve().parents[2] / "kmeweb"
DOCUMENT_ENDPOINT = "api.openapi"
RULE_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def api_routes(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route of the `api` blueprint but the document's own."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] != "api" or rule.endpoint == DOCUMENT_ENDPOINT:
            continue
        path = RULE_VARIABLE.sub(r"{\1}", rule.rule)
        found |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def documented(doc: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    }


def test_the_document_validates_as_openapi_3_1(api):
    r = api.get("/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_every_route_is_documented_with_its_method_and_scope(app):
    doc = document()
    routes = api_routes(app)
    assert ("GET", "/api/v1/operations/{operation_id}") in routes  # the walk sees the routes
    operations = documented(doc)
    assert routes - operations.keys() == set(), "routes missing from the document"
    assert operations.keys() - routes == set(), "documented operations no route answers"
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] != "api" or rule.endpoint == DOCUMENT_ENDPOINT:
            continue
        scope = app.view_functions[rule.endpoint].api_scope
        path = RULE_VARIABLE.sub(r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = operations[(method, path)]
            wanted = [{"bearer": [scope.value] if scope else []}]
            assert operation.get("security") == wanted, (method, path)


def test_every_operation_is_described_for_the_reference(app):
    """A summary (the view's docstring) and a tag per operation; refusals as problem+json."""
    for (method, path), operation in documented(document()).items():
        assert operation["tags"], (method, path)
        assert not operation["summary"].endswith(f"<{method}>"), f"{method} {path}: no docstring"
        for status, answer in operation["responses"].items():
            if int(status) >= 400:
                assert list(answer["content"]) == [PROBLEM_MIMETYPE], (method, path, status)


def test_the_document_needs_a_token(api, client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 401
    assert r.mimetype == PROBLEM_MIMETYPE
    assert r.get_json()["code"] == "unauthorized"
    r = api.get("/openapi.json")
    assert r.status_code == 200
    assert r.get_json() == document()


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "text" constants."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _text(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The string a node writes: a literal, or a module constant's name."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return constants.get(node.id) if isinstance(node, ast.Name) else None


DOMAIN_ERRORS = {"DomainError", "ValidationError", "NotFound", "Conflict", "PermissionDenied"}


def codes_used() -> dict[str, str]:
    """{code: where} of every problem code written in kmeweb/ (the KME client aside, whose
    codes are Samsung's): ApiProblem(status, code, ...), a DomainError's `code=` or third
    argument, and a DomainError class's `code`. A code held in a module constant counts."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "knox" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        constants = _module_strings(tree)
        where = str(path.relative_to(PACKAGE.parent))

        for node in ast.walk(tree):
            values: list[ast.AST] = []
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name in {"ApiProblem", "problem"} and len(node.args) >= 2:
                    values.append(node.args[1])
                if name in DOMAIN_ERRORS and len(node.args) >= 3:
                    values.append(node.args[2])
                values += [kw.value for kw in node.keywords if kw.arg == "code"]
            elif isinstance(node, ast.ClassDef):
                values += [
                    stmt.value
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign)
                    and any(getattr(t, "id", "") == "code" for t in stmt.targets)
                ]
            for value in values:
                code = _text(value, constants)
                if code is not None:
                    found.setdefault(code, f"{where}:{value.lineno}")
    return found


def test_every_problem_code_is_explained_in_the_reference():
    used = codes_used()
    assert {"invalid_token", "insufficient_scope", "not_found", "invalid"} <= used.keys()
    missing = {code: where for code, where in used.items() if code not in PROBLEM_CODES}
    assert missing == {}, "add these codes to kmeweb.errors.PROBLEM_CODES"
    assert set(HTTP_PROBLEM_CODES.values()) <= PROBLEM_CODES.keys()
    assert all(meaning.strip() for meaning in PROBLEM_CODES.values())


def test_a_problem_links_to_its_code_in_the_reference(client):
    body = client.get("/api/v1/operations").get_json()
    assert body["code"] == "unauthorized"
    assert body["type"] == "/api-docs#problem-unauthorized"
