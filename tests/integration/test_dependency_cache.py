"""A keyed buildspec cache (issue 18.2): restored on a hit, written once per key, never stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.spec import parse_buildspec

pytestmark = pytest.mark.integration

SPEC = """\
version: 0.2
phases:
  install:
    commands:
      - if [ -d deps ]; then echo "restored=$(cat deps/made | tr "\\n" " ")"; else mkdir deps && cat lock > deps/made; fi
      - echo extra >> deps/made
cache:
  key: deps-$(sha256sum lock | cut -c1-64)
  paths: ["deps/**/*"]
"""


def build(tmp: Path, n: int, lock: str) -> str:
    src = tmp / f"src{n}"
    src.mkdir()
    (src / "lock").write_text(lock)
    lines: list[str] = []
    r = run_buildspec(
        parse_buildspec(SPEC),
        {"src": src},
        None,
        tmp / f"w{n}",
        lines.append,
        copy_sources=False,
        cache_dir=tmp / "cache",
    )
    assert r.succeeded, "".join(lines)
    return "".join(lines)


def test_a_keyed_cache_is_restored_on_the_same_lock_and_never_rewritten(tmp_path: Path) -> None:
    """Same lock hash: the tree is restored as first saved; another lock: a fresh entry."""
    assert "restored=v1" not in build(tmp_path, 1, "v1\n")
    second = build(tmp_path, 2, "v1\n")
    assert "restored=v1 extra " in second  # restored as saved by the first build...
    assert "kept the existing entry" in second
    assert "restored=v1 extra " in build(tmp_path, 3, "v1\n")  # ...and not rewritten by the second
    assert "restored=v" not in build(tmp_path, 4, "v2\n")  # a changed lock file misses
