"""CLI habits a real project asked for (issue 14, section 4): exit codes of `status`, what an
execution waits for, JSON errors, full ids off a terminal, the monitor's real bake time."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import engine_home, run_cli
from tests.integration.live_server import wait_for

pytestmark = pytest.mark.integration

GATED = {
    "name": "gate",
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
    ],
}
FAILING = {
    "name": "broken",
    "stages": [
        {
            "name": "A",
            "actions": [{"name": "no", "type": "shell", "config": {"commands": ["exit 4"]}}],
        }
    ],
}
PASSING = {
    "name": "fine",
    "stages": [
        {
            "name": "A",
            "actions": [{"name": "yes", "type": "shell", "config": {"commands": ["true"]}}],
        }
    ],
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """CONVEYOR_HOME in tmp, the pipelines saved, an engine loop running."""
    with engine_home(tmp_path, monkeypatch, [GATED, FAILING, PASSING]) as h:
        yield h


run = run_cli


def finished(app: Any, ex: str) -> str:
    wait_for(
        "the execution to end",
        lambda: app.store.execution(ex).status not in ("InProgress", "Stopping"),
    )
    return str(app.store.execution(ex).status)


def test_status_of_a_failed_or_stopped_execution_exits_1(home: Any) -> None:
    """`status EXECUTION` exits 1 for Failed and Stopped, 0 for Succeeded; `--help` says so."""
    app, engine = home
    failed = engine.start("broken")
    assert finished(app, failed) == "Failed"
    assert run("status", failed).exit_code == 1
    assert run("status", failed, "--json").exit_code == 1
    ok = engine.start("fine")
    assert finished(app, ok) == "Succeeded"
    assert run("status", ok).exit_code == 0
    stopped = engine.start("gate")
    wait_for("the approval", lambda: app.store.pending_approvals())
    assert run("stop", stopped, "--abandon").exit_code == 0
    assert finished(app, stopped) == "Stopped"
    assert run("status", stopped).exit_code == 1
    assert "1 when the execution Failed or was Stopped" in " ".join(
        run("status", "--help").output.split()
    )


def test_status_json_shows_the_pending_approval(home: Any) -> None:
    """`status --json` names what the execution waits for: the approval, its digest, expiry."""
    app, engine = home
    ex = engine.start("gate")
    wait_for("the approval", lambda: app.store.pending_approvals())
    res = run("status", ex, "--json")
    assert res.exit_code == 0, res.output
    waiting = json.loads(res.stdout)["waiting"]
    expires = app.store.approval_records(ex)[0].expires_at
    assert waiting["type"] == "approval"
    assert (waiting["stage"], waiting["action"], waiting["digest"]) == (
        "Approval",
        "Gate",
        "sha256:77",
    )
    import datetime as dt

    assert dt.datetime.fromisoformat(waiting["expires"]).timestamp() == int(expires)
    plain = run("status", ex)
    assert "waiting: approval Approval/Gate of image sha256:77 (expires " in plain.output
    assert run("reject", ex).exit_code == 0  # the engine's approval wait ends


def test_with_json_errors_are_json_too(home: Any) -> None:
    """approve, reject, retry and stop with --json print `{"error": {code, message}}`."""
    app, engine = home
    for args in (
        ("approve", "nosuchexec"),
        ("reject", "nosuchexec"),
        ("retry", "nosuchexec"),
        ("stop", "nosuchexec"),
    ):
        res = run(*args, "--json")
        assert res.exit_code == 2, (args, res.output)
        error = json.loads(res.stdout)["error"]
        assert error["code"] == "not_found" and "no execution 'nosuchexec'" in error["message"]
    ok = engine.start("fine")
    finished(app, ok)
    res = run("approve", ok, "--json")
    assert res.exit_code == 2
    assert json.loads(res.stdout)["error"]["code"] in ("not_found", "conflict")
    res = run("stop", ok, "--json")
    assert res.exit_code == 2
    assert "nothing to stop" in json.loads(res.stdout)["error"]["message"]


def test_tables_off_a_terminal_print_full_ids(home: Any) -> None:
    """`conveyor history | cat` and `status | cat` print whole execution ids, not `9bf21b7…`."""
    app, engine = home
    ex = engine.start("broken")
    finished(app, ex)
    app.store.change_execution(ex, message="x" * 60)
    for args in (("history",), ("status",)):
        res = run(*args)
        assert ex in res.output, res.output
        assert "…" not in res.output


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def healthy_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_monitor_reports_the_bake_it_was_given(home: Any, healthy_url: str) -> None:
    """A 2 s bake probed every 1 s says "healthy for 2 s" (it said 1 s: no probe at the end)."""
    app, engine = home
    pipeline = {
        "name": "bake",
        "environments": {"web": {"url": healthy_url}},
        "stages": [
            {
                "name": "Watch",
                "actions": [
                    {
                        "name": "Bake",
                        "type": "monitor",
                        "environment": "web",
                        "config": {"bake": "2s", "interval": 1},
                    }
                ],
            }
        ],
    }
    app.store.save_pipeline("bake", pipeline, None)
    ex = engine.start("bake")
    assert finished(app, ex) == "Succeeded"
    (attempt,) = app.store.attempts_for(ex)
    assert attempt.message.startswith("web healthy for 2 s:"), attempt.message
    assert attempt.details["monitor"]["rounds"] == 3


def _release_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str) -> tuple[Any, str]:
    """A real podman pod recorded as environment `env`'s release in a fresh state dir."""
    import secrets
    import shutil

    from conveyor.adapters.containers import ContainerRuntime
    from conveyor.platform.local import LocalPlatform
    from conveyor.settings import Settings

    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "state"))
    platform = LocalPlatform(Settings.from_env())
    runtime = ContainerRuntime(platform.container_env())
    pod = f"conveyor-downtest-{secrets.token_hex(3)}"
    runtime.run("pod", "create", "--infra=false", "--label", f"conveyor.environment={env}", pod)
    d = platform.state_dir / "environments" / env
    d.mkdir(parents=True)
    (d / "port").write_text("1\n")
    (d / "frontdoor.json").write_text("{}")
    (d / "current.json").write_text(json.dumps({"release": "r1", "pods": [pod]}))
    return runtime, pod


