"""Git sources and push triggers with the real git binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


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


GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


def commit(work: Path, files: dict[str, str], msg: str) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    sh("git", "add", "-A", cwd=work, env=GIT_ENV)
    sh("git", "commit", "-qm", msg, cwd=work, env=GIT_ENV)
    return sh("git", "rev-parse", "HEAD", cwd=work).strip()


PIPELINE = """
name: pushme
triggers:
  - source: App
    branches: {includes: [main]}
    filePaths: {excludes: ["**/*.md"]}
stages:
  - name: Source
    actions:
      - {name: App, type: source.git, outputs: [app], namespace: App, config: {repository: app}}
      - {name: Tests, type: source.git, outputs: [tests], namespace: Tests, config: {repository: tests}}
  - name: Check
    actions:
      - name: check
        type: shell
        inputs: [app, tests]
        config: {commands: ["test -f index.txt", "test '#{App.AuthorEmail}' = ada@example.com"]}
"""


def test_push_starts_the_pipeline_and_records_both_revisions(tmp_path: Path) -> None:
    """A push to a `conveyor repo create` repo starts the matching pipeline; both sources are recorded."""
    home = tmp_path / "home"
    for name in ("app", "tests"):
        assert cli(home, "repo", "create", name).returncode == 0
    tests_work = tmp_path / "tests-work"
    sh("git", "clone", "-q", str(home / "repos" / "tests.git"), str(tests_work))
    tests_commit = commit(tests_work, {"test_x.py": "x"}, "tests")
    sh("git", "push", "-q", "origin", "HEAD:main", cwd=tests_work)
    f = tmp_path / "p.yaml"
    f.write_text(PIPELINE)
    assert cli(home, "pipeline", "apply", str(f)).returncode == 0

    work = tmp_path / "work"
    sh("git", "clone", "-q", str(home / "repos" / "app.git"), str(work))
    app_commit = commit(work, {"index.txt": "hello"}, "first")
    push = subprocess.run(
        ["git", "push", "origin", "HEAD:main"],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "CONVEYOR_LEASE_SECONDS": "3"},
    )
    assert "started pushme execution" in push.stderr, push.stderr

    from conveyor.store.db import Store

    s = Store(f"sqlite:///{home / 'conveyor.db'}")
    end = time.time() + 60
    while time.time() < end and (
        not s.list_executions() or s.list_executions()[0].status == "InProgress"
    ):
        time.sleep(0.2)
    ex = s.list_executions()[0]
    assert ex.status == "Succeeded", ex.message
    assert ex.trigger["type"] == "Push" and ex.trigger["new"] == app_commit
    assert ex.revisions["App"]["CommitId"] == app_commit
    assert ex.revisions["Tests"]["CommitId"] == tests_commit
    assert ex.revisions["App"]["CommitMessage"] == "first"

    # a push touching only docs does not match the file-path filter
    commit(work, {"README.md": "docs"}, "docs only")
    push = subprocess.run(
        ["git", "push", "origin", "HEAD:main"], cwd=work, capture_output=True, text=True
    )
    assert "started" not in push.stderr
    assert len(s.list_executions()) == 1


def test_missing_branch_is_named_with_the_branches_that_exist(tmp_path: Path) -> None:
    """A branch that does not exist fails the source action with a did-you-mean and the list."""
    home = tmp_path / "home"
    cli(home, "repo", "create", "app")
    work = tmp_path / "work"
    sh("git", "clone", "-q", str(home / "repos" / "app.git"), str(work))
    commit(work, {"a": "a"}, "a")
    sh("git", "push", "-q", "origin", "HEAD:main", cwd=work)
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: b\nstages:\n  - name: S\n    actions:\n"
        "      - {name: App, type: source.git, outputs: [o], config: {repository: app, branch: mian}}\n"
    )
    res = cli(home, "run", str(f), "--json")
    assert res.returncode == 1
    desc = json.loads(res.stdout)
    action = desc["stages"][0]["actions"][0]
    assert action["reason"] == "ToolError"
    assert (
        "branch 'mian' does not exist" in action["message"]
        and "did you mean 'main'" in action["message"]
    )


def test_git_url_that_does_not_exist(app: Any, tmp_path: Path) -> None:
    """A path that is not a repository is a clear ToolError naming it."""
    from tests.conftest import run_pipeline

    ex = run_pipeline(
        app,
        f"name: u\nstages:\n  - name: S\n    actions:\n"
        f"      - {{name: A, type: source.git, outputs: [o], config: {{repository: {tmp_path}/nope}}}}\n",
        tmp_path,
    )
    a = app.store.attempts_for(ex)[0]
    assert a.reason == "ToolError" and "does not exist" in a.message


def test_poller_starts_the_pipeline_when_a_remote_branch_moves(app: Any, tmp_path: Path) -> None:
    """A source given by URL/path is polled: the first poll records the head, a new commit starts a run."""
    from conveyor.engine.triggers import Poller
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    remote = tmp_path / "remote.git"
    sh("git", "init", "-q", "--bare", "-b", "main", str(remote))
    work = tmp_path / "w"
    sh("git", "clone", "-q", str(remote), str(work))
    commit(work, {"a.txt": "1"}, "one")
    sh("git", "push", "-q", "origin", "HEAD:main", cwd=work)
    f = tmp_path / "p.yaml"
    f.write_text(
        f"name: polled\ntriggers: [{{source: Src, branches: {{includes: [main]}}}}]\nstages:\n"
        f"  - name: S\n    actions:\n"
        f"      - {{name: Src, type: source.git, outputs: [o], config: {{repository: {remote}}}}}\n"
    )
    p = load_pipeline(f, app.registry.catalogue())
    doc, _ = load(f)
    app.store.save_pipeline(p.name, doc, str(f))
    poller = Poller(app, interval=0.1)
    assert poller.poll_once() == []
    assert poller.poll_once() == []
    new = commit(work, {"a.txt": "2"}, "two")
    sh("git", "push", "-q", "origin", "HEAD:main", cwd=work)
    started = poller.poll_once()
    assert [name for _, name in started] == ["polled"]
    ex = app.store.execution(started[0][0])
    assert ex.trigger["type"] == "Poll" and ex.trigger["new"] == new
