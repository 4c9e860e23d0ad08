"""CodePipeline V2 push filters: does a push (branch or tag, changed files) match a trigger?

Globs as CodePipeline documents them: `*` matches within a path segment, `**` across
segments; excludes win over includes; an empty include list matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from conveyor.model.pipeline import GitFilter, Trigger


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out = out[:-2] + "(?:.*/)?"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def glob_match(pattern: str, value: str) -> bool:
    return bool(_glob(pattern).match(value))


def filter_match(f: GitFilter, values: Sequence[str], *, empty_includes_all: bool = True) -> bool:
    """True when some value is included and not excluded."""
    for v in values:
        if any(glob_match(p, v) for p in f.excludes):
            continue
        if (not f.includes and empty_includes_all) or any(glob_match(p, v) for p in f.includes):
            return True
    return False


def matches(trigger: Trigger, *, branch: str | None, tag: str | None, files: Sequence[str]) -> bool:
    if tag is not None:
        if not trigger.tags.includes and not trigger.tags.excludes:
            return False
        return filter_match(trigger.tags, [tag])
    if branch is None:
        return False
    if not filter_match(trigger.branches, [branch]):
        return False
    if trigger.file_paths.includes or trigger.file_paths.excludes:
        return filter_match(trigger.file_paths, files)
    return True
