"""The example app's Build stage when things go wrong, run by the engine with the real buildspec:
a TypeScript error, a failing unit test, and a push to a registry that is down. Each stops the
pipeline at Build with one line saying why, and keeps the logs and reports."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.store.records import AttemptRecord
from tests.conftest import REPO, run_pipeline

pytestmark = pytest.mark.integration

IGNORE = shutil.ignore_patterns("node_modules", "dist", "reports", ".angular", "busybox")


def app_repo(tmp_path: Path, patch: Callable[[Path], None]) -> Path:
    if not shutil.which("npm") or not shutil.which("podman"):
        pytest.fail("npm and podman are needed (make test installs them)")
    work = tmp_path / "webapp"
    shutil.copytree(REPO / "examples" / "webapp", work, ignore=IGNORE)
    patch(work)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-qm", "broken on purpose"],
    ):
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
    return work


def build_pipeline(repo: Path) -> str:
    return f"""
name: buildfail
environments:
  test: {{registry: "127.0.0.1:1", repository: webapp, driver: podman, port: 18081}}
stages:
  - name: Source
    actions: [{{name: App, type: source.git, outputs: [src], namespace: App, config: {{repository: {repo}}}}}]
  - name: Build
    actions:
      - name: AngularBuildAndCreateDockerImage
        type: build
        inputs: [src]
        outputs: [out]
        config: {{buildspec: buildspec.yml, env: {{IMAGE_TAG: "#{{App.CommitId}}"}}}}
  - name: Deploy
    actions: [{{name: never, type: shell, config: {{commands: ["true"]}}}}]
"""


def run_build(app: Any, tmp_path: Path, patch: Callable[[Path], None]) -> AttemptRecord:
    ex = run_pipeline(app, build_pipeline(app_repo(tmp_path, patch)), tmp_path, timeout=600)
    row = app.store.execution(ex)
    assert row.status == "Failed"
    atts = {a.action: a for a in app.store.attempts_for(ex)}
    assert "never" not in atts
    build = atts["AngularBuildAndCreateDockerImage"]
    assert build.status == "Failed" and "\n" not in build.message
    assert Path(build.log_path).stat().st_size > 0
    return build


def test_typescript_error_fails_the_build(app: Any, tmp_path: Path) -> None:
    """A type error fails the build (`ng test` compiles first); the one-line message quotes it."""

    def patch(w: Path) -> None:
        f = w / "src" / "app" / "app.ts"
        f.write_text(f.read_text() + "\nexport const broken: number = 'not a number';\n")

    build = run_build(app, tmp_path, patch)
    assert build.reason == "ActionFailed"
    assert "TS2322: Type 'string' is not assignable to type 'number'" in build.message
    assert "TS2322" in Path(build.log_path).read_text()


def test_failing_unit_test_fails_the_build_naming_the_test(app: Any, tmp_path: Path) -> None:
    """A failing unit test is named in the one-line message and in the kept report."""

    def patch(w: Path) -> None:
        f = w / "src" / "app" / "tasks" / "task-filter.spec.ts"
        f.write_text(f.read_text().replace("toHaveLength(3)", "toHaveLength(4)", 1))

    build = run_build(app, tmp_path, patch)
    assert "tests failed in report 'unit-tests'" in build.message
    report = [r for r in build.reports if r["name"] == "unit-tests"][0]
    assert report["failed"] == 1 and report["total"] > 10
    assert "expected" in report["failures"][0]["message"].lower()


def test_push_to_a_registry_that_is_down_fails_the_build(app: Any, tmp_path: Path) -> None:
    """The image builds, the push to a registry nobody listens on fails, and no image is published."""
    build = run_build(app, tmp_path, lambda w: None)
    assert "POST_BUILD" in build.message or "push" in build.message.lower()
    assert "ImageURI" not in (build.variables or {})
    assert "127.0.0.1:1" in Path(build.log_path).read_text()