def test_down_removes_the_release_pods_it_created_or_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`down` removes the release pods and names them; `down --keep` stops them and keeps them."""
    runtime, pod = _release_pod(tmp_path / "a", monkeypatch, "web")
    try:
        res = run("down")
        assert res.exit_code == 0, res.output
        assert f"stopped pod {pod} (removed)" in res.output
        assert runtime.run("pod", "exists", pod, check=False).returncode != 0
    finally:
        runtime.remove_pod(pod)
    runtime, pod = _release_pod(tmp_path / "b", monkeypatch, "web")
    try:
        res = run("down", "--keep")
        assert res.exit_code == 0, res.output
        assert f"pod {pod} (kept: `podman pod start {pod}` restarts it)" in res.output
        assert runtime.run("pod", "exists", pod, check=False).returncode == 0
    finally:
        runtime.remove_pod(pod)


def test_env_list_off_a_terminal_prints_full_digests_and_urls(home: Any) -> None:
    """`conveyor env list | cat` prints the whole digest and URL of a deployment, not `sha256…`."""
    app, engine = home
    ex = engine.start("broken")
    finished(app, ex)
    digest = "sha256:" + "d" * 64
    url = "http://127.0.0.1:18080/" + "long-path/" * 6
    app.store.record_deployment(
        environment="prod",
        pipeline="broken",
        execution_id=ex,
        kind="deploy",
        image=f"127.0.0.1:5002/webapp@{digest}",
        digest=digest,
        commit="c" * 40,
        url=url,
        actor="engine",
    )
    res = run("env", "list")
    assert res.exit_code == 0, res.output
    assert digest in res.output and url in res.output, res.output
    assert "…" not in res.output


def test_env_history_prints_each_deployment_with_the_digest_it_replaced(home: Any) -> None:
    """`conveyor env history ENV` is one row a deployment: kind, digest, previous, execution."""
    app, engine = home
    ex = engine.start("broken")
    finished(app, ex)
    assert run("env", "history", "prod").output == "no deployment to 'prod' yet\n"
    old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    app.store.record_deployment(
        environment="prod",
        pipeline="broken",
        execution_id=ex,
        kind="rollback",
        digest=new,
        commit="c" * 40,
        actor="alice",
        details={"previous_digest": old},
    )
    res = run("env", "history", "prod")
    assert res.exit_code == 0, res.output
    header, _, row = (
        [w for w in line.split() if w not in "┃│"] for line in res.output.splitlines()
    )
    assert header == ["when", "kind", "digest", "previous", "execution", "commit", "by"]
    assert row[2:] == ["rollback", new, old, ex, "c" * 40, "alice"], res.output


def test_cli_refuses_to_disable_the_first_stage_as_the_api_does(home: Any) -> None:
    """`transitions disable FIRST` exits 2 with the API's "first stage" error; nothing is written."""
    app, _ = home
    res = run("transitions", "disable", "Build", "--pipeline", "gate", "--reason", "x", "--json")
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert "is the first stage" in error["message"]
    assert app.store.transitions_for("gate") == []
    ok = run("transitions", "disable", "Approval", "--pipeline", "gate", "--reason", "freeze")
    assert ok.exit_code == 0, ok.output


def test_cli_refuses_to_retry_an_execution_that_did_not_fail(home: Any) -> None:
    """`retry` of a Succeeded or running execution is the API's 409 conflict: exit 2, no request."""
    app, engine = home
    ok = engine.start("fine")
    assert finished(app, ok) == "Succeeded"
    res = run("retry", ok, "--json")
    assert res.exit_code == 2, res.output
    error = json.loads(res.stdout)["error"]
    assert error["code"] == "conflict"
    assert "only a Failed or Stopped execution can be retried" in error["message"]
    running = engine.start("gate")
    wait_for("the approval", lambda: app.store.pending_approvals())
    res = run("retry", running, "--detach")
    assert res.exit_code == 2 and "is InProgress" in res.output
    assert not app.store.pending_requests(ok) and not app.store.pending_requests(running)
