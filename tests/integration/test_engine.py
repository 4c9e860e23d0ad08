"""The engine with real processes: parallelism, artifacts, variables, stop, retry, timeouts,
transitions and execution modes. Every run goes through the real store (SQLite here)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor.store.records import AttemptRecord
from tests.conftest import drive, run_pipeline, write_pipeline

pytestmark = pytest.mark.integration


def attempts(app: Any, ex: str) -> dict[str, AttemptRecord]:
    return {a.action: a for a in app.store.attempts_for(ex)}


def test_parallel_actions_run_concurrently_and_pass_artifacts_and_variables(
    app: Any, tmp_path: Path
) -> None:
    """Same-runOrder actions overlap in time; a later stage reads an artifact and a variable."""
    ex = run_pipeline(
        app,
        """
name: flow
variables: [{name: GREETING, defaultValue: hello}]
stages:
  - name: A
    actions:
      - {name: left, type: shell, outputs: [out], namespace: L,
         config: {commands: ["echo '#{variables.GREETING}' > msg.txt", "echo ::set-output N=7", "sleep 1"]}}
      - {name: right, type: shell, config: {commands: ["sleep 1"]}}
  - name: B
    actions:
      - {name: read, type: shell, inputs: [out],
         config: {commands: ["test \\"$(cat msg.txt)\\" = bonjour", "test '#{L.N}' = 7"]}}
""",
        tmp_path,
        variables={"GREETING": "bonjour"},
    )
    ex_row = app.store.execution(ex)
    assert ex_row.status == "Succeeded", ex_row.message
    a = attempts(app, ex)
    assert a["left"].started_at < a["right"].ended_at and a["right"].started_at < a["left"].ended_at
    assert a["read"].started_at >= max(a["left"].ended_at, a["right"].ended_at)
    assert a["left"].variables == {"N": "7"}
    assert a["left"].artifacts["out"].startswith("sha256:")


def test_failure_is_recorded_with_reason_and_log(app: Any, tmp_path: Path) -> None:
    """A failing command fails its action (ActionFailed), the execution and keeps the log."""
    ex = run_pipeline(
        app,
        """
name: failing
stages:
  - name: A
    actions: [{name: bad, type: shell, config: {commands: ["echo about to fail", "exit 3"]}}]
  - name: B
    actions: [{name: never, type: shell, config: {commands: ["true"]}}]
""",
        tmp_path,
    )
    row = app.store.execution(ex)
    assert row.status == "Failed"
    a = attempts(app, ex)
    assert a["bad"].reason == "ActionFailed" and "status 3" in a["bad"].message
    assert "never" not in a
    assert "about to fail" in Path(a["bad"].log_path).read_text()
    hist = app.store.history_for(ex)
    assert [(h.from_status, h.to_status) for h in hist] == [
        (None, "InProgress"),
        ("InProgress", "Failed"),
    ]


def test_tool_error_differs_from_action_failure(app: Any, tmp_path: Path) -> None:
    """A missing tool (git source of a repo that does not exist) is ToolError, not ActionFailed."""
    ex = run_pipeline(
        app,
        """
name: tool
stages:
  - name: A
    actions: [{name: src, type: source.git, outputs: [s], config: {repository: nosuchrepo}}]
""",
        tmp_path,
    )
    a = attempts(app, ex)["src"]
    assert a.reason == "ToolError"
    assert "no repository 'nosuchrepo'" in a.message and "conveyor repo create" in a.message


def test_timeout_kills_the_command(app: Any, tmp_path: Path) -> None:
    """An action past its timeout is stopped and fails with reason Timeout."""
    ex = run_pipeline(
        app,
        """
name: slow
stages:
  - name: A
    actions: [{name: sleepy, type: shell, timeout: 1, config: {commands: ["sleep 30"]}}]
""",
        tmp_path,
        timeout=25,
    )
    a = attempts(app, ex)["sleepy"]
    assert a.status == "Failed" and a.reason == "Timeout"
    assert a.ended_at - a.started_at < 20


def _start(
    app: Any,
    tmp_path: Path,
    text: str,
    name: str = "p.yaml",
    variables: dict[str, str] | None = None,
) -> tuple[str, Any]:
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    path = write_pipeline(tmp_path, text, name)
    p = load_pipeline(path, app.registry.catalogue())
    doc, _ = load(path)
    app.store.save_pipeline(p.name, doc, str(path))
    eng = app.engine()
    return eng.start(p.name, variables=variables), eng


def _status(app: Any, ex: str) -> str:
    return str(app.store.execution(ex).status)


def test_stop_lets_in_flight_actions_finish(app: Any, tmp_path: Path) -> None:
    """stop: the running action finishes, nothing new starts, the execution is Stopped."""
    ex, eng = _start(
        app,
        tmp_path,
        """
