"""A real Conveyor server for tests: uvicorn on a free loopback port, a SQLite store in a tmp
dir, an engine loop in a thread, users of every role, and a source repository made with real
git. Shared by the API and browser tests (not a fixture module: imported explicitly)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import Field

from conveyor import bootstrap
from conveyor.actions.base import ActionContext, ActionResult
from conveyor.actions.shell import Shell, ShellConfig
from conveyor.adapters.reports import parse_report
from conveyor.server.app import create_app
from conveyor.server.auth import Users, ensure_admin
from conveyor.settings import Settings
from conveyor.store.records import ApprovalRecord

# a 2x2 red PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)
IMAGE_DIGEST = "sha256:" + "ab" * 32

UNIT_XML = """<?xml version="1.0"?>
<testsuite name="webapp unit" tests="3" failures="0" errors="0" skipped="0" time="0.4">
  <testcase classname="TaskStore" name="adds a task" time="0.1"/>
  <testcase classname="TaskStore" name="removes a task" time="0.1"/>
  <testcase classname="DueDate" name="formats a date" time="0.2"/>
</testsuite>
"""
E2E_XML = """<?xml version="1.0"?>
<testsuite name="webapp e2e" tests="3" failures="1" errors="0" skipped="1" time="2.5">
  <testcase classname="test_tasks" name="test_home_page_lists_tasks" time="1.0"/>
  <testcase classname="test_tasks" name="test_add_task" time="1.5">
    <failure message="expected 4 rows, saw 3">AssertionError: expected 4 rows, saw 3</failure>
  </testcase>
  <testcase classname="test_tasks" name="test_export" time="0"><skipped/></testcase>
</testsuite>
"""


class JUnitShellConfig(ShellConfig):
    reports: dict[str, str] = Field(default_factory=dict)  # report group -> file, relative to cwd


class JUnitShell(Shell):
    """A `shell` action that also reads JUnit XML files as test reports (as a build action
    does); registered in the tests' registry as `test.junit`."""

    type_name = "test.junit"
    Config = JUnitShellConfig

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = JUnitShellConfig.model_validate(dict(ctx.config))
        shell_cfg = {k: v for k, v in dict(ctx.config).items() if k != "reports"}
        ctx.config = shell_cfg
        result = super().run(ctx)
        cwd = next(iter(ctx.inputs.values()), None) or ctx.workdir / "src"
        for group, rel in cfg.reports.items():
            report, problems = parse_report(
                group,
                "JUNITXML",
                [cwd / rel],
                display=lambda p: p.relative_to(ctx.workdir).as_posix(),
            )
            for p in problems:
                ctx.log.write(p + "\n")
            result.reports.append(report)
        return result


