"""The model does no I/O: importing it loads no subprocess, SQL, HTTP, AWS or Kubernetes module;
and the entry points (cli/, server/) reach the engine and the store only through the service."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def test_model_imports_no_io_modules() -> None:
    """Importing every conveyor.model module pulls in none of the I/O libraries."""
    code = (
        "import sys, pkgutil, importlib, conveyor.model as m\n"
        "for info in pkgutil.iter_modules(m.__path__): importlib.import_module('conveyor.model.' + info.name)\n"
        "bad = ['subprocess', 'sqlalchemy', 'httpx', 'boto3', 'botocore', 'kubernetes', 'socket', 'sqlite3']\n"
        "print(','.join(b for b in bad if b in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


SRC = Path(__file__).resolve().parents[2] / "src" / "conveyor"


def _runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in `path` outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
    return found


def test_entry_points_reach_the_engine_and_store_only_through_the_service() -> None:
    """cli/ and server/ import neither conveyor.store nor conveyor.engine (types aside), the
    CLI imports no server module but the app it serves, and the server no CLI module."""
    bad = []
    for area, also_banned in (("cli", ("conveyor.server",)), ("server", ("conveyor.cli",))):
        for path in sorted((SRC / area).glob("*.py")):
            rel = f"{area}/{path.name}"
            for line, module in _runtime_imports(path):
                banned = ("conveyor.store", "conveyor.engine", *also_banned)
                if rel == "cli/server.py" and module == "conveyor.server.app":
                    continue  # `conveyor server` serves the app
                if any(module == b or module.startswith(b + ".") for b in banned):
                    bad.append(f"{rel}:{line}: imports {module}")
    assert not bad, "go through conveyor.service instead:\n" + "\n".join(bad)


def test_the_service_imports_no_entry_point() -> None:
    """service/ imports neither conveyor.server nor conveyor.cli, not even lazily: the layers
    point one way (entry points -> service -> engine/store)."""
    bad = []
    for path in sorted((SRC / "service").glob("*.py")):
        for line, module in _runtime_imports(path):
            if any(
                module == b or module.startswith(b + ".")
                for b in ("conveyor.server", "conveyor.cli")
            ):
                bad.append(f"service/{path.name}:{line}: imports {module}")
    assert not bad, "\n".join(bad)


def test_dashboard_pages_call_the_service_not_the_api() -> None:
    """server/pages.py calls no function of server/api.py (it may share its constants)."""
    tree = ast.parse((SRC / "server" / "pages.py").read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "conveyor.server.api":
            bad += [f"imports {a.name}" for a in node.names if not a.name.isupper()]
        elif isinstance(node, ast.ImportFrom) and node.module == "conveyor.server":
            bad += [f"imports the module {a.name}" for a in node.names if a.name == "api"]
    assert not bad, bad


def test_the_layer_test_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The import scan finds a runtime store import and skips a TYPE_CHECKING one."""
    f = tmp_path / "m.py"
    f.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from conveyor.store.db import Store\n"
        "def f():\n    from conveyor.engine.engine import Engine\n"
    )
    assert [m for _, m in _runtime_imports(f) if m.startswith("conveyor.")] == [
        "conveyor.engine.engine"
    ]


def _store_member_uses(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each use of a store's member in `path`: `x.store.m` or `store.m`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if (isinstance(v, ast.Attribute) and v.attr == "store") or (
            isinstance(v, ast.Name) and v.id == "store"
        ):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


# Handing the store itself to a service function (`queries.describe(app.store, ...)`) is not a
# use: the service is the one that calls its methods. No entry-point module needs more.
STORE_USES_ALLOWED: dict[str, str] = {}  # "area/module.py": the reason it must


def test_entry_points_use_the_store_only_through_the_service() -> None:
    """cli/ and server/ call no method of a store (`app.store.get_execution(...)`), beyond the
    allowed uses listed above; the service does it for them."""
    over = []
    for area in ("cli", "server"):
        for path in sorted((SRC / area).glob("*.py")):
            rel = f"{area}/{path.name}"
            if rel not in STORE_USES_ALLOWED:
                over += [f"{rel}:{line}: {text}" for line, text in _store_member_uses(path)]
    assert not over, "go through conveyor.service instead:\n" + "\n".join(over)


def test_the_store_scan_sees_a_store_call(tmp_path: Path) -> None:
    """The store scan finds `app.store.m(...)` and `store.m`, and not `f(app.store)`."""
    f = tmp_path / "m.py"
    f.write_text("app.store.get_execution(1)\nstore.blobs\nf(app.store)\n")
    assert [t for _, t in _store_member_uses(f)] == ["app.store.get_execution", "store.blobs"]
