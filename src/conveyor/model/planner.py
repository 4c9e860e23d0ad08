"""What an execution should do next, and where it stands: pure functions over its attempts.

An execution's state is the list of its action attempts plus a few request flags. The
latest attempt of each action in the stage's current *epoch* counts (a stage retry opens a
new epoch; a failed-only retry carries the succeeded actions over).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.model.pipeline import ExecutionMode, Pipeline, Stage
from conveyor.model.status import (
    ActionStatus,
    ExecutionStatus,
    StageStatus,
    derive_execution,
    derive_stage,
)


@dataclass(frozen=True)
class AttemptView:
    stage: str
    action: str
    attempt: int
    epoch: int
    status: ActionStatus


@dataclass(frozen=True)
class StageEpoch:
    epoch: int = 0
    failed_only: bool = False


@dataclass(frozen=True)
class ExecutionState:
    attempts: Sequence[AttemptView] = ()
    stage_epochs: Mapping[str, StageEpoch] = field(default_factory=dict)
    stop_requested: bool = False
    superseded: bool = False
    cancelled: bool = False
    # given by a caller that keeps them in step with the attempts (the engine, stage by stage):
    # `current_attempts` and `stage_statuses` then answer without walking every attempt
    current: Mapping[str, dict[str, AttemptView]] | None = None
    statuses: Sequence[StageStatus | None] | None = None


# The engine asks several questions (status, plan, progress) of one state per tick: the last
# answer of the two functions below is kept, keyed by the identity of their (immutable)
# arguments, so a tick walks the attempts once instead of five times. Callers must not
# mutate what they get.
_last_current: tuple[Pipeline, ExecutionState, dict[str, dict[str, AttemptView]]] | None = None
_last_statuses: tuple[Pipeline, ExecutionState, list[StageStatus | None]] | None = None


def current_attempts(
    pipeline: Pipeline, state: ExecutionState
) -> dict[str, dict[str, AttemptView]]:
    """For each stage, the attempt that counts for each action (absent: not started)."""
    global _last_current
    if state.current is not None:
        return dict(state.current)
    last = _last_current
    if last is not None and last[0] is pipeline and last[1] is state:
        return last[2]
    out = _current_attempts(pipeline, state)
    _last_current = (pipeline, state, out)
    return out


def _current_attempts(
    pipeline: Pipeline, state: ExecutionState
) -> dict[str, dict[str, AttemptView]]:
    latest: dict[tuple[str, str], AttemptView] = {}
    for a in state.attempts:
        key = (a.stage, a.action)
        if key not in latest or a.attempt > latest[key].attempt:
            latest[key] = a
    return {
        stage.name: stage_current(stage, latest, state.stage_epochs.get(stage.name, StageEpoch()))
        for stage in pipeline.stages
    }


def stage_current(
    stage: Stage, latest: Mapping[tuple[str, str], AttemptView], ep: StageEpoch
) -> dict[str, AttemptView]:
    """One stage's attempts that count, from the latest attempt of each (stage, action)."""
    per: dict[str, AttemptView] = {}
    for action in stage.actions:
        att = latest.get((stage.name, action.name))
        if att is None:
            continue
        if att.epoch < ep.epoch and not (ep.failed_only and att.status == ActionStatus.SUCCEEDED):
            continue
        per[action.name] = att
    return per


def stage_status(
    stage: Stage, current: Mapping[str, AttemptView], *, stopping: bool
) -> StageStatus | None:
    return derive_stage(
        [a.name for a in stage.actions],
        {n: att.status for n, att in current.items()},
        stopping=stopping,
    )


def stage_statuses(pipeline: Pipeline, state: ExecutionState) -> list[StageStatus | None]:
    global _last_statuses
    if state.statuses is not None:
        return list(state.statuses)
    last = _last_statuses
    if last is not None and last[0] is pipeline and last[1] is state:
        return list(last[2])
    cur = current_attempts(pipeline, state)
    out = [stage_status(s, cur[s.name], stopping=state.stop_requested) for s in pipeline.stages]
    _last_statuses = (pipeline, state, out)
    return list(out)


