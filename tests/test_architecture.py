"""The rooms of kmeweb and the arrows between them (docs/architecture.md), held by the code.

Each test reads the source with `ast` (nothing is imported), so a wrong arrow fails here
with the file and line of the import, before it turns into an import cycle at run time.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kmeweb"

# The composition roots: they import every room to build the app and its commands, and no
# room imports them.
COMPOSITION = {"kmeweb", "kmeweb.cli", "kmeweb.models"}

# Who may import the KME client (kmeweb.knox, the simulator aside): the sync jobs, Test
# connection, and the integration settings reading the client's defaults. The simulator's own
# commands (kmeweb.knox.simulator) may be imported by the CLI that serves it.
KNOX_CLIENT_IMPORTERS = (
    "kmeweb.sync.",
    "kmeweb.integration.connection",
    "kmeweb.integration.settings",
    "kmeweb.integration.forms",
)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module (or module.name) imported
    path: Path
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@functools.cache
def imports() -> tuple[Import, ...]:
    """Every import of a kmeweb module inside kmeweb/, with where it is."""
    return tuple(_imports())


def _imports() -> Iterator[Import]:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        importer = module_name(path)
        functions = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        inner = {id(n) for f in functions for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target == "kmeweb" or target.startswith("kmeweb."):
                    yield Import(importer, target, path, node.lineno, id(node) in inner)


def room(module: str) -> str:
    """The room of a dotted name: kmeweb.<room> (a name defined in kmeweb/__init__.py is the
    factory's, kmeweb)."""
    parts = module.split(".")
    if len(parts) < 2:
        return module
    head = PACKAGE / parts[1]
    if not (head.is_dir() or head.with_suffix(".py").exists()):
        return "kmeweb"
    return ".".join(parts[:2])


def is_web(module: str) -> bool:
    """An entry point: a room's views or forms (or `<x>_views`, `<x>_forms`), the dialog
    helpers the views share, or the enrollment's own WSGI lane (which answers with the
    enrollment view's code)."""
    last = module.split(".")[-1]
    if module == "kmeweb.api" or module.startswith("kmeweb.api."):
        return True  # the JSON API is an entry point throughout, like a room's views
    return (
        module in {"kmeweb.dialogs", "kmeweb.enroll.lane"}
        or last in {"views", "forms"}
        or last.endswith(("_views", "_forms"))  # a room's second set of pages (auth's accounts)
    )


def node(module: str) -> str:
    """A room's domain (its services, jobs and helpers) and its web floor are two nodes: the
    pages of one room may call the services of a room that builds on it (the profile page
    lists devices through the devices room, which builds on profiles)."""
    return room(module) + (":web" if is_web(module) else "")


@functools.cache
def is_module(target: str) -> bool:
    return (ROOT / Path(*target.split("."))).with_suffix(".py").exists() or (
        ROOT / Path(*target.split("."))
    ).is_dir()


def target_module(target: str) -> str:
    """The module an import names: `from kmeweb.x import services` names kmeweb.x.services,
    `from kmeweb.x.services import f` names kmeweb.x.services."""
    return target if is_module(target) else target.rsplit(".", 1)[0]


def is_models(target: str) -> bool:
    """An import of a room's tables (kmeweb.x.models or a name from it)."""
    parts = target.split(".")
    return len(parts) >= 3 and parts[2] == "models"


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def room_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], Import]]:
    """{node: nodes it imports}, the tables (models.py) left out, and where each arrow is."""
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], Import] = {}
    for imp in imports():
        if imp.importer in COMPOSITION or is_models(imp.target):
            continue
        src, dst = node(imp.importer), node(target_module(imp.target))
        if src != dst:
            graph[src].add(dst)
            where.setdefault((src, dst), imp)
    return graph, where


def test_no_import_cycle_between_rooms():
    """Rooms import each other one way (a room's tables, its models.py, are the shared floor)."""
    assert len(room_graph()[0]) > 15  # the walk sees the rooms
    graph, where = room_graph()
    found = cycle(graph)
    if found:
        steps = []
        for src, dst in zip(found, found[1:], strict=False):
            imp = where[(src, dst)]
            steps.append(f"{src} -> {dst} ({imp.path.relative_to(ROOT)}:{imp.line})")
        pytest.fail("import cycle between rooms:\n  " + "\n  ".join(steps))


def test_the_domain_never_imports_a_page():
    """Services and jobs know nothing of views and forms: every entry point can call them."""
    bad = [
        f"{imp.path.relative_to(ROOT)}:{imp.line} {imp.importer} imports {imp.target}"
        for imp in imports()
        if imp.importer not in COMPOSITION
        and not is_web(imp.importer)
        and is_web(target_module(imp.target))
    ]
    assert bad == []


def test_models_import_only_models():
    """Tables stand on the floor: a models.py imports other tables and the kernel's pure
    helpers (db, encryption, the enum base, redaction) only."""
    allowed = {"kmeweb.extensions", "kmeweb.crypto", "kmeweb.enums", "kmeweb.redact"}
    bad = [
        f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.target}"
        for imp in imports()
        if imp.importer.endswith(".models")
        and imp.importer != "kmeweb.models"
        and not is_models(imp.target)
        and not any(imp.target == a or imp.target.startswith(a + ".") for a in allowed)
    ]
    assert bad == []


