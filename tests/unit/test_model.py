"""Statuses, derivation and planning: the pure core of the engine."""

from __future__ import annotations

import pytest

from conveyor.model import planner as pl
from conveyor.model.pipeline import Action, ExecutionMode, Pipeline, Stage
from conveyor.model.status import (
    ActionStatus as A,
)
from conveyor.model.status import (
    ExecutionStatus as E,
)
from conveyor.model.status import (
    StageStatus as S,
)
from conveyor.model.status import (
    TransitionRefused,
    check_transition,
    derive_execution,
    derive_stage,
)


def pipe(mode: ExecutionMode = ExecutionMode.SUPERSEDED) -> Pipeline:
    return Pipeline(
        "p",
        (
            Stage("Source", (Action("a", "shell"), Action("b", "shell"))),
            Stage("Build", (Action("c", "shell", run_order=1), Action("d", "shell", run_order=2))),
        ),
        execution_mode=mode,
    )


def att(stage: str, action: str, status: A, attempt: int = 1, epoch: int = 0) -> pl.AttemptView:
    return pl.AttemptView(stage, action, attempt, epoch, status)


def test_transition_table_refuses_leaving_a_final_status() -> None:
    """A succeeded action cannot become failed, and nothing starts twice."""
    check_transition(None, A.IN_PROGRESS)
    check_transition(A.IN_PROGRESS, A.FAILED)
    with pytest.raises(TransitionRefused):
        check_transition(A.SUCCEEDED, A.FAILED)
    with pytest.raises(TransitionRefused):
        check_transition(None, A.SUCCEEDED)


def test_stage_status_is_the_worst_of_its_actions() -> None:
    """In progress beats failed beats abandoned beats succeeded; missing actions mean not done."""
    assert derive_stage(["a", "b"], {}) is None
    assert derive_stage(["a", "b"], {"a": A.SUCCEEDED}) == S.IN_PROGRESS
    assert derive_stage(["a", "b"], {"a": A.FAILED, "b": A.IN_PROGRESS}) == S.IN_PROGRESS
    assert derive_stage(["a", "b"], {"a": A.FAILED, "b": A.SUCCEEDED}) == S.FAILED
    assert derive_stage(["a", "b"], {"a": A.SUCCEEDED, "b": A.SUCCEEDED}) == S.SUCCEEDED
    assert derive_stage(["a", "b"], {"a": A.IN_PROGRESS}, stopping=True) == S.STOPPING
    assert derive_stage(["a", "b"], {"a": A.SUCCEEDED}, stopping=True) == S.STOPPED


def test_execution_status_from_stages_and_flags() -> None:
    """An execution succeeds only when every stage did; flags name why it ended otherwise."""
    assert derive_execution([S.SUCCEEDED, S.SUCCEEDED]) == E.SUCCEEDED
    assert derive_execution([S.SUCCEEDED, None]) == E.IN_PROGRESS
    assert derive_execution([S.SUCCEEDED, S.FAILED]) == E.FAILED
    assert derive_execution([S.SUCCEEDED, None], superseded=True) == E.SUPERSEDED
    assert derive_execution([S.STOPPING, None], stop_requested=True) == E.STOPPING
    assert derive_execution([S.STOPPED, None], stop_requested=True) == E.STOPPED


def test_plan_starts_parallel_actions_of_the_first_stage_together() -> None:
    """Actions with the same runOrder start in one step."""
    assert pl.plan(pipe(), pl.ExecutionState()).start == (("Source", "a"), ("Source", "b"))


def test_plan_waits_for_the_whole_run_order_group() -> None:
    """runOrder 2 starts only after every runOrder 1 action succeeded; stages run in order."""
    p = pipe()
    st = pl.ExecutionState((att("Source", "a", A.SUCCEEDED), att("Source", "b", A.IN_PROGRESS)))
    assert pl.plan(p, st).start == ()
    st = pl.ExecutionState((att("Source", "a", A.SUCCEEDED), att("Source", "b", A.SUCCEEDED)))
    assert pl.plan(p, st).start == (("Build", "c"),)
    st = pl.ExecutionState((*st.attempts, att("Build", "c", A.SUCCEEDED)))
    assert pl.plan(p, st).start == (("Build", "d"),)


