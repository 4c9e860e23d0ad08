"""The engine's per-stage execution state (issue 18.3) answers as a full walk would."""

from __future__ import annotations

import dataclasses
from typing import Any

from conveyor.engine.engine import _Known
from conveyor.model import planner as pl
from conveyor.model.pipeline import Action, Pipeline, Stage
from conveyor.service.queries import state_of
from conveyor.store.records import AttemptRecord, ExecutionRecord

PIPELINE = Pipeline(
    "p",
    (
        Stage("A", (Action("a1", "shell"), Action("a2", "shell", run_order=2))),
        Stage("B", (Action("b1", "shell"), Action("b2", "shell"))),
    ),
)


def row(stage: str, action: str, n: int, status: str, epoch: int = 0) -> AttemptRecord:
    return AttemptRecord(
        id=f"x/{stage}/{action}/{n}",
        execution_id="x",
        stage=stage,
        action=action,
        attempt=n,
        type="shell",
        epoch=epoch,
        status=status,
    )


def test_the_kept_state_matches_a_full_walk_after_each_move() -> None:
    """Adds, moves, a retry epoch and a stop give the same statuses, plan and current views."""
    ex = ExecutionRecord(id="x", pipeline="p", seq=1, status="InProgress")
    k = _Known(0)
    steps: list[tuple[str, Any]] = [
        ("add", row("A", "a1", 1, "InProgress")),
        ("move", ("x/A/a1/1", "Succeeded")),
        ("add", row("A", "a2", 1, "InProgress")),
        ("move", ("x/A/a2/1", "Failed")),
        ("epoch", {"A": {"epoch": 1, "failed_only": True}}),
        ("add", row("A", "a2", 2, "InProgress", 1)),
        ("move", ("x/A/a2/2", "Succeeded")),
        ("add", row("B", "b1", 1, "InProgress")),
        ("add", row("B", "b2", 1, "InProgress")),
        ("stop", "finish"),
        ("move", ("x/B/b1/1", "Succeeded")),
    ]
    for kind, arg in steps:
        if kind == "add":
            k.add(arg)
        elif kind == "move":
            assert k.update(arg[0], {"status": arg[1]})
        elif kind == "epoch":
            ex = dataclasses.replace(ex, stage_epochs=arg)
        else:
            ex = dataclasses.replace(ex, stop_mode=arg)
        kept = k.state(PIPELINE, ex)
        full = state_of(ex, k.listed)
        assert pl.current_attempts(PIPELINE, kept) == pl.current_attempts(PIPELINE, full)
        assert pl.stage_statuses(PIPELINE, kept) == pl.stage_statuses(PIPELINE, full)
        assert pl.execution_status(PIPELINE, kept) == pl.execution_status(PIPELINE, full)
        assert pl.plan(PIPELINE, kept) == pl.plan(PIPELINE, full)
