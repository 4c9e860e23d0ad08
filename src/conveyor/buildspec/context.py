"""What the parts of one build share: the spec, the shell, the log, the result, the paths."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.buildspec.result import BuildResult, Log
from conveyor.buildspec.shell import ShellSession
from conveyor.buildspec.spec import Buildspec
from conveyor.model.masking import Masker


@dataclass
class BuildContext:
    spec: Buildspec
    session: ShellSession
    log: Log
    result: BuildResult
    workdir: Path
    src: Path
    masker: Masker
    is_container: bool
    artifact_dirs: Mapping[str, Path] = field(default_factory=dict)
    report_dir: Path | None = None
    cache_root: Path | None = None

    def note(self, text: str) -> None:
        """A line of the runner's own in the build log (CodeBuild's `[Container]` prefix)."""
        self.log(f"[Container] {text}\n")

    def bases(self, base_directory: str | None) -> list[Path]:
        """The directories a `base-directory` names (it may use variables and globs)."""
        if not base_directory:
            return [self.src]
        expanded = self.session.expand(base_directory) if "$" in base_directory else base_directory
        root = Path(expanded) if os.path.isabs(expanded) else self.src / expanded
        if any(ch in expanded for ch in "*?["):
            parent = root.parent
            if not parent.is_dir():
                return []
            return sorted(p for p in parent.glob(root.name) if p.is_dir())
        return [root]
