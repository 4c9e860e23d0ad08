"""The engine's parts come from the composition root: rollback hooks, the alert notifier."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine.engine import Engine
from conveyor.model.pipeline import Pipeline
from conveyor.store.records import ExecutionRecord
from tests.conftest import drive, write_pipeline

pytestmark = pytest.mark.integration

FAILING = """
name: failing
stages:
  - name: A
    actions: [{name: bad, type: shell, config: {commands: ["exit 3"]}}]
"""


def test_a_failed_stage_hook_runs_before_anyone_sees_the_execution_failed(
    app: Any, tmp_path: Path
) -> None:
    """on_stage_failed sees its execution still InProgress: what it starts (a rollback) is
    there when a follower (`conveyor run`) reads Failed, so it keeps the engine running."""
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    path = write_pipeline(tmp_path, FAILING)
    p = load_pipeline(path, app.registry.catalogue())
    app.store.save_pipeline(p.name, load(path)[0], str(path))
    seen: list[tuple[str, str, str]] = []

    def record(engine: Engine, ex: ExecutionRecord, pipeline: Pipeline, stage: str) -> None:
        seen.append((engine.store.execution(ex.id).status, ex.status, stage))

    eng = app.engine()
    eng.hooks.on_stage_failed.append(record)
    ex = eng.start(p.name)
    drive(app, eng, lambda a: a.store.execution(ex).status == "Failed")
    assert seen == [("InProgress", "Failed", "A")]


def test_the_engine_hooks_are_the_ones_bootstrap_builds(app: Any) -> None:
    """An engine from the app has the rollback part's hooks; one that only starts has none."""
    full, bare = app.engine(), app.engine(install_hooks=False)
    assert [h.__qualname__ for h in full.hooks.on_stage_failed] == ["Rollbacks.on_stage_failed"]
    assert [h.__qualname__ for h in full.hooks.on_execution_done] == ["Rollbacks.on_execution_done"]
    assert not bare.hooks.on_stage_failed and not bare.hooks.on_execution_done
    assert full.artifacts is app.services.artifacts


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_process_that_queues_an_alert_delivers_it_before_it_exits() -> None:
    """The notifier's thread outlives the code that queued an alert: the webhook gets it even
    when the process ends right after (no flush called)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    code = textwrap.dedent(
        f"""
        from conveyor.monitoring.alerts import Notifier
        n = Notifier()
        n.send_later({url!r}, "first", "test", {{"n": 1}})
        n.send_later({url!r}, "second", "test", {{"n": 2}})
        """
    )
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert [m["text"] for m in _Hook.received] == ["first", "second"]
    assert _Hook.received[1]["conveyor"] == {"event": "test", "n": 2}
