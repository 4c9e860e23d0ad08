"""Read models the API and the pages share: pipelines, executions with their stages and
actions, environments. Plain JSON-able dicts built from store rows; statuses are derived
with the model's pure functions, never invented here."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import NotFound
from conveyor.model import planner as pl

if TYPE_CHECKING:  # the CLI reads these views: it must not pay for the engine and SQLAlchemy
    from conveyor.model.pipeline import Pipeline
    from conveyor.store.db import Row, Store

TERMINAL = ("Succeeded", "Failed", "Stopped", "Superseded", "Cancelled")
STATUSES = ("InProgress", "Stopping", "Stopped", "Succeeded", "Superseded", "Failed", "Cancelled")


class PipelineCache:
    """Parsed pipeline definitions, keyed by execution id (an execution's definition is an
    immutable snapshot) or by pipeline name + update time."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[str, Pipeline] = OrderedDict()
        self.size = size

    def get(self, key: str, definition: Mapping[str, Any], name: str) -> Pipeline:
        p = self._items.get(key)
        if p is None:
            from conveyor.engine.engine import pipeline_of

            p = pipeline_of(definition, name)
            self._items[key] = p
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return p

    def of_execution(self, ex: Row) -> Pipeline:
        return self.get(f"x:{ex['id']}", ex["definition"], ex["pipeline"])

    def of_pipeline(self, row: Row) -> Pipeline:
        return self.get(f"p:{row['name']}:{row['updated_at']}", row["definition"], row["name"])


def duration(start: float | None, end: float | None) -> float | None:
    if start is None:
        return None
    return round((end if end is not None else time.time()) - start, 3)


