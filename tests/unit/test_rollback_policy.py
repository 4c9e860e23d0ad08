"""When a failed stage is rolled back (monitor breach, onFailure ROLLBACK) and when it is not."""

from __future__ import annotations

from conveyor.engine.rollback import should_roll_back
from conveyor.model.pipeline import Action, OnFailure, Pipeline, Stage
from conveyor.store.records import AttemptRecord


def pipeline(on_failure: str | None = None) -> Pipeline:
    stage = Stage(
        "Prod",
        (
            Action("Deploy", "deploy", environment="prod"),
            Action("Bake", "monitor", run_order=2, environment="prod"),
        ),
        OnFailure(on_failure) if on_failure else None,
    )
    return Pipeline("shop", (Stage("Build", (Action("Make", "build"),)), stage))


def attempt(
    action: str,
    type_: str,
    status: str = "Failed",
    reason: str = "ActionFailed",
    stage: str = "Prod",
    message: str = "boom",
) -> AttemptRecord:
    return AttemptRecord(
        id=f"x/{stage}/{action}/1",
        execution_id="x",
        stage=stage,
        action=action,
        attempt=1,
        type=type_,
        status=status,
        reason=reason,
        message=message,
    )


def test_a_monitor_breach_rolls_back_without_an_on_failure_rule() -> None:
    """A monitor that failed its thresholds is reason enough, and the reason quotes it."""
    why = should_roll_back(
        pipeline(),
        "Prod",
        [
            attempt("Deploy", "deploy", "Succeeded", ""),
            attempt("Bake", "monitor", message="availability 0.5 < 0.99"),
        ],
    )
    assert why == "Prod/Bake failed: availability 0.5 < 0.99"


def test_a_monitor_that_could_not_run_does_not_roll_back() -> None:
    """A monitor that errored (its URL answers nothing: a ToolError) is not a release failure."""
    assert (
        should_roll_back(pipeline(), "Prod", [attempt("Bake", "monitor", reason="ToolError")])
        is None
    )


def test_any_failure_in_a_rollback_stage_rolls_back() -> None:
    """With onFailure ROLLBACK, a failed deploy (or anything else) in the stage rolls it back."""
    why = should_roll_back(
        pipeline("ROLLBACK"),
        "Prod",
        [attempt("Deploy", "deploy", reason="ToolError", message="podman")],
    )
    assert why is not None and "onFailure ROLLBACK" in why and "podman" in why


def test_other_failures_and_other_stages_do_not_roll_back() -> None:
    """A failed deploy without the rule, or a failure in another stage, leaves things alone."""
    assert should_roll_back(pipeline(), "Prod", [attempt("Deploy", "deploy")]) is None
    assert (
        should_roll_back(pipeline("ROLLBACK"), "Build", [attempt("Make", "build", stage="Build")])
        is None
    )
    assert should_roll_back(pipeline("FAIL"), "Nope", []) is None
