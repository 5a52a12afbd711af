"""The API reference as a person reads it, built from the OpenAPI document: each operation
with its scope, parameters, body fields and answers, grouped by tag, and the models the
answers name. Nothing here is written by hand per route: a route added to the API is on the
page as soon as it is in the document."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

METHOD_ORDER = ("get", "post", "put", "patch", "delete")
REF_PREFIX = "#/components/schemas/"
CODE_SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Field:
    """A parameter, a body field or a model's field."""

    name: str
    type: str
    model: str | None = None  # a component the type names (linked to its model)
    required: bool = False
    description: str = ""
    constraints: list[str] = field(default_factory=list)
    where: str = ""  # path or query (parameters only)
    children: list[Field] = field(default_factory=list)  # the fields of a nested object


@dataclass
class Answer:
    status: str
    description: str
    media: str | None
    type: str
    model: str | None


@dataclass
class Operation:
    method: str
    path: str
    anchor: str
    summary: str
    description: str
    scopes: list[str]
    parameters: list[Field]
    body_model: str | None
    body: list[Field]
    answers: list[Answer]

    @property
    def honours_idempotency_key(self) -> bool:
        return self.method == "POST"


@dataclass
class Model:
    name: str
    description: str
    fields: list[Field]
    values: list[str]  # an enum's values


@dataclass
class Reference:
    title: str
    version: str
    description: str
    tags: list[tuple[str, list[Operation]]]
    models: list[Model]
    problems: list[tuple[str, str]]
    common_answers: list[Answer]  # every operation's (the refusals); left out of each one's

    @property
    def operations(self) -> list[Operation]:
        return [op for _tag, ops in self.tags for op in ops]


def build(document: dict[str, Any], problem_codes: dict[str, str]) -> Reference:
    """The reference of `document` (an OpenAPI 3.1 dict) and the problem codes {code: meaning}."""
    components = document.get("components", {}).get("schemas", {})
    tagged: dict[str, list[Operation]] = {}
    for path, item in sorted(document.get("paths", {}).items()):
        for method in sorted(item, key=_method_rank):
            raw = item[method]
            if not isinstance(raw, dict) or method not in METHOD_ORDER:
                continue
            tag = (raw.get("tags") or ["other"])[0]
            tagged.setdefault(tag, []).append(_operation(path, method, raw, components))
    order = [t["name"] for t in document.get("tags", []) if t.get("name") in tagged]
    order += sorted(t for t in tagged if t not in order)
    info = document.get("info", {})
    common = _common_answers([op for ops in tagged.values() for op in ops])
    return Reference(
        title=info.get("title", "API"),
        version=info.get("version", ""),
        description=info.get("description", ""),
        tags=[(tag, tagged[tag]) for tag in order],
        models=_models(document, components),
        problems=sorted(problem_codes.items()),
        common_answers=common,
    )


def _common_answers(operations: list[Operation]) -> list[Answer]:
    """The answers every operation has alike (the refusals any route may give: no token, a
    missing scope, ...), said once for all; each operation keeps only its own."""
    if len(operations) < 2:
        return []
    keyed = [{_answer_key(a): a for a in op.answers} for op in operations]
    shared = set.intersection(*(set(answers) for answers in keyed))
    for op in operations:
        op.answers = [a for a in op.answers if _answer_key(a) not in shared]
    return sorted((keyed[0][key] for key in shared), key=lambda a: a.status)


def _answer_key(answer: Answer) -> tuple[str, str | None, str]:
    return answer.status, answer.media, answer.type


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _operation(path: str, method: str, raw: dict[str, Any], components: dict) -> Operation:
    scopes = sorted({s for need in raw.get("security") or [] for v in need.values() for s in v})
    body_schema = (
        raw.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    )
    body_model = ref_name(body_schema) if body_schema else None
    return Operation(
        method=method.upper(),
        path=path,
        anchor="op-" + raw.get("operationId", f"{method}-{path}"),
        summary=raw.get("summary", ""),
        description=raw.get("description", ""),
        scopes=scopes,
        parameters=[_parameter(p) for p in raw.get("parameters", [])],
        body_model=body_model,
        body=_fields(resolve(body_schema, components), components, nest=True)
        if body_schema
        else [],
        answers=[
            _answer(status, answer) for status, answer in sorted(raw.get("responses", {}).items())
        ],
    )


def _parameter(raw: dict[str, Any]) -> Field:
    schema = raw.get("schema", {})
    kind, model = describe(schema)
    kind = kind.removesuffix(" or null")  # a parameter is given or left out, never null
    return Field(
        name=raw.get("name", ""),
        type=kind,
        model=model,
        required=bool(raw.get("required")),
        description=raw.get("description") or schema.get("description", ""),
        constraints=constraints(schema),
        where=raw.get("in", ""),
    )


def _answer(status: str, raw: dict[str, Any]) -> Answer:
    content = raw.get("content") or {}
    media = next(iter(content), None)
    schema = content[media].get("schema", {}) if media else {}
    kind, model = describe(schema) if schema else ("", None)
    return Answer(status, raw.get("description", ""), media, kind, model)


