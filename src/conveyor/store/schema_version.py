"""The schema revision the code expects, read from the migration files without importing
Alembic (which costs a tenth of a second or more on every command)."""

from __future__ import annotations

import re
from pathlib import Path

VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(?:['\"]([^'\"]+)['\"]|None)\s*$", re.M)


def head_revision() -> str | None:
    """The newest migration's id; None when unsure (a merge, an unusual file): ask Alembic."""
    revisions, parents = set(), set()
    for f in VERSIONS.glob("*.py"):
        text = f.read_text()
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev is None or down is None:
            return None
        revisions.add(rev[1])
        if down[1]:
            parents.add(down[1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
