"""`conveyor buildspec validate|run` through click, with a real shell behind `run`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


def _git_source(path: Path) -> str:
    """A directory that is a git work tree with one commit; its commit id."""
    import subprocess

    write(path / "f.txt", "x\n")

    def g(*a: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *a],
            cwd=path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    g("init", "-q", "-b", "main")
    g("add", "-A")
    g("commit", "-qm", "one")
    return g("rev-parse", "HEAD")


def _run(cli: click.Group, *args: str) -> Any:
    return CliRunner().invoke(cli, ["buildspec", "run", *args])


PRINT_VERSION = """version: 0.2
phases:
  build:
    commands:
      - echo "RSV=[$CODEBUILD_RESOLVED_SOURCE_VERSION] SV=[$CODEBUILD_SOURCE_VERSION]"
"""


def test_run_sets_the_source_version_from_git_and_env_overrides_it(
    cli: click.Group, tmp_path: Path
) -> None:
    """D1: a git source gives CODEBUILD_(RESOLVED_)SOURCE_VERSION its commit; --env wins."""
    commit = _git_source(tmp_path / "app")
    spec = write(tmp_path / "bs.yml", PRINT_VERSION)
    res = _run(cli, str(spec), "--source", str(tmp_path / "app"))
    assert res.exit_code == 0, res.output
    assert f"RSV=[{commit}] SV=[{commit}]" in res.output
    res = _run(
        cli,
        str(spec),
        "--source",
        str(tmp_path / "app"),
        "--env",
        "CODEBUILD_RESOLVED_SOURCE_VERSION=abc",
        "--env",
        "CODEBUILD_SOURCE_VERSION=refs/heads/main",
    )
    assert res.exit_code == 0, res.output
    assert "RSV=[abc] SV=[refs/heads/main]" in res.output


def test_source_under_sh_advises_bash_or_dot_and_validate_warns(
    cli: click.Group, tmp_path: Path
) -> None:
    """D2: `source` under sh fails naming `env.shell: bash` or `.`, not "install it"."""
    write(tmp_path / "app" / "env.sh", "X=1\n")
    spec = write(
        tmp_path / "bs.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n      - source ./env.sh\n",
    )
    res = _run(cli, str(spec), "--source", str(tmp_path / "app"))
    assert res.exit_code == 1
    assert "`source` is not a command of sh" in res.output
    assert "env.shell: bash" in res.output and "`. FILE`" in res.output
    assert "install it in the install phase" not in res.output
    res = CliRunner().invoke(cli, ["buildspec", "validate", str(spec)])
    assert res.exit_code == 0
    assert f"{spec}:5: warning: this buildspec runs under sh: `source` is bash-only" in res.output


def test_validate_warns_about_version_0_1_with_the_line(cli: click.Group, tmp_path: Path) -> None:
    """D3: `buildspec validate` warns that 0.1 runs each command in its own shell."""
    spec = write(tmp_path / "bs.yml", "version: 0.1\nphases:\n  build:\n    commands: [cd a]\n")
    res = CliRunner().invoke(cli, ["buildspec", "validate", str(spec)])
    assert res.exit_code == 0
    assert f"{spec}:1: warning: buildspec version 0.1 runs each command in its own shell" in (
        res.output
    )
    res = CliRunner().invoke(cli, ["buildspec", "validate", "--json", str(spec)])
    assert json.loads(res.stdout)["warnings"][0]["line"] == 1


def test_an_unnamed_second_source_is_refused(cli: click.Group, tmp_path: Path) -> None:
    """D4: `--source DIR` twice without a name is a usage error naming NAME=DIR."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    spec = write(tmp_path / "bs.yml", PRINT_VERSION)
    res = _run(cli, str(spec), "--source", str(tmp_path / "a"), "--source", str(tmp_path / "b"))
    assert res.exit_code == 2
    assert "a secondary source needs a name: --source NAME=" in res.output