def resolve(schema: dict[str, Any] | None, components: dict) -> dict[str, Any]:
    """The schema a $ref names (one step), else the schema itself."""
    if not schema:
        return {}
    name = ref_name(schema)
    return components.get(name, {}) if name else schema


def ref_name(schema: dict[str, Any] | None) -> str | None:
    ref = (schema or {}).get("$ref", "")
    return ref[len(REF_PREFIX) :] if ref.startswith(REF_PREFIX) else None


def _fields(schema: dict[str, Any], components: dict, nest: bool) -> list[Field]:
    """The properties of an object schema; with `nest`, each field that is an object (or a
    list of objects) lists its own fields, one level down."""
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema.get("properties", {}).items():
        kind, model = describe(prop)
        children: list[Field] = []
        if nest and model:
            target = components.get(model, {})
            if target.get("properties"):
                children = _fields(target, components, nest=False)
        found.append(
            Field(
                name=name,
                type=kind,
                model=model,
                required=name in required,
                description=prop.get("description", ""),
                constraints=constraints(prop),
                children=children,
            )
        )
    return found


def describe(schema: dict[str, Any]) -> tuple[str, str | None]:
    """(the type in words, the component it names or None): `integer`, `string or null`,
    `array of OperationOut`, `OperationStatus`."""
    name = ref_name(schema)
    if name:
        return name, name
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [describe(s) for s in schema[key]]
            words = [w for w, _m in parts if w != "null"]
            if len(words) < len(parts):
                words.append("null")
            model = next((m for _w, m in parts if m), None)
            return " or ".join(dict.fromkeys(words)), model
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return describe(schema["allOf"][0])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind), None
    if kind == "array":
        inner, model = describe(schema.get("items", {}))
        return f"array of {inner}", model
    if "const" in schema:
        return f"{kind} {schema['const']!r}", None
    if schema.get("format"):
        return f"{kind} ({schema['format']})", None
    return kind, None


# JSON Schema keywords as the page says them (the second form for a count of 1).
CONSTRAINTS = (
    ("minimum", "≥ {}", None),
    ("exclusiveMinimum", "> {}", None),
    ("maximum", "≤ {}", None),
    ("exclusiveMaximum", "< {}", None),
    ("minLength", "at least {} characters", "at least 1 character"),
    ("maxLength", "at most {} characters", "at most 1 character"),
    ("pattern", "matches {}", None),
    ("minItems", "at least {} items", "at least 1 item"),
    ("maxItems", "at most {} items", "at most 1 item"),
    ("minProperties", "at least {} entries", "at least 1 entry"),
    ("maxProperties", "at most {} entries", "at most 1 entry"),
)


def constraints(schema: dict[str, Any]) -> list[str]:
    """What a value must be, in words: bounds, lengths, pattern, allowed values, default."""
    found = []
    for variant in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        for key, words, one in CONSTRAINTS:
            if key in variant:
                value = variant[key]
                found.append(one if one and value == 1 else words.format(_number(value)))
        if "enum" in variant:
            found.append("one of " + ", ".join(str(v) for v in variant["enum"]))
    if schema.get("default") is not None:
        found.append(f"default {json.dumps(schema['default'], ensure_ascii=False)}")
    return list(dict.fromkeys(found))


def _number(value: Any) -> Any:
    """1,000 and 2,147,483,647 as people read them; anything else as it is."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return value


def _models(document: dict[str, Any], components: dict) -> list[Model]:
    """Every component an operation's answers or parameters name, and the components those
    name, in name order. A request body's own model is not repeated (its fields are on its
    operation), but the models its fields name are here."""
    operations = [op for item in document.get("paths", {}).values() for op in item.values()]
    bodies = _refs([op.get("requestBody", {}) for op in operations if isinstance(op, dict)])
    named = _refs(
        [
            {k: v for k, v in op.items() if k != "requestBody"}
            for op in operations
            if isinstance(op, dict)
        ]
    )
    seen: set[str] = set()
    todo = named | set().union(*(_refs(components.get(b, {})) for b in bodies))
    while todo:
        name = todo.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        todo |= _refs(components[name])
    return [
        Model(
            name=name,
            description=components[name].get("description", ""),
            fields=_fields(components[name], components, nest=False),
            values=[str(v) for v in components[name].get("enum", [])],
        )
        for name in sorted(seen)
    ]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {ref_name(node)} - {None}
        for value in node.values():
            found |= _refs(value)
        return found  # type: ignore[return-value]
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def inline(text: str) -> Markup:
    """Plain text with `code` spans, on one line."""
    return Markup(CODE_SPAN.sub(r"<code>\1</code>", str(escape(" ".join((text or "").split())))))


def prose(text: str) -> Markup:
    """Plain text with `code` spans, as paragraphs (a blank line between two)."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text or "") if p.strip()]
    return Markup("").join(Markup("<p>{}</p>").format(inline(p)) for p in paragraphs)
