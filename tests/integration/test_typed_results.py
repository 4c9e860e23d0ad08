"""The engine learns revisions and deployments from an action's typed result fields, whatever
the type is called (a third-party source or deployer is recorded like the built-ins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor.actions.base import ActionContext, ActionResult, BaseAction
from tests.conftest import run_pipeline

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "ab" * 32


class Fetch(BaseAction):
    """A source that is not named `source.*`."""

    def run(self, ctx: ActionContext) -> ActionResult:
        variables = {"CommitId": "c0ffee", "BranchName": "main"}
        return ActionResult(variables=variables, revision=dict(variables))


class Ship(BaseAction):
    """A deployer that is not named `deploy`."""

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(deployment={"environment": "staging", "image": "web", "digest": DIGEST})


def test_a_third_party_source_and_deployer_are_recorded(app: Any, tmp_path: Path) -> None:
    """`revision` is kept as the execution's source revision, `deployment` in the history."""
    app.registry.register("acme.fetch", Fetch)
    app.registry.register("acme.ship", Ship)
    ex = run_pipeline(
        app,
        """
name: typed
stages:
  - name: Source
    actions:
      - {name: Fetch, type: acme.fetch}
  - name: Ship
    actions:
      - {name: Ship, type: acme.ship}
""",
        tmp_path,
    )
    row = app.store.execution(ex)
    assert row.status == "Succeeded", row.message
    assert row.revisions["Fetch"]["CommitId"] == "c0ffee"
    [dep] = app.store.deployment_records("staging")
    assert (dep.execution_id, dep.digest, dep.kind) == (ex, DIGEST, "deploy")