name: stoppable
stages:
  - name: A
    actions: [{name: first, type: shell, config: {commands: ["sleep 1"]}}]
  - name: B
    actions: [{name: second, type: shell, config: {commands: ["true"]}}]
""",
    )
    sent = threading.Event()

    def until(a: Any) -> bool:
        if not sent.is_set() and attempts(a, ex).get("first"):
            a.store.add_request(ex, "stop", {"reason": "test"}, actor="tester")
            sent.set()
        return _status(a, ex) in ("Stopped", "Succeeded", "Failed")

    drive(app, eng, until)
    a = attempts(app, ex)
    assert _status(app, ex) == "Stopped"
    assert a["first"].status == "Succeeded" and "second" not in a


def test_abandon_kills_in_flight_actions(app: Any, tmp_path: Path) -> None:
    """stop --abandon: the running action is killed and marked Abandoned."""
    ex, eng = _start(
        app,
        tmp_path,
        """
name: abandon
stages:
  - name: A
    actions: [{name: long, type: shell, config: {commands: ["sleep 60"]}}]
""",
    )
    sent = threading.Event()

    def until(a: Any) -> bool:
        if not sent.is_set() and attempts(a, ex).get("long"):
            a.store.add_request(ex, "abandon", {}, actor="tester")
            sent.set()
        return _status(a, ex) in ("Stopped", "Failed", "Succeeded")

    drive(app, eng, until, timeout=30)
    a = attempts(app, ex)["long"]
    assert a.status == "Abandoned" and a.ended_at - a.started_at < 20
    assert _status(app, ex) == "Stopped"


def test_retry_failed_only_reruns_just_the_failed_action(app: Any, tmp_path: Path) -> None:
    """retry --failed-only keeps the succeeded action; the retried one gets attempt 2."""
    flag = tmp_path / "fixed"
    ex = run_pipeline(
        app,
        f"""
name: retryable
stages:
  - name: A
    actions:
      - {{name: ok, type: shell, config: {{commands: ["echo run >> {tmp_path}/ok.count"]}}}}
      - {{name: flaky, type: shell, config: {{commands: ["test -f {flag}"]}}}}
""",
        tmp_path,
    )
    assert _status(app, ex) == "Failed"
    flag.touch()
    app.store.add_request(ex, "retry", {"failed_only": True}, actor="tester")
    drive(
        app,
        app.engine(),
        # settled: the engine took the retry request (the status moved on) and the run ended
        lambda a: (
            not a.store.pending_requests(ex) and _status(a, ex) not in ("InProgress", "Stopping")
        ),
        timeout=30,
    )
    assert _status(app, ex) == "Succeeded"
    rows = app.store.attempts_for(ex)
    assert sorted((r.action, r.attempt) for r in rows) == [
        ("flaky", 1),
        ("flaky", 2),
        ("ok", 1),
    ]
    assert (tmp_path / "ok.count").read_text().count("run") == 1


def test_retry_all_actions_reruns_the_whole_stage(app: Any, tmp_path: Path) -> None:
    """retry (all actions) re-runs every action of the failed stage."""
    flag = tmp_path / "fixed"
    ex = run_pipeline(
        app,
        f"""
name: retryall
stages:
  - name: A
    actions:
      - {{name: ok, type: shell, config: {{commands: ["true"]}}}}
      - {{name: flaky, type: shell, config: {{commands: ["test -f {flag}"]}}}}
""",
        tmp_path,
    )
    flag.touch()
    app.store.add_request(ex, "retry", {"failed_only": False}, actor="tester")
    drive(
        app,
        app.engine(),
        # settled: the engine took the retry request (the status moved on) and the run ended
        lambda a: (
            not a.store.pending_requests(ex) and _status(a, ex) not in ("InProgress", "Stopping")
        ),
        timeout=30,
    )
    assert _status(app, ex) == "Succeeded"
    assert sorted((r.action, r.attempt) for r in app.store.attempts_for(ex)) == [
        ("flaky", 1),
        ("flaky", 2),
        ("ok", 1),
        ("ok", 2),
    ]


def test_retry_of_a_succeeded_execution_is_refused(app: Any, tmp_path: Path) -> None:
    """Retrying what did not fail is refused with a reason, and nothing runs."""
    ex = run_pipeline(
        app,
        'name: fine\nstages:\n  - name: A\n    actions: [{name: a, type: shell, config: {commands: ["true"]}}]\n',
        tmp_path,
    )
    req = app.store.add_request(ex, "retry", {}, actor="tester")
    eng = app.engine()
    eng.step()
    eng.shutdown()
    assert app.store.get_request(req).outcome.startswith("refused")
    assert len(app.store.attempts_for(ex)) == 1


def test_disabled_transition_holds_the_execution_until_enabled(app: Any, tmp_path: Path) -> None:
    """The execution waits before a disabled stage, with the reason, and goes on when enabled."""
    ex, eng = _start(
        app,
        tmp_path,
        """
