"""What a build returns: phases with status and duration, exported variables, artifacts,
reports, warnings, and the child builds of a batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.model.report import Report

Log = Callable[[str], None]
PRIMARY = "primary"


@dataclass
class PhaseResult:
    name: str
    status: str  # SUCCEEDED | FAILED | SKIPPED | STOPPED | TIMED_OUT
    duration: float = 0.0
    message: str = ""
    attempts: int = 0


@dataclass
class CollectedArtifact:
    identifier: str  # 'primary' or the secondary artifact identifier
    name: str | None
    path: Path
    files: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    build_id: str
    succeeded: bool = False
    message: str = ""
    phases: list[PhaseResult] = field(default_factory=list)
    exported: dict[str, str] = field(default_factory=dict)
    artifacts: list[CollectedArtifact] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    workdir: Path | None = None
    log_path: Path | None = None
    stopped: str = ""  # '' | 'cancelled' | 'timed out'
    batch: list[tuple[str, BuildResult]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (what `conveyor buildspec run --json` prints)."""
        return {
            "buildId": self.build_id,
            "succeeded": self.succeeded,
            "message": self.message,
            "phases": [
                {
                    "name": p.name,
                    "status": p.status,
                    "durationSeconds": round(p.duration, 3),
                    "attempts": p.attempts,
                    "message": p.message,
                }
                for p in self.phases
            ],
            "exportedVariables": dict(self.exported),
            "artifacts": [
                {"identifier": a.identifier, "name": a.name, "path": str(a.path), "files": a.files}
                for a in self.artifacts
            ],
            "reports": [
                {
                    "name": r.name,
                    "format": r.format,
                    "total": r.total,
                    "passed": r.passed,
                    "failed": r.failed,
                    "skipped": r.skipped,
                    "errors": r.errors,
                    "durationSeconds": r.duration_seconds,
                    "failures": r.failures,
                    "files": r.files,
                }
                for r in self.reports
            ],
            "warnings": list(self.warnings),
            "workdir": str(self.workdir) if self.workdir else None,
            "log": str(self.log_path) if self.log_path else None,
            "batch": [{"identifier": i, **b.summary()} for i, b in self.batch],
        }


class BuildStopped(Exception):
    """Internal: the build was cancelled or ran out of time."""