def test_an_unset_secondary_source_dir_is_reported_by_name(
    cli: click.Group, tmp_path: Path
) -> None:
    """D4: `cd $CODEBUILD_SRC_DIR_source2` with no such source fails naming the variable."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    spec = write(
        tmp_path / "bs.yml",
        "version: 0.2\nphases:\n  build:\n    commands:\n"
        "      - cd $CODEBUILD_SRC_DIR_source2\n      - echo REACHED\n",
    )
    res = _run(
        cli, str(spec), "--source", str(tmp_path / "a"), "--source", f"tests={tmp_path / 'b'}"
    )
    assert res.exit_code == 1
    assert "$CODEBUILD_SRC_DIR_source2 is not set" in res.output
    assert "secondary sources: tests" in res.output
    assert "REACHED" not in res.output.replace("echo REACHED", "")


def test_a_missing_artifact_or_report_directory_is_named(cli: click.Group, tmp_path: Path) -> None:
    """The artifact and report steps name the directory that does not exist."""
    (tmp_path / "a").mkdir()
    spec = write(
        tmp_path / "bs.yml",
        "version: 0.2\nphases:\n  build:\n    commands: [echo hi]\n"
        "reports:\n  unit:\n    files: ['**/*.xml']\n    base-directory: test-results\n"
        "artifacts:\n  files: ['dist/webapp/browser/**/*']\n",
    )
    res = _run(cli, str(spec), "--source", str(tmp_path / "a"), "--json")
    assert res.exit_code == 1
    summary = json.loads(res.stdout)
    assert "directory dist/webapp/browser does not exist" in summary["message"]
    assert any("base-directory" in w and "does not exist" in w for w in summary["warnings"])


def test_run_json_prints_errors_as_json(cli: click.Group, tmp_path: Path) -> None:
    """`buildspec run --json`: a bad buildspec or flag is a JSON error with its exit code."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bad = write(tmp_path / "bad.yml", "version: 0.2\nphases:\n  biuld:\n    commands: [x]\n")
    res = _run(cli, str(bad), "--source", str(tmp_path / "a"), "--json")
    assert res.exit_code == 2
    err = json.loads(res.stdout)["error"]
    assert err["code"] == "invalid" and "unknown phase 'biuld'" in err["message"]
    good = write(tmp_path / "bs.yml", PRINT_VERSION)
    res = _run(
        cli, str(good), "--source", str(tmp_path / "a"), "--source", str(tmp_path / "b"), "--json"
    )
    assert res.exit_code == 2
    assert "needs a name" in json.loads(res.stdout)["error"]["message"]
    res = _run(cli, str(good), "--json")
    assert res.exit_code == 2
    assert "Missing option '--source'" in json.loads(res.stdout)["error"]["message"]
    res = _run(cli, str(tmp_path / "none.yml"), "--source", str(tmp_path / "a"), "--json")
    assert res.exit_code == 2 and "not found" in json.loads(res.stdout)["error"]["message"]


PRINT_PLATFORM = """version: 0.2
phases:
  build:
    commands:
      - for v in REGISTRY_HOST REPOSITORY_URI CONTAINER_RUNTIME CONTAINERS_CONF CONTAINERS_REGISTRIES_CONF IMAGE_TAG; do eval "echo \\"VAR $v=\\$$v\\""; done
"""


def test_environment_gives_the_build_exactly_the_build_actions_variables(
    cli: click.Group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --environment test` with the platform up gets the variables the build action gets;
    with the platform down it is a clear exit 3."""
    from conveyor.actions.build import build_environment
    from conveyor.platform.daemon import free_port
    from conveyor.platform.local import LocalPlatform
    from conveyor.settings import Settings
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load
    from conveyor.store.db import Store

    monkeypatch.setenv("CONVEYOR_REGISTRY_TEST_PORT", str(free_port()))
    monkeypatch.setenv("CONVEYOR_REGISTRY_PROD_PORT", str(free_port()))
    settings = Settings.from_env()
    pfile = write(
        tmp_path / "pipeline.yaml",
        "name: web\nenvironments:\n  test: {registry: test, repository: webapp}\n"
        "  prod: {registry: prod, repository: webapp}\n"
        "stages:\n  - name: S\n    actions:\n"
        "      - {name: s, type: source.git, outputs: [o], config: {repository: x}}\n",
    )
    store = Store(settings.database_url)
    store.save_pipeline("web", load(pfile)[0], str(pfile))
    store.close()
    commit = _git_source(tmp_path / "app")
    spec = write(tmp_path / "bs.yml", PRINT_PLATFORM)
    args = [str(spec), "--source", str(tmp_path / "app"), "--environment", "test"]

    down = _run(cli, *args)
    assert down.exit_code == 3, down.output
    assert "conveyor up" in down.output and "Traceback" not in down.output

    platform = LocalPlatform(settings)
    platform.up()
    try:
        res = _run(cli, *args)
    finally:
        platform.down()
    assert res.exit_code == 0, res.output
    got = dict(
        line.split(" ", 1)[1].split("=", 1)
        for line in res.output.splitlines()
        if line.startswith("VAR ")
    )
    want = build_environment(
        LocalPlatform(settings), load_pipeline(pfile), environment="test", revision=commit
    )
    assert got["IMAGE_TAG"] == commit
    assert got["REPOSITORY_URI"] == f"127.0.0.1:{os.environ['CONVEYOR_REGISTRY_TEST_PORT']}/webapp"
    for k in got:
        assert got[k] == want[k], k
    assert len(got) == 6 and all(got.values()), got