def execution_status(pipeline: Pipeline, state: ExecutionState) -> ExecutionStatus:
    return derive_execution(
        stage_statuses(pipeline, state),
        stop_requested=state.stop_requested,
        superseded=state.superseded,
        cancelled=state.cancelled,
    )


def progress(pipeline: Pipeline, state: ExecutionState) -> int:
    """How many stages, from the first, have succeeded."""
    n = 0
    for st in stage_statuses(pipeline, state):
        if st != StageStatus.SUCCEEDED:
            break
        n += 1
    return n


def active_stage(pipeline: Pipeline, state: ExecutionState) -> str | None:
    """The stage this execution is inside (holding its lock), if any."""
    for stage, st in zip(pipeline.stages, stage_statuses(pipeline, state), strict=True):
        if st in (StageStatus.IN_PROGRESS, StageStatus.STOPPING):
            return stage.name
    return None


@dataclass(frozen=True)
class Plan:
    start: tuple[tuple[str, str], ...] = ()
    waiting: str | None = None  # why nothing can start now (a disabled transition, a lock)
    next_stage: str | None = None  # the stage it would enter next (when between stages)


@dataclass(frozen=True)
class Neighbourhood:
    """What other executions of the same pipeline and the pipeline's settings impose."""

    disabled_transitions: Mapping[str, str] = field(default_factory=dict)  # stage -> reason
    occupied: Mapping[str, str] = field(default_factory=dict)  # stage -> execution id inside
    older_waiting_for: frozenset[str] = frozenset()  # QUEUED: stages older executions wait for


def plan(
    pipeline: Pipeline, state: ExecutionState, around: Neighbourhood = Neighbourhood()
) -> Plan:
    """The actions to start now (persisted InProgress before they run)."""
    status = execution_status(pipeline, state)
    if status != ExecutionStatus.IN_PROGRESS or state.stop_requested:
        return Plan()
    cur = current_attempts(pipeline, state)
    statuses = stage_statuses(pipeline, state)
    for stage, st in zip(pipeline.stages, statuses, strict=True):
        if st == StageStatus.SUCCEEDED:
            continue
        if st is None:
            if stage.name in around.disabled_transitions:
                reason = around.disabled_transitions[stage.name]
                return Plan(
                    waiting=f"transition into '{stage.name}' is disabled: {reason}",
                    next_stage=stage.name,
                )
            if pipeline.execution_mode != ExecutionMode.PARALLEL:
                holder = around.occupied.get(stage.name)
                if holder:
                    return Plan(
                        waiting=f"stage '{stage.name}' is busy with execution {holder}",
                        next_stage=stage.name,
                    )
                if (
                    pipeline.execution_mode == ExecutionMode.QUEUED
                    and stage.name in around.older_waiting_for
                ):
                    return Plan(
                        waiting=f"an older execution is queued for stage '{stage.name}'",
                        next_stage=stage.name,
                    )
        started = cur[stage.name]
        for order in stage.run_orders():
            group = [a for a in stage.actions if a.run_order == order]
            if all(
                a.name in started and started[a.name].status == ActionStatus.SUCCEEDED
                for a in group
            ):
                continue
            todo = tuple((stage.name, a.name) for a in group if a.name not in started)
            return Plan(start=todo)
        return Plan()
    return Plan()


def should_supersede(
    mode: ExecutionMode,
    pipeline: Pipeline,
    mine: ExecutionState,
    newer_progress: Sequence[int],
) -> bool:
    """SUPERSEDED mode: an execution waiting between stages is overtaken by a newer one that
    has come at least as far."""
    if mode != ExecutionMode.SUPERSEDED:
        return False
    if execution_status(pipeline, mine) != ExecutionStatus.IN_PROGRESS:
        return False
    if active_stage(pipeline, mine) is not None:
        return False
    p = progress(pipeline, mine)
    return any(n >= p for n in newer_progress)