name: frozen
stages:
  - name: A
    actions: [{name: a, type: shell, config: {commands: ["true"]}}]
  - name: B
    actions: [{name: b, type: shell, config: {commands: ["true"]}}]
""",
    )
    app.store.set_transition("frozen", "B", False, "release freeze", "tester")
    drive(app, eng, lambda a: bool(a.store.execution(ex).waiting))
    row = app.store.execution(ex)
    assert row.status == "InProgress" and "release freeze" in row.waiting
    assert "b" not in attempts(app, ex)
    app.store.set_transition("frozen", "B", True, "", "tester")
    drive(app, app.engine(), lambda a: _status(a, ex) != "InProgress")
    assert _status(app, ex) == "Succeeded"


PAIR = """
name: {name}
executionMode: {mode}
stages:
  - name: A
    actions: [{{name: a, type: shell, config: {{commands: ["sleep 1"]}}}}]
  - name: B
    actions: [{{name: b, type: shell, config: {{commands: ["sleep 1"]}}}}]
"""


def _three(app: Any, tmp_path: Path, mode: str) -> list[str]:
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    path = write_pipeline(tmp_path, PAIR.format(name=f"m{mode.lower()}", mode=mode))
    p = load_pipeline(path, app.registry.catalogue())
    doc, _ = load(path)
    app.store.save_pipeline(p.name, doc, str(path))
    eng = app.engine()
    ids = [eng.start(p.name) for _ in range(3)]
    drive(
        app,
        eng,
        lambda a: all(_status(a, i) not in ("InProgress", "Stopping") for i in ids),
        timeout=60,
    )
    return ids


def test_superseded_mode_lets_the_newest_overtake_waiting_ones(app: Any, tmp_path: Path) -> None:
    """SUPERSEDED: of three runs started together, the waiting middle one is superseded."""
    ids = _three(app, tmp_path, "SUPERSEDED")
    statuses = [_status(app, i) for i in ids]
    assert statuses[0] == "Succeeded" and statuses[2] == "Succeeded"
    assert statuses[1] == "Superseded"


def test_queued_mode_runs_every_execution_in_order(app: Any, tmp_path: Path) -> None:
    """QUEUED: all three succeed and each stage serves them in the order they came."""
    ids = _three(app, tmp_path, "QUEUED")
    assert [_status(app, i) for i in ids] == ["Succeeded"] * 3
    starts = [attempts(app, i)["b"].started_at for i in ids]
    assert starts == sorted(starts)
    # one execution per stage at a time
    for x, y in zip(ids, ids[1:], strict=False):
        assert attempts(app, y)["a"].started_at >= attempts(app, x)["a"].ended_at


def test_parallel_mode_runs_executions_side_by_side(app: Any, tmp_path: Path) -> None:
    """PARALLEL: executions overlap in the same stage."""
    ids = _three(app, tmp_path, "PARALLEL")
    assert [_status(app, i) for i in ids] == ["Succeeded"] * 3
    a0, a1 = attempts(app, ids[0])["a"], attempts(app, ids[1])["a"]
    assert a1.started_at < a0.ended_at


def test_unknown_variable_override_is_refused(app: Any, tmp_path: Path) -> None:
    """Overriding a variable the pipeline does not declare is a configuration error."""
    from conveyor.errors import ConfigError

    with pytest.raises(ConfigError, match="no variable"):
        _start(
            app,
            tmp_path,
            'name: v\nstages:\n  - name: A\n    actions: [{name: a, type: shell, config: {commands: ["true"]}}]\n',
            variables={"NOPE": "1"},
        )


def test_rejected_approval_stops_the_pipeline_at_the_gate(app: Any, tmp_path: Path) -> None:
    """A rejection fails the approval with reason Rejected and who said no; nothing after it runs."""
    from conveyor.engine.gate import decide

    ex, eng = _start(
        app,
        tmp_path,
        """
name: gated
stages:
  - name: Gate
    actions: [{name: approve, type: approval, config: {timeout: 10m}}]
  - name: Prod
    actions: [{name: deploy, type: shell, config: {commands: ["true"]}}]
""",
    )
    decided = threading.Event()

    def until(a: Any) -> bool:
        if not decided.is_set() and a.store.pending_approvals():
            decide(
                a.store, ex, approve=False, by="carol", comment="e2e report shows a broken filter"
            )
            decided.set()
        return _status(a, ex) != "InProgress"

    drive(app, eng, until)
    gate = attempts(app, ex)["approve"]
    assert _status(app, ex) == "Failed"
    assert gate.reason == "Rejected" and "carol" in gate.message and "broken filter" in gate.message
    assert "deploy" not in attempts(app, ex)