def test_plan_starts_nothing_after_a_failure_or_a_stop() -> None:
    """A failed stage ends the execution; a stop request starts nothing new."""
    p = pipe()
    failed = pl.ExecutionState((att("Source", "a", A.FAILED), att("Source", "b", A.SUCCEEDED)))
    assert pl.execution_status(p, failed) == E.FAILED
    assert pl.plan(p, failed).start == ()
    stopping = pl.ExecutionState(
        (att("Source", "a", A.SUCCEEDED), att("Source", "b", A.SUCCEEDED)), stop_requested=True
    )
    assert pl.plan(p, stopping).start == ()
    assert pl.execution_status(p, stopping) == E.STOPPED


def test_retry_epoch_reruns_all_or_only_failed_actions() -> None:
    """A retry opens a new epoch; failed-only keeps the succeeded actions of the stage."""
    p = pipe()
    attempts = (att("Source", "a", A.FAILED), att("Source", "b", A.SUCCEEDED))
    all_actions = pl.ExecutionState(attempts, {"Source": pl.StageEpoch(1, False)})
    assert pl.plan(p, all_actions).start == (("Source", "a"), ("Source", "b"))
    failed_only = pl.ExecutionState(attempts, {"Source": pl.StageEpoch(1, True)})
    assert pl.plan(p, failed_only).start == (("Source", "a"),)


def test_disabled_transition_and_busy_stage_make_it_wait() -> None:
    """The planner says why nothing starts: a disabled transition or a stage held by another run."""
    p = pipe()
    st = pl.ExecutionState((att("Source", "a", A.SUCCEEDED), att("Source", "b", A.SUCCEEDED)))
    plan = pl.plan(p, st, pl.Neighbourhood(disabled_transitions={"Build": "release freeze"}))
    assert plan.start == () and plan.waiting and "release freeze" in plan.waiting
    plan = pl.plan(p, st, pl.Neighbourhood(occupied={"Build": "ex1"}))
    assert plan.start == () and "ex1" in (plan.waiting or "")
    assert pl.plan(
        pipe(ExecutionMode.PARALLEL), st, pl.Neighbourhood(occupied={"Build": "ex1"})
    ).start


def test_queued_mode_keeps_order_at_each_stage() -> None:
    """QUEUED: an execution waits while an older one is queued for the same stage."""
    p = pipe(ExecutionMode.QUEUED)
    plan = pl.plan(
        p, pl.ExecutionState(), pl.Neighbourhood(older_waiting_for=frozenset({"Source"}))
    )
    assert plan.start == () and "older" in (plan.waiting or "")
    p2 = pipe(ExecutionMode.SUPERSEDED)
    assert pl.plan(
        p2, pl.ExecutionState(), pl.Neighbourhood(older_waiting_for=frozenset({"Source"}))
    ).start


def test_supersede_only_waiting_executions_overtaken_by_newer_ones() -> None:
    """SUPERSEDED: a run waiting between stages yields to a newer run that got as far."""
    p = pipe()
    waiting = pl.ExecutionState((att("Source", "a", A.SUCCEEDED), att("Source", "b", A.SUCCEEDED)))
    assert pl.should_supersede(ExecutionMode.SUPERSEDED, p, waiting, [1])
    assert not pl.should_supersede(ExecutionMode.SUPERSEDED, p, waiting, [0])
    assert not pl.should_supersede(ExecutionMode.QUEUED, p, waiting, [1])
    inside = pl.ExecutionState((att("Source", "a", A.IN_PROGRESS),))
    assert not pl.should_supersede(ExecutionMode.SUPERSEDED, p, inside, [2])


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('echo "#{variables.A}"', 'echo "${CONVEYOR_VAR_VARIABLES_A}"'),
        ("echo #{variables.A}", 'echo "${CONVEYOR_VAR_VARIABLES_A}"'),
        ("echo '#{variables.A}'", "echo ''\"${CONVEYOR_VAR_VARIABLES_A}\"''"),
        ("echo $'x#{variables.A}'", "echo $'x'\"${CONVEYOR_VAR_VARIABLES_A}\"$''"),
        ('echo "a\\"#{variables.A}"', 'echo "a\\"${CONVEYOR_VAR_VARIABLES_A}"'),
    ],
)
def test_command_as_data_follows_the_shell_quoting(command: str, expected: str) -> None:
    """A `#{...}` becomes a quoted environment reference in every quoting context."""
    from conveyor.model.variables import command_as_data

    text, env = command_as_data(command, {"variables": {"A": "$(id)"}})
    assert text == expected
    assert env == {"CONVEYOR_VAR_VARIABLES_A": "$(id)"}
