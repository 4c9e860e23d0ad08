"""Files of a build: CodeBuild's path patterns (`**/*`, `dir/*`, `a/b.jar`, a directory),
and copying trees (cp -a when available)."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from conveyor.adapters import process


def glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    p = pattern
    while i < len(p):
        if p.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif p.startswith("**", i):
            out += ".*"
            i += 2
        elif p[i] == "*":
            out += "[^/]*"
            i += 1
        elif p[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(p[i])
            i += 1
    return re.compile(out + r"\Z")


def static_prefix(pattern: str) -> str:
    parts = []
    for part in pattern.strip("/").split("/"):
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return "/".join(parts)


def _walk(base: Path, follow: bool = False) -> Iterable[str]:
    for root, dirs, files in os.walk(base, followlinks=follow):
        rel = os.path.relpath(root, base)
        rel = "" if rel == "." else rel + "/"
        for d in dirs:
            if os.path.islink(os.path.join(root, d)):
                yield rel + d
        for f in files:
            yield rel + f


def match_files(base: Path, pattern: str) -> list[str]:
    """Files under `base` matching a CodeBuild location (`**/*`, `dir/*`, `a/b.jar`, a dir)."""
    pattern = pattern.strip()
    if pattern.startswith("./"):
        pattern = pattern[2:]
    prefix = static_prefix(pattern)
    if prefix == pattern.strip("/"):  # no glob: a file or a whole directory
        target = base / prefix
        if target.is_file() or target.is_symlink() and not target.is_dir():
            return [prefix]
        if target.is_dir():
            return [f"{prefix}/{f}" for f in _walk(target)]
        return []
    start = base / prefix if prefix else base
    if not start.is_dir():
        return []
    rx = glob_regex(pattern.strip("/"))
    found = []
    for f in _walk(start):
        rel = f"{prefix}/{f}" if prefix else f
        if rx.match(rel):
            found.append(rel)
    return found


def missing_dir(bases: Sequence[Path], pattern: str) -> str:
    """' (directory X does not exist)' when a pattern's fixed leading directory is missing."""
    pattern = pattern.strip().removeprefix("./")
    prefix = static_prefix(pattern)
    if not prefix or os.path.isabs(pattern):
        return ""
    if prefix == pattern.strip("/"):
        prefix = os.path.dirname(prefix)  # a plain file name: its directory
        if not prefix:
            return ""
    for base in bases:
        if not (base / prefix).is_dir():
            return f" (directory {prefix} does not exist in {base})"
    return ""


def excluded(rel: str, pattern: str) -> bool:
    return bool(glob_regex(pattern.strip("/")).match(rel)) or fnmatch.fnmatch(rel, pattern)


def copy_tree(src: Path, dest: Path) -> None:
    """Copy a directory tree preserving symlinks (cp -a when available: much faster)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("cp"):
        dest.mkdir(parents=True, exist_ok=True)
        r = process.call(["cp", "-a", "--reflink=auto", f"{src}/.", str(dest)])
        if r.returncode == 0:
            return
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
