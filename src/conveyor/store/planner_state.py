"""The planner's state of an execution, from its stored records: the engine plans with it,
and the service's views derive their statuses from it. Light (the pure model and the plain
records only): `conveyor status` builds it without loading the engine or SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.model import planner as pl
from conveyor.model.status import ActionStatus
from conveyor.store.records import AttemptRecord, ExecutionRecord


def attempt_view(a: AttemptRecord) -> pl.AttemptView:
    """An attempt as the planner sees it."""
    return pl.AttemptView(a.stage, a.action, a.attempt, a.epoch, ActionStatus(a.status))


def stage_epochs(ex: ExecutionRecord) -> dict[str, pl.StageEpoch]:
    """The retry epoch of each stage the execution retried."""
    return {
        k: pl.StageEpoch(v["epoch"], v["failed_only"]) for k, v in (ex.stage_epochs or {}).items()
    }


def execution_state(ex: ExecutionRecord, views: Iterable[pl.AttemptView]) -> pl.ExecutionState:
    """The planner's state of the execution `ex`, whose attempts the planner sees as `views`."""
    return pl.ExecutionState(
        attempts=tuple(views),
        stage_epochs=stage_epochs(ex),
        stop_requested=bool(ex.stop_mode),
        superseded=bool(ex.superseded_by),
    )
