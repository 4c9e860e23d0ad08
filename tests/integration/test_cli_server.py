"""`conveyor user|approve|reject|audit` against a real state dir, store and engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import engine_home, run_cli
from tests.integration.live_server import wait_for

pytestmark = pytest.mark.integration

PIPELINE = {
    "name": "gate",
    "executionMode": "PARALLEL",
    "stages": [
        {
            "name": "Build",
            "actions": [
                {
                    "name": "Make",
                    "type": "shell",
                    "namespace": "B",
                    "config": {"commands": ["echo '::set-output D=sha256:77'"]},
                }
            ],
        },
        {
            "name": "Approval",
            "actions": [
                {
                    "name": "Gate",
                    "type": "approval",
                    "config": {"digest": "#{B.D}", "timeout": "1h"},
                }
            ],
        },
        {
            "name": "Prod",
            "actions": [{"name": "Ship", "type": "shell", "config": {"commands": ["true"]}}],
        },
    ],
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """CONVEYOR_HOME in tmp, the pipelines saved, an engine loop running."""
    with engine_home(tmp_path, monkeypatch, [PIPELINE]) as h:
        yield h


run = run_cli


def test_users_approve_reject_and_audit(home: Any) -> None:
    """Users get a token once; approve/reject as the local admin or --as USER; all audited."""
    app, engine = home
    r = run("user", "add", "alice", "--role", "approver", "--email", "alice@example.com")
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("cvy_")
    assert run("user", "add", "vic", "--role", "viewer").exit_code == 0
    listed = json.loads(run("user", "list", "--json").stdout)
    assert {u["name"]: u["role"] for u in listed} == {"alice": "approver", "vic": "viewer"}
    assert "token" not in run("user", "list").stdout

    ex = engine.start("gate", actor="bob")
    wait_for("the approval", lambda: app.store.pending_approvals())
    denied = run("approve", ex, "--comment", "no", "--as", "vic")
    assert denied.exit_code == 2 and "needs the approver role" in denied.output
    wrong = run("approve", ex, "--digest", "sha256:other")
    assert wrong.exit_code == 2 and "bound to image sha256:77" in wrong.output
    ok = run("approve", ex, "--comment", "ship it", "--as", "alice")
    assert ok.exit_code == 0, ok.output
    assert f"approved execution {ex} (image sha256:77) as alice" in ok.stdout
    wait_for("the execution to succeed", lambda: app.store.execution(ex).status == "Succeeded")
    again = run("reject", ex, "--comment", "too late")
    assert again.exit_code == 2 and "no longer pending" in again.output

    ex2 = engine.start("gate", actor="bob")
    wait_for("the second approval", lambda: app.store.pending_approvals())
    r = run("reject", ex2, "--comment", "not today", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "Rejected"
    assert json.loads(r.stdout)["decided_by"].startswith("local:")
    wait_for("the execution to fail", lambda: app.store.execution(ex2).status == "Failed")

    audit = json.loads(run("audit", "--json").stdout)
    actions = [(a["action"], a["target"]) for a in audit]
    assert ("approval.approve", ex) in actions and ("approval.reject", ex2) in actions
    assert ("user.create", "alice") in actions
    assert next(a for a in audit if a["action"] == "approval.approve")["actor"] == "alice"
    assert "approval.reject" in run("audit").stdout
