"""Reading a JSON file someone wrote: its data, or one line naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.adapters.jsonfile import read_json


class _Bad(Exception):
    pass


def test_a_json_file_is_its_data(tmp_path: Path) -> None:
    """A valid file is returned as parsed data."""
    f = tmp_path / "r.json"
    f.write_text('[{"name": "feature"}]')
    assert read_json(f, _Bad) == [{"name": "feature"}]


def test_bad_json_is_the_callers_error_with_line_column_and_fix(tmp_path: Path) -> None:
    """Broken JSON raises the caller's error class with file:line, the column and the fix."""
    f = tmp_path / "r.json"
    f.write_text('[\n  {"a": 1,}\n]')
    with pytest.raises(_Bad, match=r"r\.json:2: not valid JSON at column 11 \(.*\); fix it$"):
        read_json(f, _Bad, "; fix it")


@pytest.mark.parametrize("content", [None, b"\xff\xfe{}"], ids=["missing", "not-utf8"])
def test_an_unreadable_file_says_why(tmp_path: Path, content: bytes | None) -> None:
    """A missing or non-UTF-8 file raises the caller's error saying it cannot be read."""
    f = tmp_path / "r.json"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(_Bad, match=r"r\.json: cannot be read \(.+\)$"):
        read_json(f, _Bad)
