"""Why a command failed, in one line: its most telling output line, or the missing command."""

from __future__ import annotations

import re

_NOT_FOUND = re.compile(r"(?:^|: )([^\s:]+): (?:command )?not found\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERRORISH = (
    re.compile(r"\bTS\d{3,5}:.*"),  # a TypeScript compiler error says it best
    re.compile(r"(?:\berror\b|\bERROR\b|ERR!|\bError:|\bfatal:|\bdenied\b|refused|not found).*"),
)


def first_error(lines: list[str], limit: int = 160) -> str:
    """The line of a failed command's output that most likely says why (ANSI colours removed)."""
    clean = [_ANSI.sub("", line).strip() for line in lines]
    for pattern in _ERRORISH:
        for line in clean:
            m = pattern.search(line)
            if m:
                text = line if pattern is _ERRORISH[1] else m.group(0)
                text = text.strip("✘[] ")
                return text if len(text) <= limit else text[: limit - 1] + "…"
    return ""


def short(text: str, limit: int = 80) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit and "\n" not in text.strip() else first[: limit - 3] + "..."


def missing_command(lines: list[str]) -> str | None:
    for line in reversed(lines):
        m = _NOT_FOUND.search(line.rstrip())
        if m:
            return m.group(1)
    return None
