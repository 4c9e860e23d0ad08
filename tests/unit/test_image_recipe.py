"""Image recipes: the content hash that tags them, and the messages of a failed build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from conveyor.errors import ConfigError
from conveyor.images.builder import STEP_MARK, failed_step
from conveyor.images.recipe import RECIPES, WEB, CopyIn, Recipe, lookup


def recipe(tmp_path: Path, text: str) -> Recipe:
    (tmp_path / "a.conf").write_text(text)
    return Recipe(
        "t", "test", ("nginx-light",), files=(CopyIn("a.conf", "/a"),), files_dir=tmp_path
    )


def test_hash_follows_the_files_bytes_and_every_field(tmp_path: Path) -> None:
    """The same recipe hashes the same; a file's bytes, a package or a step change the tag."""
    one = recipe(tmp_path, "x")
    tag = one.tag()
    assert tag == recipe(tmp_path, "x").tag() and tag.startswith("localhost/conveyor/t:")
    assert replace(one, packages=("nginx-light", "curl")).tag() != tag
    assert replace(one, steps=("true",)).tag() != tag
    assert recipe(tmp_path, "y").tag() != tag  # rewrites a.conf


def test_a_missing_recipe_file_is_one_clear_line(tmp_path: Path) -> None:
    """A recipe file that is gone names the file and the fix, as a usage error."""
    broken = Recipe("t", "test", (), files=(CopyIn("gone.conf", "/x"),), files_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"gone.conf cannot be read.*git checkout"):
        broken.tag()


def test_unknown_name_lists_the_known_images() -> None:
    """An unknown image name is a usage error listing web and build."""
    assert lookup("web") is WEB and set(RECIPES) == {"web", "build"}
    with pytest.raises(ConfigError, match=r"unknown image 'nginx' \(known: build, web\)"):
        lookup("nginx")


def test_failed_step_names_the_step_and_its_last_line() -> None:
    """mmdebstrap's output is reduced to the recipe step that failed and that step's own line."""
    out = (
        f"I: running hook\nnginx: [emerg] unknown directive\n{STEP_MARK} nginx -t\nE: hook failed\n"
    )
    assert (
        failed_step("mmdebstrap", out)
        == "step 'nginx -t' failed (nginx: [emerg] unknown directive)"
    )
    apt = "I: x\nE: Unable to locate package nginx-heavy\nE: mmdebstrap failed\n"
    assert (
        failed_step("mmdebstrap", apt)
        == "mmdebstrap failed: E: Unable to locate package nginx-heavy"
    )
