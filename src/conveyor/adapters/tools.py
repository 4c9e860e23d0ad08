"""Project-local tools: the Node that `scripts/setup.sh` brings into `.tools/node` when the
machine's is missing or older than the example's `engines` (plain Debian 12 has Node 18).

Everything that runs node (the build action, the demo, doctor) puts `tool_path()` first on
PATH, so it uses that Node when it is there and the machine's otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path


def tools_dir() -> Path | None:
    """`.tools` of the checkout Conveyor runs from (or CONVEYOR_TOOLS), if it exists."""
    env = os.environ.get("CONVEYOR_TOOLS")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").exists():
            candidate = parent / ".tools"
            return candidate if candidate.is_dir() else None
    return None


def tool_bin_dirs() -> list[str]:
    """The bin directories of project-local tools that exist (first on PATH)."""
    base = tools_dir()
    if base is None:
        return []
    return [str(d) for d in (base / "node" / "bin",) if d.is_dir()]


def tool_path(path: str | None = None) -> str:
    """PATH (default: this process's) with the project-local tools first."""
    current = os.environ.get("PATH", "") if path is None else path
    extra = [d for d in tool_bin_dirs() if d not in current.split(os.pathsep)]
    return os.pathsep.join([*extra, current]) if extra else current