def git(*args: str, cwd: Path) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="Dev One",
        GIT_COMMITTER_NAME="Dev One",
        GIT_AUTHOR_EMAIL="dev@example.com",
        GIT_COMMITTER_EMAIL="dev@example.com",
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(state_dir: Path, name: str = "webapp", commits: int = 3) -> list[str]:
    """A bare repo in the state dir (where `source.git` finds a bare name) with N commits."""
    bare = state_dir / "repos" / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "--bare", "-q", "-b", "main", str(bare), cwd=state_dir)
    work = state_dir / f"{name}-work"
    git("clone", "-q", str(bare), str(work), cwd=state_dir)
    git("checkout", "-q", "-b", "main", cwd=work)
    (work / "ci").mkdir()
    (work / "ci" / "unit.xml").write_text(UNIT_XML)
    (work / "ci" / "e2e.xml").write_text(E2E_XML)
    (work / "ci" / "home.png").write_bytes(PNG)
    shas = []
    for i in range(commits):
        (work / "version.txt").write_text(f"{i}\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"change number {i}", cwd=work)
        shas.append(git("rev-parse", "HEAD", cwd=work))
    git("push", "-q", "origin", "main", cwd=work)
    return shas


def release_pipeline(
    name: str = "webapp",
    *,
    self_approval: bool = True,
    mode: str = "SUPERSEDED",
    link: str | None = None,
) -> dict[str, Any]:
    """The seed's shape, small: source, unit tests + 'image', e2e tests, approval, prod.
    `link`: the approval's externalEntityLink (a start variable LINK is declared)."""
    approval_config: dict[str, Any] = {
        "customData": "Read the e2e report, then approve the release to prod",
        "digest": "#{Build.ImageDigest}",
        "timeout": "1h",
        "selfApproval": self_approval,
    }
    variables = []
    if link is not None:
        approval_config["externalEntityLink"] = link
        variables = [{"name": "LINK", "defaultValue": "https://example.com/change"}]
    return {
        "name": name,
        "executionMode": mode,
        "variables": variables,
        "stages": [
            {
                "name": "Source",
                "actions": [
                    {
                        "name": "App",
                        "type": "source.git",
                        "outputs": ["app_src"],
                        "namespace": "SourceApp",
                        "config": {"repository": "webapp"},
                    }
                ],
            },
            {
                "name": "Build",
                "actions": [
                    {
                        "name": "UnitTestsAndImage",
                        "type": "test.junit",
                        "inputs": ["app_src"],
                        "namespace": "Build",
                        "config": {
                            "commands": [
                                "echo building",
                                f"echo '::set-output ImageDigest={IMAGE_DIGEST}'",
                            ],
                            "reports": {"unit": "ci/unit.xml"},
                        },
                    }
                ],
            },
            {
                "name": "RunSeleniumTest",
                "actions": [
                    {
                        "name": "SeleniumE2E",
                        "type": "test.junit",
                        "inputs": ["app_src"],
                        "outputs": ["e2e_report"],
                        "config": {
                            "commands": [
                                "echo running e2e",
                                'mkdir -p "$CONVEYOR_OUTPUT_E2E_REPORT/screenshots"',
                                'cp ci/home.png "$CONVEYOR_OUTPUT_E2E_REPORT/screenshots/home.png"',
                                'echo "<html><body><h1>e2e report</h1></body></html>"'
                                ' > "$CONVEYOR_OUTPUT_E2E_REPORT/report.html"',
                            ],
                            "reports": {"e2e-selenium": "ci/e2e.xml"},
                        },
                    }
                ],
            },
            {
                "name": "ProdApproval",
                "actions": [
                    {
                        "name": "DeployToProdApproval",
                        "type": "approval",
                        "config": approval_config,
                    }
                ],
            },
            {
                "name": "DeployProd",
                "actions": [
                    {
                        "name": "Promote",
                        "type": "shell",
                        "environment": "prod",
                        "config": {"commands": ["echo promoting #{Build.ImageDigest}"]},
                    }
                ],
            },
        ],
    }


def small_pipeline(name: str, commands: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "executionMode": "PARALLEL",
        "stages": [
            {
                "name": "Run",
                "actions": [{"name": "Work", "type": "shell", "config": {"commands": commands}}],
            },
            {
                "name": "After",
                "actions": [
                    {"name": "Done", "type": "shell", "config": {"commands": ["echo done"]}}
                ],
            },
        ],
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, poll: float = 0.05) -> Any:
    """Poll until `check()` is truthy; fail with `what` after `timeout` (a bound, not a timing)."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    settings: Settings
    app: bootstrap.App
    url: str
    tokens: dict[str, str]
    shas: list[str]
    stop: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def store(self) -> Any:
        return self.app.store

    def client(self, role: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {}
        tok = token or (self.tokens[role] if role else None)
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def start(self, pipeline: str, actor: str = "operator") -> str:
        with self.client(actor) as c:
            r = c.post(f"/api/v1/pipelines/{pipeline}/executions")
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def status(self, ex_id: str) -> str:
        return str(self.store.execution(ex_id).status)

    def wait_status(self, ex_id: str, *statuses: str, timeout: float = 60) -> str:
        return str(
            wait_for(
                f"execution {ex_id} to be {'/'.join(statuses)} (it is {self.status(ex_id)})",
                lambda: self.status(ex_id) if self.status(ex_id) in statuses else None,
                timeout,
            )
        )

    def wait_approval(self, ex_id: str, timeout: float = 60) -> ApprovalRecord:
        def pending() -> Any:
            rows = [a for a in self.store.approval_records(ex_id) if a.status == "Pending"]
            return rows[-1] if rows else None

        found: ApprovalRecord = wait_for(
            f"execution {ex_id} to reach its approval", pending, timeout
        )
        return found


@contextmanager
def running(
    tmp: Path, pipelines: dict[str, dict[str, Any]] | None = None, **settings_overrides: Any
) -> Iterator[Env]:
    """Store + engine thread + uvicorn server, all real, in `tmp` (always on loopback;
    `settings_overrides`, e.g. server_host, change only what the app is told)."""
    state = tmp / "state"
    state.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "database_url": f"sqlite:///{state / 'conveyor.db'}",
        "poll_seconds": 0.05,
        "heartbeat_seconds": 0.5,
        **settings_overrides,
    }
    settings = Settings(state_dir=state, **options)
    app = bootstrap.build(settings)
    app.registry.register("test.junit", JUnitShell)
    shas = make_repo(state)
    for name, definition in (pipelines or {"webapp": release_pipeline()}).items():
        app.store.save_pipeline(name, definition, None)
    admin = ensure_admin(app.store)
    assert admin is not None
    users = Users(app.store)
    tokens = {
        "admin": admin,
        "viewer": users.add("viewer", "viewer"),
        "operator": users.add("operator", "operator"),
        "approver": users.add("approver", "approver", "approver@example.com"),
        "approver2": users.add("approver2", "approver", "approver2@example.com"),
        "author": users.add("dev", "approver", "dev@example.com"),
    }
    stop = threading.Event()
    engine = app.engine()
    engine_thread = threading.Thread(
        target=engine.run, args=(stop,), name="test-engine", daemon=True
    )
    engine_thread.start()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, app.store, engine=engine),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    server_thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    server_thread.start()
    wait_for("the server to start", lambda: server.started, timeout=20)
    env = Env(
        settings,
        app,
        f"http://127.0.0.1:{port}",
        tokens,
        shas,
        stop,
        [engine_thread, server_thread],
    )
    try:
        yield env
    finally:
        server.should_exit = True
        stop.set()
        server_thread.join(timeout=10)
        engine_thread.join(timeout=10)
        engine.shutdown(wait=False)
        app.store.close()
