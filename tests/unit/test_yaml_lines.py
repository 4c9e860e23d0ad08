"""The fast YAML reading (spec/yamlnodes.py) gives ruamel's values and line map, or defers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from conveyor.spec import yamlfile, yamlnodes

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(
    p
    for pattern in ("examples/**/*.yaml", "examples/**/*.yml", "tests/unit/data/*.yaml")
    for p in ROOT.glob(pattern)
    if "node_modules" not in p.parts
)
TRICKY = (
    "a: yes\nb: on\nc: 010\nd: 0o10\ne: 0x1f\nf: 1_000\ng: 1.5\nh: .inf\ni: 2001-12-14\n"
    "j: ~\nk:\nl: 1e3\nm: +1\nn: '-'\np: |\n  x\n  y\nq: >\n  folded\n  text\n\n  para\n"
    'r: "q\\tx"\ns: [1, two, {three: 3}]\nTrue: key\n2: int key\nnull: nk\n'
    "anchor: &b {x: 1, y: [1, 2]}\nalias: *b\nlist:\n  - *b\n  - name: z\n"
)


def ruamel(text: str) -> tuple[Any, dict[Any, int]]:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    lines = yamlfile.Lines("x")
    return yamlfile._plain(y.load(text), (), lines), lines.index


@pytest.mark.parametrize(
    "text", [p.read_text() for p in FILES] + [TRICKY], ids=[p.name for p in FILES] + ["tricky"]
)
def test_values_and_lines_are_ruamels(text: str) -> None:
    """The same data (types included) and the same line for every path as ruamel gives."""
    fast = yamlnodes.load_with_lines(text)
    assert fast is not None
    want = ruamel(text)
    assert fast[0] == want[0] and repr(fast[0]) == repr(want[0])
    assert fast[1] == want[1]


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key
        "True: x\n1: y\n",  # the same key for ruamel
        "base: &b {x: 1}\nm:\n  <<: *b\n",  # merge key
        "v: !!str 12\n",  # explicit tag
        "v: !Ref x\n",  # local tag
        "%YAML 1.1\n---\nv: yes\n",  # another YAML version
        "a: [1, 2\n",  # a syntax error
    ],
)
def test_what_it_does_not_reproduce_is_left_to_ruamel(text: str) -> None:
    """Documents it could get wrong (or must word an error for) are read by ruamel instead."""
    assert yamlnodes.load_with_lines(text) is None
