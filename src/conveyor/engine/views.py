"""Read models: an execution as the CLI and the API show it (stages, actions, durations)."""

from __future__ import annotations

from typing import Any

from conveyor.engine.engine import pipeline_of, state_of
from conveyor.model import planner as pl
from conveyor.store.db import Row, Store


def _dur(a: float | None, b: float | None) -> float | None:
    return round(b - a, 3) if a and b else None


def describe_execution(
    store: Store, ex_id: str, ex: Row | None = None, attempts: list[Row] | None = None
) -> dict[str, Any]:
    ex = ex or store.get_execution(ex_id)
    attempts = attempts if attempts is not None else store.attempts_for(ex["id"])
    pipeline = pipeline_of(ex["definition"], ex["pipeline"])
    state = state_of(ex, attempts)
    current = pl.current_attempts(pipeline, state)
    statuses = pl.stage_statuses(pipeline, state)
    rows = {a["id"]: a for a in attempts}
    stages = []
    for stage, st in zip(pipeline.stages, statuses, strict=True):
        actions = []
        for action in stage.actions:
            view = current[stage.name].get(action.name)
            a = rows.get(f"{ex['id']}/{stage.name}/{action.name}/{view.attempt}") if view else None
            actions.append(
                {
                    "name": action.name,
                    "type": action.type,
                    "runOrder": action.run_order,
                    "status": a["status"] if a else None,
                    "reason": a["reason"] if a else None,
                    "message": a["message"] if a else None,
                    "attempt": a["attempt"] if a else 0,
                    "startedAt": a["started_at"] if a else None,
                    "endedAt": a["ended_at"] if a else None,
                    "durationSeconds": _dur(a["started_at"], a["ended_at"]) if a else None,
                    "outputVariables": a["variables"] if a else {},
                    "artifacts": a["artifacts"] if a else {},
                    "reports": a["reports"] if a else [],
                    "details": a["details"] if a else {},
                    "logPath": a["log_path"] if a else None,
                    "id": a["id"] if a else None,
                }
            )
        starts = [x["startedAt"] for x in actions if x["startedAt"]]
        ends = [x["endedAt"] for x in actions if x["endedAt"]]
        stages.append(
            {
                "name": stage.name,
                "status": st.value if st else None,
                "actions": actions,
                "startedAt": min(starts) if starts else None,
                "endedAt": max(ends)
                if ends and st and st.value not in ("InProgress", "Stopping")
                else None,
            }
        )
    return {
        "id": ex["id"],
        "pipeline": ex["pipeline"],
        "number": ex["seq"],
        "kind": ex["kind"],
        "status": ex["status"],
        "message": ex["message"],
        "waiting": ex["waiting"],
        "createdAt": ex["created_at"],
        "endedAt": ex["ended_at"],
        "durationSeconds": _dur(ex["created_at"], ex["ended_at"]),
        "variables": ex["variables"],
        "trigger": ex["trigger"],
        "sourceRevisions": ex["revisions"],
        "stages": stages,
    }