def source_summary(revisions: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The first source revision: commit, branch, author and the message's first line."""
    for name, r in (revisions or {}).items():
        if isinstance(r, Mapping) and r.get("CommitId"):
            msg = str(r.get("CommitMessage") or "")
            return {
                "action": name,
                "commit": r["CommitId"],
                "branch": r.get("BranchName"),
                "author": r.get("AuthorEmail"),
                "message": msg.splitlines()[0] if msg else "",
            }
    return None


def execution_summary(ex: Row) -> dict[str, Any]:
    return {
        "id": ex["id"],
        "pipeline": ex["pipeline"],
        "seq": ex["seq"],
        "kind": ex["kind"],
        "status": ex["status"],
        "message": ex["message"] or "",
        "waiting": ex.get("waiting"),
        "trigger": ex["trigger"],
        "actor": ex["actor"],
        "source": source_summary(ex["revisions"]),
        "created_at": ex["created_at"],
        "ended_at": ex["ended_at"],
        "duration_seconds": duration(ex["created_at"], ex["ended_at"]),
    }


def _action_view(
    ex_id: str, stage: str, action: Any, row: Row | None, tries: int, full_reports: bool = False
) -> dict[str, Any]:
    base = {
        "name": action.name,
        "type": action.type,
        "run_order": action.run_order,
        "environment": action.environment,
        "namespace": action.namespace,
    }
    if row is None:
        return {
            **base,
            "status": None,
            "reason": None,
            "message": "",
            "attempt": None,
            "attempts": tries,
            "started_at": None,
            "ended_at": None,
            "duration_seconds": None,
            "variables": {},
            "artifacts": {},
            "reports": [],
            "log_url": None,
            "reused_from": None,
        }
    return {
        **base,
        "status": row["status"],
        "reason": row["reason"],
        "message": row["message"] or "",
        "attempt": row["attempt"],
        "attempts": tries,
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "duration_seconds": duration(row["started_at"], row["ended_at"]),
        "variables": row["variables"] or {},
        "artifacts": row["artifacts"] or {},
        "reports": [
            (r if full_reports else {k: v for k, v in r.items() if k != "failures"})
            | {"failed_cases": len(r.get("failures") or [])}
            for r in (row["reports"] or [])
        ],
        "log_url": f"/api/v1/executions/{ex_id}/actions/{stage}/{action.name}/log"
        f"?attempt={row['attempt']}",
        # {execution, attempt, number}: the earlier attempt whose outputs this one reused
        "reused_from": (row.get("details") or {}).get("reused_from"),
    }


def execution_detail(
    store: Store,
    cache: PipelineCache,
    ex: Row,
    attempts: list[Row] | None = None,
    *,
    full_reports: bool = False,
) -> dict[str, Any]:
    """An execution with its stages (derived status, inbound transition) and actions: what the
    API returns and what `conveyor run/status --json` print. `full_reports` keeps each report's
    failed cases (the API serves them on the reports route instead)."""
    from conveyor.engine.engine import state_of

    pipeline = cache.of_execution(ex)
    attempts = store.attempts_for(ex["id"]) if attempts is None else attempts
    state = state_of(ex, attempts)
    current = pl.current_attempts(pipeline, state)
    statuses = pl.stage_statuses(pipeline, state)
    rows = {a["id"]: a for a in attempts}
    tries: dict[tuple[str, str], int] = {}
    for a in attempts:
        tries[(a["stage"], a["action"])] = tries.get((a["stage"], a["action"]), 0) + 1
    transitions = {r["stage"]: r for r in store.transitions_for(ex["pipeline"])}
    stages = []
    for stage, st in zip(pipeline.stages, statuses, strict=True):
        actions = []
        for action in stage.actions:
            view = current[stage.name].get(action.name)
            row = (
                rows.get(f"{ex['id']}/{stage.name}/{action.name}/{view.attempt}") if view else None
            )
            actions.append(
                _action_view(
                    ex["id"],
                    stage.name,
                    action,
                    row,
                    tries.get((stage.name, action.name), 0),
                    full_reports,
                )
            )
        starts = [a["started_at"] for a in actions if a["started_at"]]
        ends = [a["ended_at"] for a in actions if a["ended_at"]]
        running = st is not None and st.value in ("InProgress", "Stopping")
        stages.append(
            {
                "name": stage.name,
                "status": st.value if st is not None else None,
                "started_at": min(starts) if starts else None,
                "duration_seconds": duration(
                    min(starts), None if running or not ends else max(ends)
                )
                if starts
                else None,
                "transition": transition_view(transitions.get(stage.name)),
                "actions": actions,
            }
        )
    out = execution_summary(ex)
    out.update(
        {
            "revisions": ex["revisions"],
            "variables": ex["variables"],
            "stop_mode": ex["stop_mode"],
            "superseded_by": ex["superseded_by"],
            "execution_mode": pipeline.execution_mode.value,
            "stages": stages,
        }
    )
    return out


def transition_view(row: Row | None) -> dict[str, Any]:
    if row is None:
        return {"enabled": True, "reason": "", "actor": None, "at": None}
    return {
        "enabled": bool(row["enabled"]),
        "reason": row["reason"] or "",
        "actor": row["actor"],
        "at": row["at"],
    }


def pipeline_summary(store: Store, row: Row) -> dict[str, Any]:
    latest = store.list_executions(row["name"], limit=1, light=True)
    return {
        "name": row["name"],
        "source_path": row["source_path"],
        "updated_at": row["updated_at"],
        "stages": [s["name"] for s in row["definition"].get("stages", [])],
        "latest_execution": execution_summary(latest[0]) if latest else None,
    }


def pipeline_detail(store: Store, cache: PipelineCache, row: Row) -> dict[str, Any]:
    p = cache.of_pipeline(row)
    transitions = {r["stage"]: r for r in store.transitions_for(row["name"])}
    out = pipeline_summary(store, row)
    out.update(
        {
            "execution_mode": p.execution_mode.value,
            "variables": [
                {"name": v.name, "default": v.default, "description": v.description}
                for v in p.variables
            ],
            "environments": {
                n: {
                    "registry": e.registry,
                    "repository": e.repository,
                    "driver": e.driver,
                    "url": e.url,
                    "port": e.port,
                }
                for n, e in p.environments.items()
            },
            "stages": [
                {
                    "name": s.name,
                    "transition": transition_view(transitions.get(s.name)),
                    "actions": [
                        {
                            "name": a.name,
                            "type": a.type,
                            "run_order": a.run_order,
                            "environment": a.environment,
                            "namespace": a.namespace,
                            "inputs": list(a.inputs),
                            "outputs": list(a.outputs),
                        }
                        for a in s.actions
                    ],
                }
                for s in p.stages
            ],
        }
    )
    return out


def attempt_row(store: Store, ex_id: str, stage: str, action: str, attempt: int | None) -> Row:
    """One attempt of an action (the latest when `attempt` is None)."""
    rows = [a for a in store.attempts_for(ex_id) if a["stage"] == stage and a["action"] == action]
    if not rows:
        raise NotFound(f"execution {ex_id} has no attempt of {stage}/{action}")
    if attempt is None:
        return max(rows, key=lambda a: a["attempt"])
    for a in rows:
        if a["attempt"] == attempt:
            return a
    raise NotFound(
        f"{stage}/{action} of execution {ex_id} has no attempt {attempt} "
        f"(attempts: {', '.join(str(a['attempt']) for a in rows)})"
    )


def deployment_view(d: Row) -> dict[str, Any]:
    return {
        k: d[k]
        for k in (
            "id",
            "environment",
            "pipeline",
            "execution_id",
            "kind",
            "image",
            "digest",
            "commit",
            "url",
            "actor",
            "at",
        )
    }


def environments(store: Store) -> list[dict[str, Any]]:
    """Each environment's current deployment (what runs, since when, from where) and health."""
    current = store.current_deployments()
    health = store.health()
    names = sorted(set(current) | set(health), key=lambda n: ({"test": 0, "prod": 1}.get(n, 2), n))
    out = []
    for n in names:
        d = current.get(n)
        h = health.get(n)
        out.append(
            {
                "name": n,
                "current": deployment_view(d) if d else None,
                "health": {
                    "healthy": bool(h["healthy"]),
                    "detail": h["detail"],
                    "since": h["since"],
                    "checked_at": h["checked_at"],
                }
                if h
                else None,
            }
        )
    return out
