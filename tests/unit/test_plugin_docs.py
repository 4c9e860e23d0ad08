"""docs/plugins.md, run: its third-party action type installed through a real entry point,
its tests run with `conveyor.testing` exactly as the page shows them."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(DOC.read_text()) if kind == lang]


def _files() -> dict[str, str]:
    """The page's Python blocks that start with `# PATH`, by path."""
    out = {}
    for body in _blocks("python"):
        first, _, rest = body.partition("\n")
        if first.startswith("# ") and first.endswith(".py"):
            out[first[2:]] = rest
    return out


def _test_names() -> list[str]:
    return re.findall(r"^def (test_\w+)\(", _files()["tests/test_digest_check.py"], re.M)


def _install(site: Path) -> None:
    """What `pip install` of the page's package does: its module and its entry points."""
    for rel, text in _files().items():
        if not rel.startswith("tests/"):
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).write_text(text)
            (site / rel).parent.joinpath("__init__.py").touch()
    [toml] = _blocks("toml")
    groups = tomllib.loads(toml)["project"]["entry-points"]
    info = site / "acme_conveyor-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-conveyor\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
            for group, eps in groups.items()
        )
    )


@pytest.fixture
def doc_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Callable[..., Any]]]:
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    monkeypatch.syspath_prepend(str(site))
    path = tmp_path / "test_digest_check.py"
    path.write_text(_files()["tests/test_digest_check.py"])
    spec = importlib.util.spec_from_file_location("acme_doc_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield {name: getattr(module, name) for name in _test_names()}
    for name in [m for m in sys.modules if m.startswith("acme_conveyor")]:
        del sys.modules[name]


@pytest.mark.parametrize("name", _test_names())
def test_the_plugin_page_runs_as_written(
    name: str, doc_tests: dict[str, Callable[..., Any]], tmp_path: Path
) -> None:
    """Each test on docs/plugins.md passes against its action type installed by entry point."""
    work = tmp_path / "work"
    work.mkdir()
    doc_tests[name](work)


def test_the_plugin_page_shows_a_module_an_entry_point_and_three_tests() -> None:
    """The page keeps what the test above runs (a page that lost its blocks would pass it)."""
    assert set(_files()) == {"acme_conveyor/digest_check.py", "tests/test_digest_check.py"}
    assert len(_test_names()) == 3
