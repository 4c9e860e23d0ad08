"""The `conveyor` command as a user types it: exit codes, messages, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cli(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "CONVEYOR_HOME": str(home), "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_init_writes_a_valid_seed_pipeline(tmp_path: Path) -> None:
    """`init` then `validate` exits 0; a second `init` refuses to overwrite."""
    assert cli(tmp_path, "init", str(tmp_path / "proj")).returncode == 0
    res = cli(tmp_path, "validate", str(tmp_path / "proj" / "pipeline.yaml"))
    assert res.returncode == 0, res.stderr
    assert "6 stages" in res.stdout
    again = cli(tmp_path, "init", str(tmp_path / "proj"))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_validate_reports_every_problem_with_exit_2(tmp_path: Path) -> None:
    """Each problem is one FILE:LINE: line; no traceback."""
    f = tmp_path / "bad.yaml"
    f.write_text(
        "name: bad\nstages:\n  - name: A\n    actions:\n"
        "      - {name: a, type: nope, inputs: [ghost]}\n      - {name: a, type: shell}\n"
    )
    res = cli(tmp_path, "validate", str(f))
    assert res.returncode == 2
    lines = [x for x in res.stderr.splitlines() if x.startswith(str(f))]
    assert len(lines) >= 4, res.stderr
    assert all(x.split(":")[1].isdigit() for x in lines)
    assert "Traceback" not in res.stderr
    out = cli(tmp_path, "validate", str(f), "--json")
    assert json.loads(out.stdout)["valid"] is False


def test_missing_file_and_bad_yaml_are_one_line_errors(tmp_path: Path) -> None:
    """A missing file and invalid YAML exit 2 with a located message."""
    res = cli(tmp_path, "validate", str(tmp_path / "none.yaml"))
    assert res.returncode == 2 and "no such file" in res.stderr
    f = tmp_path / "broken.yaml"
    f.write_text("name: x\nstages: [\n")
    res = cli(tmp_path, "validate", str(f))
    assert res.returncode == 2 and "invalid YAML" in res.stderr and "Traceback" not in res.stderr


def test_unavailable_database_exits_3(tmp_path: Path) -> None:
    """A database that cannot be reached is exit code 3 with the reason."""
    res = cli(tmp_path, "history", env={"CONVEYOR_DATABASE_URL": "postgresql://u@127.0.0.1:1/x"})
    assert (
        res.returncode == 3
        and "cannot open database" in res.stderr
        and "Traceback" not in res.stderr
    )


def test_schema_is_json(tmp_path: Path) -> None:
    """`schema` prints a JSON Schema an editor can use."""
    res = cli(tmp_path, "schema")
    assert json.loads(res.stdout)["title"] == "Conveyor pipeline"


def test_run_json_status_history_logs_and_transitions(tmp_path: Path) -> None:
    """A run's JSON has stages, actions, reasons and variables; the other commands read the same state."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: cli\nstages:\n  - name: A\n    actions:\n"
        '      - {name: hello, type: shell, config: {commands: ["echo hi there", "echo ::set-output V=1"]}}\n'
        '  - name: B\n    actions:\n      - {name: fail, type: shell, config: {commands: ["exit 4"]}}\n'
    )
    res = cli(tmp_path, "run", str(f), "--json")
    assert res.returncode == 1
    desc = json.loads(res.stdout)
    assert desc["status"] == "Failed"
    hello, fail = desc["stages"][0]["actions"][0], desc["stages"][1]["actions"][0]
    assert hello["status"] == "Succeeded" and hello["variables"] == {"V": "1"}
    assert hello["started_at"] and hello["ended_at"]
    assert fail["reason"] == "ActionFailed" and "status 4" in fail["message"]
    hist = json.loads(cli(tmp_path, "history", "--json").stdout)
    assert hist[0]["id"] == desc["id"] and hist[0]["status"] == "Failed"
    st = json.loads(cli(tmp_path, "status", desc["id"], "--json").stdout)
    assert st["stages"][1]["status"] == "Failed"
    logs = cli(tmp_path, "logs", desc["id"], "hello")
    assert "hi there" in logs.stdout
    res = cli(tmp_path, "transitions", "disable", "B", "--reason", "freeze")
    assert res.returncode == 0
    tl = json.loads(cli(tmp_path, "transitions", "list", "--json").stdout)
    assert tl[0]["stage"] == "B" and tl[0]["enabled"] is False
    bad = cli(tmp_path, "transitions", "disable", "Bee", "--reason", "x")
    assert bad.returncode == 2 and "(stages: A, B)" in bad.stderr
    stop = cli(tmp_path, "stop", desc["id"])
    assert stop.returncode == 2 and "nothing to stop" in stop.stdout + stop.stderr


def test_detached_run_and_logs_follow(tmp_path: Path) -> None:
    """`run --detach` returns at once (a background engine drives it); `logs -f` streams to the end."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: detached\nstages:\n  - name: A\n    actions:\n"
        '      - {name: talk, type: shell, config: {commands: ["for i in 1 2 3; do echo line $i; sleep 0.5; done"]}}\n'
    )
    res = cli(tmp_path, "run", str(f), "--detach", "--json")
    assert res.returncode == 0, res.stderr
    ex = json.loads(res.stdout)["executionId"]
    logs = cli(tmp_path, "logs", ex, "talk", "--follow")
    assert logs.returncode == 0
    assert [x for x in logs.stdout.splitlines() if x.startswith("line ")] == [
        "line 1",
        "line 2",
        "line 3",
    ]
    st = json.loads(cli(tmp_path, "status", ex, "--json").stdout)
    assert st["status"] == "Succeeded"
