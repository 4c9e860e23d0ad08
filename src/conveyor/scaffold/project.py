"""`conveyor init --app DIR [--tests DIR]`: the files that take an existing project through
Conveyor, computed in full, checked, then written all at once.

Into the app: buildspec.yml, Containerfile, k8s/deployment.yaml, k8s/service.yaml,
pipeline.yaml; into the tests dir: buildspec.yml. With `apply`, the JUnit reporter set-up
(see conveyor.scaffold.junit) too; without it, that set-up is only shown as a diff.

Nothing is overwritten without `force`: an existing file stops everything before anything is
written (one line naming every such file, exit 2). Writing goes to temporary files beside the
targets, then each is moved into place, so an error leaves no half-written file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.errors import ConfigError
from conveyor.scaffold import junit, templates
from conveyor.scaffold.detect import AppInfo, TestsInfo, _name, detect_app, detect_tests


@dataclass(frozen=True)
class Scaffold:
    """What init found and the files it would write."""

    app: AppInfo
    tests: TestsInfo | None
    name: str
    files: dict[Path, str]  # generated files
    reporter: list[junit.Change] = field(default_factory=list)  # the JUnit set-up


def plan(
    app_dir: Path,
    tests_dir: Path | None = None,
    *,
    name: str | None = None,
    project: str | None = None,
    ports: templates.Ports | None = None,
    lock: bool = True,
) -> Scaffold:
    """Detect the app and the suite and compute every file's text; writes nothing."""
    app = detect_app(Path(app_dir), project)
    tests = detect_tests(Path(tests_dir)) if tests_dir is not None else None
    pname = _name(name) if name else app.name
    if name and pname != name:
        raise ConfigError(
            f"--name {name!r}: use lower-case letters, digits and '-' (e.g. {pname!r}): it "
            "names the image repository, the git repositories and the namespaces"
        )
    root = app.root
    files = {
        root / "buildspec.yml": templates.buildspec(app),
        root / "Containerfile": templates.containerfile(app),
        root / "k8s" / "deployment.yaml": templates.deployment(app),
        root / "k8s" / "service.yaml": templates.service(app),
        root / "pipeline.yaml": templates.pipeline(app, tests, pname, ports or templates.Ports()),
    }
    if tests is not None:
        files[tests.root / "buildspec.yml"] = templates.tests_buildspec(tests)
    return Scaffold(app, tests, pname, files, junit.reporter_changes(app, lock=lock))


def existing(scaffold: Scaffold) -> list[Path]:
    """The files that exist with other content than init's (the same content is no conflict)."""
    out = []
    for path, text in scaffold.files.items():
        if path.exists():
            try:
                same = path.read_text(encoding="utf-8") == text
            except (OSError, UnicodeDecodeError):
                same = False
            if not same:
                out.append(path)
    return out


def write(scaffold: Scaffold, *, force: bool = False, apply: bool = False) -> list[Path]:
    """Write the generated files (and with `apply` the reporter set-up); returns the paths."""
    taken = existing(scaffold)
    if taken and not force:
        raise ConfigError(
            f"{', '.join(str(p) for p in taken)} already exist{'s' if len(taken) == 1 else ''}: "
            "nothing was written; use --force to overwrite"
        )
    changes = dict(scaffold.files)
    if apply:
        changes.update({c.path: c.new for c in scaffold.reporter})
    atomic_write(changes)
    return list(changes)


def atomic_write(files: dict[Path, str]) -> None:
    """Every file's text to a temporary file beside it, then all moved into place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o777)
            else:
                os.chmod(tmp, 0o644)
            staged.append((Path(tmp), path))
    except OSError as e:
        for staged_tmp, _ in staged:
            staged_tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {e.filename}: {e.strerror}; nothing was written") from None
    for staged_tmp, target in staged:
        os.replace(staged_tmp, target)
