"""`conveyor buildspec validate|run` through click, with a real shell behind `run`."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conveyor.cli.buildspec import register
from tests.conftest import CORPUS

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> click.Group:
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))

    @click.group()
    def root() -> None:
        """Test root."""

    register(root)
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_validate_ok_and_problems(cli: click.Group, tmp_path: Path) -> None:
    """validate exits 0 for a good file and 2 with every problem as FILE:LINE: message."""
    good = write(tmp_path / "good.yml", "version: 0.2\nphases:\n  build:\n    commands: [make]\n")
    res = CliRunner().invoke(cli, ["buildspec", "validate", str(good)])
    assert res.exit_code == 0, res.output
    assert "valid buildspec 0.2" in res.output
    bad = write(
        tmp_path / "bad.yml",
        "version: 0.2\nphases:\n  biuld:\n    commands: [make]\n"
        "  post_build:\n    on-failure: MAYBE\n    commands: [x]\n",
    )
    res = CliRunner().invoke(cli, ["buildspec", "validate", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:3: unknown phase 'biuld' (did you mean 'build'?)" in res.output
    assert f"{bad}:6: phases.post_build.on-failure 'MAYBE'" in res.output


@pytest.mark.corpus
def test_validate_windows_corpus_file(cli: click.Group) -> None:
    """The corpus' PowerShell buildspec fails validation as needing Windows."""
    path = CORPUS / "buildspecs" / "aws__aws-toolkit-jetbrains__buildspec_windowsTests.yml"
    res = CliRunner().invoke(cli, ["buildspec", "validate", str(path)])
    assert res.exit_code == 2 and "needs a Windows build environment" in res.output


def test_run_prints_summary_and_exit_code(cli: click.Group, tmp_path: Path) -> None:
    """run streams the log, then a summary of phases, variables, artifacts and reports."""
    src = tmp_path / "app"
    write(src / "main.txt", "hello\n")
    write(tmp_path / "lib" / "lib.txt", "lib\n")
    spec = write(
        tmp_path / "buildspec.yml",
        """
version: 0.2
env:
  exported-variables: [RESULT]
phases:
  build:
    commands:
      - cat main.txt $CODEBUILD_SRC_DIR_lib/lib.txt > out.txt
      - export RESULT="$MODE-ok"
      - mkdir -p reports
      - printf '<testsuite name="s"><testcase name="t"/></testsuite>' > reports/r.xml
artifacts:
  files: [out.txt]
reports:
  unit:
    files: [reports/*.xml]
""",
    )
    res = CliRunner().invoke(
        cli,
        [
            "buildspec",
            "run",
            str(spec),
            "--source",
            str(src),
            "--source",
            f"lib={tmp_path / 'lib'}",
            "--env",
            "MODE=fast",
            "--workdir",
            str(tmp_path / "work"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Running command cat main.txt" in res.output
    assert "RESULT=fast-ok" in res.output
    assert "BUILD" in res.output and "SUCCEEDED" in res.output
    assert "unit [JUNITXML]: 1 tests, 1 passed, 0 failed" in res.output
    assert (tmp_path / "work" / "artifacts" / "primary" / "out.txt").read_text() == "hello\nlib\n"


def test_run_json_and_failure_exit(cli: click.Group, tmp_path: Path) -> None:
    """--json prints the summary as JSON; a failed build exits 1."""
    src = tmp_path / "app"
    src.mkdir()
    spec = write(
        tmp_path / "bs.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n      - exit 4\n",
    )
    res = CliRunner().invoke(cli, ["buildspec", "run", str(spec), "--source", str(src), "--json"])
    assert res.exit_code == 1
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert summary["succeeded"] is False
    assert summary["phases"][0] == {
        "name": "BUILD",
        "status": "FAILED",
        "durationSeconds": summary["phases"][0]["durationSeconds"],
        "attempts": 1,
        "message": "phase BUILD: command 'exit 4' exited with status 4",
    }
    assert Path(summary["log"]).is_file()


def test_run_invalid_buildspec_exit_2(cli: click.Group, tmp_path: Path) -> None:
    """run refuses an invalid buildspec with its problems and exit code 2."""
    src = tmp_path / "app"
    src.mkdir()
    spec = write(tmp_path / "bs.yml", "version: 0.2\nphase:\n  build:\n    commands: [x]\n")
    res = CliRunner().invoke(cli, ["buildspec", "run", str(spec), "--source", str(src)])
    assert res.exit_code == 2
    assert "did you mean 'phases'" in res.output
