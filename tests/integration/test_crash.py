"""Crash safety with real processes: kill -9 the engine mid-action, start another one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def conveyor(home: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "CONVEYOR_HOME": str(home), "CONVEYOR_LEASE_SECONDS": "2", "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kw,
    )


def wait_for(cond: Any, timeout: float = 90) -> Any:
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def store(home: Path) -> Any:
    from conveyor.store.db import Store

    return Store(f"sqlite:///{home / 'conveyor.db'}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_kill_9_mid_action_fails_it_as_engine_crashed_then_retry_succeeds(tmp_path: Path) -> None:
    """The execution survives: the orphan is killed, the action fails EngineCrashed, a retry finishes it."""
    home = tmp_path / "home"
    marker = tmp_path / "second-time"
    pidfile = tmp_path / "sleeper.pid"
    f = tmp_path / "p.yaml"
    f.write_text(f"""
name: crashy
stages:
  - name: Work
    actions:
      - name: long
        type: shell
        config:
          commands:
            - "if [ -f {marker} ]; then exit 0; fi"
            - "touch {marker}; sleep 300 & echo $! > {pidfile}; wait"
""")
    run = conveyor(home, "run", str(f))
    s = store(home)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    ex = s.list_executions(limit=1)[0].id
    sleeper = int(pidfile.read_text())
    os.killpg(run.pid, signal.SIGKILL)  # the engine and everything in its session die
    run.wait()
    # the action's own process group survives the engine (start_new_session): an orphan
    os.kill(sleeper, 0)
    assert s.attempts_for(ex)[0].status == "InProgress"

    eng = conveyor(home, "engine", "--until-idle")
    out, _ = eng.communicate(timeout=60)
    row = s.execution(ex)
    att = s.attempts_for(ex)[0]
    assert row.status == "Failed", out
    assert att.reason == "EngineCrashed" and f"conveyor retry {ex}" in att.message
    wait_for(lambda: not pid_alive(sleeper), 10)

    res = subprocess.run(
        [sys.executable, "-m", "conveyor", "retry", ex, "--failed-only", "--json"],
        env={**os.environ, "CONVEYOR_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert s.execution(ex).status == "Succeeded"
    assert [h.to_status for h in s.history_for(ex)] == [
        "InProgress",
        "Failed",
        "InProgress",
        "Succeeded",
    ]


def test_kill_9_while_waiting_for_approval_resumes_the_wait(tmp_path: Path) -> None:
    """A waiting approval is not failed by a crash: the next engine resumes it and an approval releases it."""
    home = tmp_path / "home"
    f = tmp_path / "p.yaml"
    f.write_text("""
name: gated
stages:
  - name: Gate
    actions: [{name: approve-me, type: approval, config: {timeout: 10m}}]
  - name: After
    actions: [{name: after, type: shell, config: {commands: ["true"]}}]
""")
    run = conveyor(home, "run", str(f))
    s = store(home)
    wait_for(lambda: s.pending_approvals())
    ex = s.pending_approvals()[0].execution_id
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    eng = conveyor(home, "engine", "--until-idle")
    time.sleep(3)  # past the 2 s lease: the new engine has taken over the wait
    assert s.attempts_for(ex)[0].status == "InProgress"
    from conveyor.engine.gate import decide

    decide(s, ex, approve=True, by="tester", comment="looks good")
    out, _ = eng.communicate(timeout=60)
    assert s.execution(ex).status == "Succeeded", out
    gate = s.attempts_for(ex)[0]
    assert gate.variables["ApprovedBy"] == "tester"
