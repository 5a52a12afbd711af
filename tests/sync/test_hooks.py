"""The pull's uploads hook, and the arrow it keeps: sync imports no more of the integration room
than its tables (integration -> sync -> knox)."""

from __future__ import annotations

import ast
from pathlib import Path

from flask import Flask

from kmeweb.sync import hooks

SYNC = Path(__file__).resolve().parents[2] / "kmeweb" / "sync"


def test_the_pull_calls_the_registered_hook_with_the_upload_ids(app, session):
    calls = []

    def hook(s, upload_ids):
        calls.append((s, list(upload_ids)))
        return {"uploads_routed": len(upload_ids)}

    hooks.register_uploads_hook(app, hook)
    assert hooks.run_uploads_hook(session, [3, 5]) == {"uploads_routed": 2}
    assert calls == [(session, [3, 5])]
    assert hooks.run_uploads_hook(session, []) == {}  # nothing waiting: not called
    assert len(calls) == 1


def test_without_a_hook_the_uploads_stay_as_pulled():
    with Flask(__name__).app_context():
        assert hooks.run_uploads_hook(None, [1]) == {}  # type: ignore[arg-type]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _reaches_into_integration(name: str) -> bool:
    if not name.startswith("kmeweb.integration."):
        return False
    return not (
        name == "kmeweb.integration.models" or name.startswith("kmeweb.integration.models.")
    )


def test_sync_imports_only_the_integration_tables():
    for path in sorted(SYNC.glob("*.py")):
        reaching = sorted(n for n in _imports(path) if _reaches_into_integration(n))
        assert not reaching, f"kmeweb/sync/{path.name} imports {reaching}"
