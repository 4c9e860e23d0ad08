"""A test report group's summary (what CodeBuild shows for a report group)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    """A test report group's summary, as CodeBuild shows it."""

    name: str
    format: str
    total: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    duration_seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)  # {suite,name,message}
    files: list[str] = field(default_factory=list)  # paths relative to the attempt's workdir
