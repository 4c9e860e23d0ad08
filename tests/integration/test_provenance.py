"""Which commit runs where: a real run of a two-source pipeline (real git, store, engine, CLI
and API) records the app repo's commit as deployed, whichever source finished first.

The deployment itself is a fake (`FakeDeploy`): what is under test is the engine's record of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.actions.source_git import GitSource
from tests.conftest import run_pipeline

pytestmark = pytest.mark.integration


class FakeDeployConfig(ActionConfig):
    image: str


class FakeDeploy(BaseAction):
    """A fake deployment: reports the image it was given as deployed to `test`."""

    Config = FakeDeployConfig

    def run(self, ctx: ActionContext) -> ActionResult:
        image = str(ctx.config["image"])
        return ActionResult(
            deployment={"environment": "test", "image": image, "digest": "sha256:0"}
        )


def _delayed(seconds: float) -> type[GitSource]:
    class Delayed(GitSource):
        delay: ClassVar[float] = seconds

        def run(self, ctx: ActionContext) -> ActionResult:
            time.sleep(self.delay)
            return super().run(ctx)

    return Delayed


def _repo(state: Path, name: str, message: str, date: str) -> str:
    bare = state / "repos" / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    work = state / f"{name}-work"
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    run = lambda *a, cwd: subprocess.run(  # noqa: E731
        ["git", *a], cwd=cwd, check=True, capture_output=True, text=True, env=env
    ).stdout.strip()
    run("init", "-q", "--bare", "-b", "main", str(bare), cwd=state)
    run("clone", "-q", str(bare), str(work), cwd=state)
    run("checkout", "-q", "-b", "main", cwd=work)
    (work / "f.txt").write_text(name)
    run("add", "-A", cwd=work)
    run("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message, cwd=work)
    run("push", "-q", "origin", "main", cwd=work)
    return run("rev-parse", "HEAD", cwd=work)


PIPELINE = """
name: twosrc
stages:
  - name: Source
    actions:
      - {name: CodeCommitDMF, type: source.app, outputs: [app_src], namespace: SourceApp,
         config: {repository: webapp}}
      - {name: CodeCommitTestSelenium, type: source.tests, outputs: [e2e_src],
         namespace: SourceE2E, config: {repository: webapp-e2e}}
  - name: Build
    actions:
      - {name: Build, type: shell, inputs: [app_src], outputs: [build_out], namespace: Build,
         config: {commands: ["echo ::set-output ImageURI=reg/webapp:#{SourceApp.CommitId}"]}}
  - name: Deploy
    actions:
      - {name: DeployToEKS, type: test.fakedeploy, inputs: [build_out],
         config: {image: "#{Build.ImageURI}"}}
"""


@pytest.mark.parametrize("tests_finish", ["first", "last"])
def test_env_list_and_api_name_the_app_commit_whichever_source_finishes_first(
    tests_finish: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`env list`, the API's execution header and DORA's lead time use the app repo's commit."""
    import httpx

    from conveyor.bootstrap import build
    from conveyor.cli.main import cli
    from conveyor.monitoring.dora import history_of
    from conveyor.server.app import create_app
    from conveyor.server.auth import ensure_admin
    from conveyor.settings import Settings

    state = tmp_path / "state"
    state.mkdir()
    settings = Settings(
        state_dir=state,
        database_url=f"sqlite:///{state / 'conveyor.db'}",
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        poll_seconds=0.05,
    )
    app: Any = build(settings)
    app_commit = _repo(state, "webapp", "the app", "2026-11-30T10:00:00+00:00")
    tests_commit = _repo(
        state, "webapp-e2e", "demo: the Selenium suite", "2026-11-01T10:00:00+00:00"
    )
    slow, fast = _delayed(1.5), _delayed(0.0)
    app.registry.register("source.app", slow if tests_finish == "first" else fast)
    app.registry.register("source.tests", fast if tests_finish == "first" else slow)
    app.registry.register("test.fakedeploy", FakeDeploy)
    ex = run_pipeline(app, PIPELINE, tmp_path)
    row = app.store.execution(ex)
    assert row.status == "Succeeded", row.message
    assert set(row.revisions) == {"CodeCommitDMF", "CodeCommitTestSelenium"}

    monkeypatch.setenv("CONVEYOR_HOME", str(state))
    out = CliRunner().invoke(cli, ["env", "list", "--json"])
    assert out.exit_code == 0, out.output
    (test_env,) = json.loads(out.output)
    assert test_env["commit"] == app_commit != tests_commit

    token = ensure_admin(app.store)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(settings, app.store))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(
                f"/api/v1/executions/{ex}", headers={"Authorization": f"Bearer {token}"}
            )

    r = asyncio.run(get())
    assert r.status_code == 200, r.text
    assert r.json()["source"]["commit"] == app_commit
    assert r.json()["source"]["action"] == "CodeCommitDMF"

    (dep,) = history_of(app.store, "test")
    assert dep.commit_at == datetime.fromisoformat("2026-11-30T10:00:00+00:00").timestamp()
    app.store.close()
