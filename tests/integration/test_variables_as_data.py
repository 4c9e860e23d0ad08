"""`#{...}` values reach commands as data: real engine runs, real git, real shells (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Mallory",
    "GIT_AUTHOR_EMAIL": "m@example.com",
    "GIT_COMMITTER_NAME": "Mallory",
    "GIT_COMMITTER_EMAIL": "m@example.com",
}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVEYOR_HOME": str(home), "NO_COLOR": "1", "CONVEYOR_LEASE_SECONDS": "3"}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_start_variable_in_a_shell_command_runs_nothing(tmp_path: Path) -> None:
    """`echo "#{variables.NOTE}"` with NOTE=`$(id > f)` prints the text and writes no file."""
    marker = tmp_path / "f"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: inject\n"
        "variables: [{name: NOTE, defaultValue: hello}]\n"
        "stages:\n"
        "  - name: S\n"
        "    actions:\n"
        "      - name: Echo\n"
        "        type: shell\n"
        "        config:\n"
        "          commands:\n"
        '            - echo "#{variables.NOTE}"\n'
        "            - \"echo '#{variables.NOTE}' #{variables.NOTE}\"\n"
    )
    payload = f"$(id > {marker})`id > {marker}`'; id > {marker}; '\""
    res = cli(tmp_path / "home", "run", str(pipeline), "--var", f"NOTE={payload}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not marker.exists()
    log = next((tmp_path / "home" / "logs").rglob("*.log")).read_text()
    assert log.splitlines()[:2] == [payload, f"{payload} {payload}"]


def test_commit_message_in_a_shell_command_runs_nothing(tmp_path: Path) -> None:
    """A commit message read through `#{SourceApp.CommitMessage}` is printed, never run."""
    marker = tmp_path / "f"
    repo = tmp_path / "app"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "index.txt").write_text("x")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=GIT_ENV)
    message = f"fix $(id > {marker})"
    subprocess.run(["git", "commit", "-qm", message], cwd=repo, check=True, env=GIT_ENV)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: inject-commit\n"
        "stages:\n"
        "  - name: Source\n"
        "    actions:\n"
        "      - {name: App, type: source.git, outputs: [app], namespace: SourceApp,\n"
        f"         config: {{repository: {json.dumps(str(repo))}, branch: main}}}}\n"
        "  - name: Check\n"
        "    actions:\n"
        "      - name: Echo\n"
        "        type: shell\n"
        "        inputs: [app]\n"
        "        config: {commands: ['echo \"#{SourceApp.CommitMessage}\"']}\n"
        "      - name: Build\n"
        "        type: build\n"
        "        inputs: [app]\n"
        "        config:\n"
        "          env: {MSG: '#{SourceApp.CommitMessage}'}\n"
        "          buildspec: |\n"
        "            version: 0.2\n"
        "            phases:\n"
        "              build:\n"
        "                commands:\n"
        '                  - echo #{SourceApp.CommitMessage} "$MSG"\n'
    )
    res = cli(tmp_path / "home", "run", str(pipeline), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not marker.exists()
    logs = {p.name: p.read_text() for p in (tmp_path / "home" / "logs").rglob("*.log")}
    echo = next(t for n, t in logs.items() if n.startswith("Check.Echo"))
    assert echo.splitlines()[0] == message
    build = next(t for n, t in logs.items() if n.startswith("Check.Build"))
    assert f"{message} {message}" in build.splitlines()


def test_allowed_pattern_refuses_a_value_at_start(tmp_path: Path) -> None:
    """A start value outside the variable's allowedPattern is refused with one line, exit 2."""
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: pattern\n"
        "variables: [{name: VERSION, defaultValue: 1.0.0, allowedPattern: '[0-9.]+'}]\n"
        "stages:\n"
        "  - name: S\n"
        "    actions:\n"
        "      - {name: Echo, type: shell, config: {commands: ['echo #{variables.VERSION}']}}\n"
    )
    res = cli(tmp_path / "home", "run", str(pipeline), "--var", "VERSION=1.0; id")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: variable VERSION='1.0; id' does not match its allowedPattern '[0-9.]+'; "
        "give a value that matches it"
    ]
    assert cli(tmp_path / "home", "run", str(pipeline), "--var", "VERSION=2.1").returncode == 0


def test_validate_warns_about_a_reference_in_a_command_and_checks_the_pattern(
    tmp_path: Path,
) -> None:
    """`validate` shows the safe form of a command with `#{...}` and locates a bad allowedPattern."""
    pipeline = tmp_path / "p.yaml"
    text = (
        "name: warn\n"
        "variables:\n"
        "  - {name: NOTE, defaultValue: hi}\n"
        "stages:\n"
        "  - name: S\n"
        "    actions:\n"
        "      - name: Echo\n"
        "        type: shell\n"
        "        config:\n"
        "          commands:\n"
        '            - echo "#{variables.NOTE}"\n'
    )
    pipeline.write_text(text)
    res = cli(tmp_path / "home", "validate", str(pipeline))
    assert res.returncode == 0
    assert (
        f"{pipeline}:11: warning: action 'Echo': #{{variables.NOTE}} inside a command is passed "
        "as data in an environment variable, never spliced; the safe form Conveyor runs is: "
        'echo "${CONVEYOR_VAR_VARIABLES_NOTE}"'
    ) in res.stderr
    pipeline.write_text(
        text.replace("defaultValue: hi}", "defaultValue: hi, allowedPattern: '(['}")
    )
    res = cli(tmp_path / "home", "validate", str(pipeline))
    assert res.returncode == 2
    assert f"{pipeline}:3: variable 'NOTE': allowedPattern '(['" in res.stderr


@pytest.mark.parametrize("repo", ["--upload-pack=touch {marker}", "ext::sh -c touch% {marker}"])
def test_repository_from_a_variable_runs_nothing(tmp_path: Path, repo: str) -> None:
    """A repository URL given as a start variable cannot make git run a command."""
    marker = tmp_path / "f"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: repo\n"
        "variables: [{name: REPO, defaultValue: app}]\n"
        "stages:\n"
        "  - name: S\n"
        "    actions:\n"
        "      - {name: App, type: source.git, outputs: [o],\n"
        "         config: {repository: '#{variables.REPO}', branch: main}}\n"
    )
    res = cli(
        tmp_path / "home", "run", str(pipeline), "--var", f"REPO={repo.format(marker=marker)}"
    )
    assert res.returncode == 1
    assert not marker.exists()