def test_only_the_sync_jobs_and_test_connection_import_the_knox_client():
    """The KME client is called from the sync jobs and Test connection only (design.md 3)."""
    bad = []
    for imp in imports():
        if not (imp.target == "kmeweb.knox" or imp.target.startswith("kmeweb.knox.")):
            continue
        if imp.importer.startswith("kmeweb.knox"):
            continue  # the client itself, and the simulator's own modules
        if imp.target.startswith("kmeweb.knox.simulator") and imp.importer == "kmeweb.cli":
            continue  # the simulator's own commands
        if imp.importer.startswith(KNOX_CLIENT_IMPORTERS):
            continue
        bad.append(f"{imp.path.relative_to(ROOT)}:{imp.line} {imp.importer} imports {imp.target}")
    assert bad == []


def test_simulator_shares_no_code_with_the_client():
    """The simulator is a second reading of kme-api.md: it imports nothing of the client."""
    bad = [
        f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.target}"
        for imp in imports()
        if imp.importer.startswith("kmeweb.knox.simulator")
        and imp.target.startswith("kmeweb.")
        and not imp.target.startswith("kmeweb.knox.simulator")
    ]
    assert bad == []


def test_imports_sit_at_the_top_of_their_modules():
    """No import inside a function to dodge a cycle (the factory and the CLI aside)."""
    bad = [
        f"{imp.path.relative_to(ROOT)}:{imp.line} {imp.target}"
        for imp in imports()
        if imp.in_function and imp.importer not in COMPOSITION
    ]
    assert bad == []


ROUTE_DECORATORS = {"get", "post", "put", "patch", "delete", "route"}


def views() -> Iterator[tuple[Path, ast.FunctionDef]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call)
                and isinstance(d.func, ast.Attribute)
                and d.func.attr in ROUTE_DECORATORS
                for d in node.decorator_list
            ):
                yield path, node


def test_views_are_thin():
    """Every view is at most 30 lines from its def to its last line: rules live in services."""
    assert len(list(views())) > 50  # the walk finds the console's views
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path, node in views()
        if node.end_lineno - node.lineno + 1 > 30
    ]
    assert long == []


# Names of the columns (and of the variables and filters that hold their values) whose values
# are a status or a kind.
STATUS_FIELDS = {
    "kind",
    "status",
    "state",
    "sync_state",
    "approval",
    "auth_mode",
    "event",
    "registration",
}
# Functions whose `kind` argument is a ChangeKind or OperationKind.
KIND_TAKERS = {
    "start_operation",
    "create_operation",
    "record_device_change",
    "record_profile_change",
    "_push_profile",
    "_add_change",
    "_batched_changes",
}


def enum_values() -> set[str]:
    """Every value of a status or kind enum (a Choice or StrEnum in a models.py)."""
    values = set()
    for path in PACKAGE.rglob("models.py"):
        for cls in ast.walk(ast.parse(path.read_text())):
            if not isinstance(cls, ast.ClassDef) or not any(
                getattr(base, "id", "") in {"Choice", "StrEnum"} for base in cls.bases
            ):
                continue
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign):
                    value = stmt.value.elts[0] if isinstance(stmt.value, ast.Tuple) else stmt.value
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        values.add(value.value)
    return values


def _field(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return None


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant)]
    return []


def bare_literals(tree: ast.AST, values: set[str]) -> Iterator[tuple[int, str]]:
    """(line, value) of each status or kind written as a bare string: compared with, assigned
    to or passed as a status or kind."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if {_field(side) for side in sides} & STATUS_FIELDS:
                for side in sides:
                    yield from ((node.lineno, s) for s in _strings(side) if s in values)
        elif isinstance(node, ast.Assign) and any(_field(t) in STATUS_FIELDS for t in node.targets):
            yield from ((node.lineno, s) for s in _strings(node.value) if s in values)
        elif isinstance(node, ast.keyword) and node.arg in STATUS_FIELDS:
            yield from ((node.value.lineno, s) for s in _strings(node.value) if s in values)
        elif isinstance(node, ast.Call) and _field(node.func) in KIND_TAKERS:
            for arg in node.args:
                yield from ((node.lineno, s) for s in _strings(arg) if s in values)


TEMPLATE_LITERAL = re.compile(
    r"\b(?:kind|status|state|sync_state|approval)\s*(?:==|!=|\bnot in\b|\bin\b)\s*"
    r"\(?\s*['\"]([\w.]+)['\"]"
)


def test_no_bare_status_or_kind_literal():
    """Statuses and kinds are compared and stored as their enum members (kmeweb/*/models.py),
    in code and in templates, so that a renamed value cannot leave a comparison behind."""
    values = enum_values()
    assert {"kme_default", "device.move", "pending", "synced"} <= values  # the walk found them
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "models.py" or "knox" in path.relative_to(PACKAGE).parts:
            continue  # the enums themselves; the KME client and simulator speak KME's words
        for line, value in bare_literals(ast.parse(path.read_text()), values):
            found.append(f"{path.relative_to(ROOT)}:{line} {value!r}")
    for path in sorted((ROOT / "templates").rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in TEMPLATE_LITERAL.finditer(line):
                if match.group(1) in values:
                    found.append(f"{path.relative_to(ROOT)}:{number} {match.group(1)!r}")
    assert found == []
