"""Durations as pipeline files write them: 90, "90", "90s", "15m", "2h", "7d"."""

from __future__ import annotations

import re


def parse_duration(value: int | float | str | None) -> int | None:
    """Seconds from 90, "90", "90s", "15m", "2h", "7d"."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    mt = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value))
    if not mt:
        raise ValueError(f"'{value}' is not a duration (use seconds, or 30s, 15m, 2h, 7d)")
    n, unit = int(mt.group(1)), mt.group(2) or "s"
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
