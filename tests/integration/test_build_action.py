"""The `build` action type run with a real ActionContext (no engine): inputs, outputs, results."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from conveyor.actions.base import ActionContext
from conveyor.actions.build import Build
from conveyor.bootstrap import build_services
from conveyor.errors import ActionFailed
from conveyor.model.pipeline import Action, Pipeline, Stage
from conveyor.settings import Settings

pytestmark = pytest.mark.integration


class ListLog:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.masked: list[str] = []

    def write(self, text: str) -> None:
        self.text.append(text)

    def mask(self, secret: str) -> None:
        self.masked.append(secret)


def context(
    tmp_path: Path, config: dict[str, object], inputs: dict[str, Path], outputs: tuple[str, ...]
) -> tuple[ActionContext, ListLog]:
    action = Action(
        name="Build", type="build", inputs=tuple(inputs), outputs=outputs, config=config
    )
    pipeline = Pipeline(name="demo", stages=(Stage(name="Build", actions=(action,)),))
    out_dirs = {}
    for name in outputs:
        out_dirs[name] = tmp_path / "out" / name
        out_dirs[name].mkdir(parents=True)
    settings = Settings(state_dir=tmp_path / "state", database_url="sqlite://", secrets_file=None)
    log = ListLog()
    ctx = ActionContext(
        execution_id="e1",
        pipeline=pipeline,
        stage="Build",
        action=action,
        attempt=1,
        config=config,
        inputs=inputs,
        outputs=out_dirs,
        workdir=tmp_path / "attempt",
        log=log,
        cancel=threading.Event(),
        deadline=None,
        state_dir=tmp_path / "state",
        services=dataclasses.replace(build_services(settings), secrets={"/p/x": "hush-42"}),
    )
    return ctx, log


BUILDSPEC = """version: 0.2
env:
  parameter-store: {SECRET: /p/x}
  exported-variables: [APP_VERSION]
phases:
  build:
    commands:
      - export APP_VERSION=$(cat VERSION)
      - mkdir -p dist && cp VERSION dist/ && cp $CODEBUILD_SRC_DIR_tests/t.txt dist/
      - echo "secret=$SECRET"
      - printf '<testsuite name="s"><testcase name="ok"/>' > junit.xml
      - printf '<testcase name="bad"><failure message="boom"/></testcase></testsuite>' >> junit.xml
artifacts:
  files: ['dist/**/*']
  secondary-artifacts:
    notes:
      files: [VERSION]
reports:
  unit:
    files: [junit.xml]
"""


def test_build_action_runs_primary_input(tmp_path: Path) -> None:
    """The action runs buildspec.yml of the primary input and fills outputs, variables, reports."""
    app = tmp_path / "in" / "app"
    app.mkdir(parents=True)
    (app / "VERSION").write_text("1.4.2\n")
    (app / "buildspec.yml").write_text(BUILDSPEC)
    tests = tmp_path / "in" / "tests"
    tests.mkdir(parents=True)
    (tests / "t.txt").write_text("t\n")
    ctx, log = context(
        tmp_path, {"env": {"MODE": "ci"}}, {"app": app, "tests": tests}, ("bundle", "notes")
    )
    result = Build().run(ctx)
    assert result.succeeded, result.message
    assert result.variables == {"APP_VERSION": "1.4.2"}
    assert sorted(p.name for p in (tmp_path / "out" / "bundle" / "dist").iterdir()) == [
        "VERSION",
        "t.txt",
    ]
    assert (tmp_path / "out" / "notes" / "VERSION").is_file()
    (report,) = result.reports
    assert (report.total, report.failed, report.files) == (2, 1, ["reports/unit/junit.xml"])
    assert (ctx.workdir / "reports" / "unit" / "junit.xml").is_file()
    assert "hush-42" in log.masked and "secret=***" in "".join(log.text)


def test_build_action_failure_is_action_failed(tmp_path: Path) -> None:
    """A failing command gives a failed result with reason ActionFailed and the reports kept."""
    app = tmp_path / "in" / "app"
    app.mkdir(parents=True)
    inline = "version: 0.2\nphases:\n  build:\n    commands:\n      - make all\n"
    ctx, _ = context(tmp_path, {"buildspec": inline}, {"app": app}, ())
    result = Build().run(ctx)
    assert not result.succeeded and result.reason == "ActionFailed"
    assert "command not found: 'make'" in result.message or "exited with status" in result.message


def test_build_action_missing_buildspec(tmp_path: Path) -> None:
    """A missing buildspec.yml is ActionFailed suggesting the misspelled file that is there."""
    app = tmp_path / "in" / "app"
    app.mkdir(parents=True)
    (app / "builspec.yml").write_text("version: 0.2\n")
    ctx, _ = context(tmp_path, {}, {"app": app}, ())
    with pytest.raises(ActionFailed) as info:
        Build().run(ctx)
    assert "did you mean 'builspec.yml'" in str(info.value)


def test_build_action_environment_image_host_runs_on_the_host(tmp_path: Path) -> None:
    """`environment: {image: host}` is a host build: CODEBUILD_BUILD_IMAGE=host, the venv on PATH."""
    import sys

    src = tmp_path / "src"
    src.mkdir()
    (src / "buildspec.yml").write_text(
        "version: 0.2\nenv:\n  exported-variables: [IMG, PY]\nphases:\n  build:\n    commands:\n"
        "      - export IMG=$CODEBUILD_BUILD_IMAGE PY=$(command -v python)\n"
    )
    ctx, log = context(tmp_path, {"environment": {"image": "host"}}, {"src": src}, ())
    result = Build().run(ctx)
    assert result.succeeded, "".join(log.text)
    assert result.variables["IMG"] == "host"
    assert Path(result.variables["PY"]).parent == Path(sys.executable).parent
