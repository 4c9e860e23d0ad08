"""CodePipeline-style push filters: branches, tags, file paths, include/exclude globs."""

from __future__ import annotations

from conveyor.model.pipeline import GitFilter, Trigger
from conveyor.model.triggers import glob_match, matches


def test_globs_follow_codepipeline() -> None:
    """`*` stays within a path segment, `**` crosses segments."""
    assert glob_match("release/*", "release/1.2")
    assert not glob_match("release/*", "release/1/2")
    assert glob_match("src/**", "src/app/main.ts")
    assert glob_match("**/*.md", "docs/a/b.md")
    assert glob_match("**/*.md", "README.md")


def test_branch_and_file_path_filters() -> None:
    """A push matches when its branch is included and a changed file is included, not excluded."""
    t = Trigger(
        "Src",
        branches=GitFilter(("main", "release/*"), ("release/old",)),
        file_paths=GitFilter(("src/**",), ("**/*.md",)),
    )
    assert matches(t, branch="main", tag=None, files=["src/app.ts"])
    assert not matches(t, branch="feature/x", tag=None, files=["src/app.ts"])
    assert not matches(t, branch="release/old", tag=None, files=["src/app.ts"])
    assert not matches(t, branch="main", tag=None, files=["src/README.md"])
    assert not matches(t, branch="main", tag=None, files=["docs/x.txt"])


def test_tags_match_only_tag_triggers() -> None:
    """A tag push starts only triggers that list tags."""
    assert not matches(Trigger("Src"), branch=None, tag="v1", files=[])
    assert matches(Trigger("Src", tags=GitFilter(("v*",))), branch=None, tag="v1.0", files=[])
