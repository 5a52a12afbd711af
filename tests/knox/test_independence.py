"""The simulator shares no code with the client (design.md 3): one misreading of kme-api.md
must not be able to hide in both."""

from __future__ import annotations

import ast
from pathlib import Path

import kmeweb.knox.simulator

SIM_DIR = Path(kmeweb.knox.simulator.__file__).parent
SIM_PACKAGE = "kmeweb.knox.simulator"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in one simulator module."""
    package = SIM_PACKAGE
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the simulator package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from kmeweb.knox import client` imports a submodule by name
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def _client_imports(path: Path) -> list[str]:
    bad = []
    for line, module in _imported_modules(path):
        inside_knox = module == "kmeweb.knox" or module.startswith("kmeweb.knox.")
        inside_sim = module == SIM_PACKAGE or module.startswith(SIM_PACKAGE + ".")
        if (inside_knox and not inside_sim and module != "kmeweb.knox") or module in (
            "kmeweb",
            "kmeweb.knox",
        ):
            bad.append(f"{path.name}:{line} imports {module}")
    return bad


def test_no_simulator_module_imports_the_client():
    modules = sorted(SIM_DIR.glob("**/*.py"))
    assert len(modules) >= 8  # the walk really found the package
    bad = [problem for path in modules for problem in _client_imports(path)]
    assert bad == []


def test_the_check_catches_each_way_of_importing_the_client(tmp_path):
    for source in (
        "from kmeweb.knox import errors\n",
        "from kmeweb.knox.crypto import load_public_key\n",
        "import kmeweb.knox.endpoints\n",
        "from ..config import KnoxConfig\n",
        "from kmeweb import knox\n",
    ):
        module = tmp_path / "probe.py"
        module.write_text(source)
        assert _client_imports(module), source
    module = tmp_path / "probe.py"
    module.write_text("from kmeweb.knox.simulator.keys import verify\nfrom . import ids\n")
    assert _client_imports(module) == []
