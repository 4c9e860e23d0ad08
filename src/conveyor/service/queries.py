"""The queries, once: the read models the CLI, the API and the pages share (pipelines,
executions with their stages and actions, approvals, environments), and `pipeline_of` /
`state_of`, which turn stored records into the model. Plain JSON-able dicts built from the
store's records; statuses are derived with the model's pure functions, never invented here.

It stays light: `conveyor status EXECUTION` reads through it on the stdlib SQLite reader,
so nothing here imports the engine or SQLAlchemy at run time."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import NotFound
from conveyor.model.status import (
    ACTIVE_EXECUTION,
    TERMINAL_EXECUTION,
    ApprovalStatus,
    ExecutionStatus,
)

if TYPE_CHECKING:  # the CLI reads these views: it must not pay for the engine and SQLAlchemy
    from conveyor.model import planner as pl
    from conveyor.model.pipeline import Pipeline
    from conveyor.settings import Settings
    from conveyor.store import records as rec
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.db import Store
    from conveyor.store.sqlite_reader import SqliteReader

    Reads = Store | SqliteReader

TERMINAL = tuple(s.value for s in ExecutionStatus if s in TERMINAL_EXECUTION)
STATUSES = tuple(s.value for s in ExecutionStatus)


def pipeline_of(definition: Mapping[str, Any], name: str = "<stored pipeline>") -> Pipeline:
    """A stored pipeline definition (a file that passed validation, as data) as the model.

    Built directly, without the file parser's pydantic models (`conveyor status` pays for
    none of them); a definition this cannot read goes through the file parser, which says
    what is wrong. tests/unit/test_stored_pipeline.py holds the two to the same model."""
    try:
        return _stored(definition)
    except (KeyError, TypeError, ValueError, AttributeError):
        from conveyor.spec.pipeline_file import parse
        from conveyor.spec.yamlfile import Lines

        return parse(dict(definition), Lines(name))


def _stored(d: Mapping[str, Any]) -> Pipeline:
    from conveyor.model import pipeline as m
    from conveyor.model.duration import parse_duration

    def gf(x: Mapping[str, Any] | None) -> m.GitFilter:
        if x is None:
            return m.GitFilter()
        return m.GitFilter(tuple(x.get("includes", ())), tuple(x.get("excludes", ())))

    stages = []
    for si, s in enumerate(d["stages"]):
        actions = tuple(
            m.Action(
                name=str(a["name"]),
                type=str(a["type"]),
                run_order=int(a.get("runOrder", 1)),
                inputs=tuple(a.get("inputs", ())),
                outputs=tuple(a.get("outputs", ())),
                namespace=a.get("namespace"),
                timeout_seconds=parse_duration(a.get("timeout")),
                config=dict(a.get("config", {})),
                environment=a.get("environment"),
                region=a.get("region"),
                path=("stages", si, "actions", ai),
            )
            for ai, a in enumerate(s["actions"])
        )
        f = s.get("onFailure")
        on_failure = None
        if f is not None:
            retry = f.get("retryConfiguration")
            on_failure = m.OnFailure(
                result=f.get("result", "FAIL"),
                retry_mode=retry.get("retryMode", "FAILED_ACTIONS") if retry else "FAILED_ACTIONS",
            )
        stages.append(m.Stage(str(s["name"]), actions, on_failure, path=("stages", si)))
    envs = {
        n: m.Environment(
            name=n,
            registry=e.get("registry", ""),
            repository=e.get("repository", ""),
            driver=e.get("driver", "podman"),
            port=None if e.get("port") is None else int(e["port"]),
            url=e.get("url"),
            namespace=e.get("namespace"),
            context=e.get("context"),
            cluster=e.get("cluster"),
            settings=dict(e.get("settings", {})),
            path=("environments", n),
        )
        for n, e in d.get("environments", {}).items()
    }
    return m.Pipeline(
        name=str(d["name"]),
        stages=tuple(stages),
        execution_mode=m.ExecutionMode(d.get("executionMode", "SUPERSEDED")),
        variables=tuple(
            m.Variable(
                v["name"],
                v.get("defaultValue", v.get("default")),
                v.get("description", ""),
                path=("variables", i),
                allowed_pattern=v.get("allowedPattern"),
            )
            for i, v in enumerate(d.get("variables", ()))
        ),
        triggers=tuple(
            m.Trigger(
                t["source"],
                gf(t.get("branches")),
                gf(t.get("tags")),
                gf(t.get("filePaths")),
                path=("triggers", i),
            )
            for i, t in enumerate(d.get("triggers", ()))
        ),
        environments=envs,
        settings=dict(d.get("settings", {})),
    )


def state_of(ex: rec.ExecutionRecord, attempts: Sequence[rec.AttemptRecord]) -> pl.ExecutionState:
    """An execution and its attempts as the planner's state."""
    from conveyor.store.planner_state import attempt_view, execution_state

    return execution_state(ex, map(attempt_view, attempts))


class PipelineCache:
    """Parsed pipeline definitions, keyed by execution id (an execution's definition is an
    immutable snapshot) or by pipeline name + update time."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[str, Pipeline] = OrderedDict()
        self.size = size

    def get(self, key: str, definition: Mapping[str, Any], name: str) -> Pipeline:
        p = self._items.get(key)
        if p is None:
            p = pipeline_of(definition, name)
            self._items[key] = p
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return p

    def of_execution(self, ex: rec.ExecutionRecord) -> Pipeline:
        """An execution's pipeline (a full read: a light one has no definition)."""
        return self.get(f"x:{ex.id}", ex.definition or {}, ex.pipeline)

    def of_pipeline(self, row: rec.PipelineRecord) -> Pipeline:
        return self.get(f"p:{row.name}:{row.updated_at}", row.definition, row.name)


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


def execution_summary(ex: rec.ExecutionRecord) -> dict[str, Any]:
    return {
        "id": ex.id,
        "pipeline": ex.pipeline,
        "seq": ex.seq,
        "kind": ex.kind,
        "status": ex.status,
        "message": ex.message or "",
        "waiting": ex.waiting,
        "trigger": ex.trigger,
        "actor": ex.actor,
        "source": source_summary(ex.revisions),
        "created_at": ex.created_at,
        "ended_at": ex.ended_at,
        "duration_seconds": duration(ex.created_at, ex.ended_at),
    }


def _action_view(
    ex_id: str,
    stage: str,
    action: Any,
    row: rec.AttemptRecord | None,
    tries: int,
    full_reports: bool = False,
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
        "status": row.status,
        "reason": row.reason,
        "message": row.message or "",
        "attempt": row.attempt,
        "attempts": tries,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "duration_seconds": duration(row.started_at, row.ended_at),
        "variables": row.variables or {},
        "artifacts": row.artifacts or {},
        "reports": [
            (r if full_reports else {k: v for k, v in r.items() if k != "failures"})
            | {"failed_cases": len(r.get("failures") or [])}
            for r in (row.reports or [])
        ],
        "log_url": f"/api/v1/executions/{ex_id}/actions/{stage}/{action.name}/log"
        f"?attempt={row.attempt}",
        # {execution, attempt, number}: the earlier attempt whose outputs this one reused
        "reused_from": (row.details or {}).get("reused_from"),
    }


def execution_detail(
    store: Reads,
    cache: PipelineCache,
    ex: rec.ExecutionRecord,
    attempts: Sequence[rec.AttemptRecord] | None = None,
    *,
    full_reports: bool = False,
) -> dict[str, Any]:
    """An execution with its stages (derived status, inbound transition) and actions: what the
    API returns and what `conveyor run/status --json` print. `full_reports` keeps each report's
    failed cases (the API serves them on the reports route instead)."""
    pipeline = cache.of_execution(ex)
    attempts = store.attempts_for(ex.id) if attempts is None else attempts
    state = state_of(ex, attempts)
    from conveyor.model import planner as pl

    current = pl.current_attempts(pipeline, state)
    statuses = pl.stage_statuses(pipeline, state)
    rows = {a.id: a for a in attempts}
    tries: dict[tuple[str, str], int] = {}
    for a in attempts:
        tries[(a.stage, a.action)] = tries.get((a.stage, a.action), 0) + 1
    transitions = {r.stage: r for r in store.transitions_for(ex.pipeline)}
    stages = []
    for stage, st in zip(pipeline.stages, statuses, strict=True):
        actions = []
        for action in stage.actions:
            view = current[stage.name].get(action.name)
            row = rows.get(f"{ex.id}/{stage.name}/{action.name}/{view.attempt}") if view else None
            actions.append(
                _action_view(
                    ex.id,
                    stage.name,
                    action,
                    row,
                    tries.get((stage.name, action.name), 0),
                    full_reports,
                )
            )
        starts = [a["started_at"] for a in actions if a["started_at"]]
        ends = [a["ended_at"] for a in actions if a["ended_at"]]
        running = st is not None and st.value in ACTIVE_EXECUTION
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
            "revisions": ex.revisions,
            "variables": ex.variables,
            "stop_mode": ex.stop_mode,
            "superseded_by": ex.superseded_by,
            "execution_mode": pipeline.execution_mode.value,
            "stages": stages,
        }
    )
    return out


def transition_view(row: rec.TransitionRecord | None) -> dict[str, Any]:
    if row is None:
        return {"enabled": True, "reason": "", "actor": None, "at": None}
    return {
        "enabled": bool(row.enabled),
        "reason": row.reason or "",
        "actor": row.actor,
        "at": row.at,
    }


def pipeline_summary(store: Reads, row: rec.PipelineRecord) -> dict[str, Any]:
    latest = store.list_executions(row.name, limit=1, light=True)
    return {
        "name": row.name,
        "source_path": row.source_path,
        "updated_at": row.updated_at,
        "stages": [s["name"] for s in row.definition.get("stages", [])],
        "latest_execution": execution_summary(latest[0]) if latest else None,
    }


def pipeline_detail(store: Reads, cache: PipelineCache, row: rec.PipelineRecord) -> dict[str, Any]:
    p = cache.of_pipeline(row)
    transitions = {r.stage: r for r in store.transitions_for(row.name)}
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


def report_files(attempt: rec.AttemptRecord) -> set[str]:
    """The files an attempt's reports name (relative to its working directory)."""
    return {str(f) for r in attempt.reports or [] for f in r.get("files") or []}


def attempt_row(
    store: Reads, ex_id: str, stage: str, action: str, attempt: int | None
) -> rec.AttemptRecord:
    """One attempt of an action (the latest when `attempt` is None)."""
    rows = [a for a in store.attempts_for(ex_id) if a.stage == stage and a.action == action]
    if not rows:
        raise NotFound(f"execution {ex_id} has no attempt of {stage}/{action}")
    if attempt is None:
        return max(rows, key=lambda a: a.attempt)
    for a in rows:
        if a.attempt == attempt:
            return a
    raise NotFound(
        f"{stage}/{action} of execution {ex_id} has no attempt {attempt} "
        f"(attempts: {', '.join(str(a.attempt) for a in rows)})"
    )


_DEPLOYMENT_FIELDS = "id environment pipeline execution_id kind image digest commit url actor at"


def pick(record: Any, fields: str) -> dict[str, Any]:
    """The named fields of a record (space-separated), as a JSON-able dict."""
    return {k: getattr(record, k) for k in fields.split()}


def deployment_view(d: rec.DeploymentRecord) -> dict[str, Any]:
    return pick(d, _DEPLOYMENT_FIELDS)


def health_view(h: rec.HealthRecord) -> dict[str, Any]:
    """An environment's health as the API, the dashboard and `env list --json` show it."""
    return {
        "healthy": bool(h.healthy),
        "detail": h.detail,
        "since": h.since,
        "checked_at": h.checked_at,
    }


def environments(store: Store) -> list[dict[str, Any]]:
    """Each environment's current deployment (what runs, since when, from where) and health."""
    current = store.current_deployment_records()
    health = store.health_records()
    names = sorted(set(current) | set(health), key=lambda n: ({"test": 0, "prod": 1}.get(n, 2), n))
    out = []
    for n in names:
        d = current.get(n)
        h = health.get(n)
        out.append(
            {
                "name": n,
                "current": deployment_view(d) if d else None,
                "health": health_view(h) if h else None,
            }
        )
    return out


# ---- approvals ---------------------------------------------------------------------------------
def latest_approval(store: Reads, ex_id: str) -> rec.ApprovalRecord:
    """The execution's pending approval, else its most recent one."""
    rows = store.approval_records(ex_id)
    if not rows:
        raise NotFound(f"execution {ex_id} has no approval (it has not reached an approval action)")
    pending = [a for a in rows if a.status == ApprovalStatus.PENDING]
    return pending[-1] if pending else rows[-1]


def approval_config(pipeline: Pipeline, attempt_id: str) -> dict[str, Any]:
    """The approval action's config in the pipeline definition (variables unresolved)."""
    parts = attempt_id.split("/")
    try:
        return dict(pipeline.stage(parts[1]).action(parts[2]).config)
    except (KeyError, IndexError):
        return {}


def authors(ex: rec.ExecutionRecord) -> set[str]:
    """Who wrote the change: the sources' author emails and the user who started it."""
    out = {
        str(r["AuthorEmail"]).lower()
        for r in (ex.revisions or {}).values()
        if isinstance(r, dict) and r.get("AuthorEmail")
    }
    if ex.actor:
        out.add(str(ex.actor).lower())
    return out


def is_author(name: str, email: str | None, ex: rec.ExecutionRecord) -> bool:
    """Whether the user `name` (with `email`) wrote the change of execution `ex`."""
    who = authors(ex)
    return name.lower() in who or bool(email and email.lower() in who)


def pending_list(store: Store) -> list[dict[str, Any]]:
    """The approvals waiting for a decision, with their execution's pipeline and number."""
    out = []
    for a in store.pending_approvals():
        parts = a.attempt_id.split("/")
        try:
            ex = store.execution(a.execution_id)
        except NotFound:
            continue
        out.append(
            {
                "execution_id": a.execution_id,
                "pipeline": ex.pipeline,
                "seq": ex.seq,
                "stage": parts[1] if len(parts) > 1 else "",
                "action": parts[2] if len(parts) > 2 else "",
                "status": a.status,
                "summary": a.summary,
                "digest": a.digest,
                "created_at": a.created_at,
                "expires_at": a.expires_at,
            }
        )
    return out


# ---- what the CLI shows ------------------------------------------------------------------------
def describe(store: Reads, cache: PipelineCache, ex_id: str) -> dict[str, Any]:
    """An execution as `conveyor run/status` show it: the API's detail with every report's
    failed cases, and `waiting` as what it waits for (see `waiting_for`)."""
    desc = execution_detail(store, cache, store.execution(ex_id), full_reports=True)
    desc["waiting"] = waiting_for(store, desc)
    return desc


def waiting_for(store: Reads, desc: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the execution waits for: a pending approval `{type: approval, stage, action,
    digest, expires}`, or why nothing can start `{type: blocked, message}` (a disabled
    transition, a busy stage); None when it waits for nothing."""
    for a in store.approval_records(desc["id"]):
        if a.status == ApprovalStatus.PENDING:
            _, stage, action, _ = a.attempt_id.split("/")
            return {
                "type": "approval",
                "stage": stage,
                "action": action,
                "digest": a.digest,
                "expires": _iso(a.expires_at),
            }
    if desc["waiting"]:
        return {"type": "blocked", "message": desc["waiting"]}
    return None


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def latest_per_pipeline(store: Reads) -> list[dict[str, Any]]:
    """Each pipeline's name and its latest execution (a light row: `LIGHT_EXECUTION`'s
    columns), or None."""
    from conveyor.store.columns import LIGHT_EXECUTION

    latest = []
    for name in store.pipeline_names():
        rows = store.list_executions(pipeline=name, limit=1, light=True)
        light = pick(rows[0], " ".join(LIGHT_EXECUTION)) if rows else None
        latest.append({"pipeline": name, "latest": light})
    return latest


def rollback_of(store: Reads, ex_id: str) -> rec.ExecutionRecord | None:
    """The rollback execution started because `ex_id` failed, if any."""
    for r in store.list_executions(limit=10, light=True):
        if r.kind == "rollback" and (r.trigger or {}).get("of") == ex_id:
            return r
    return None


def one_pipeline(store: Reads, pipeline: str | None) -> str:
    """The pipeline named, else the only one (a usage error when there are several)."""
    from conveyor.errors import ConfigError

    if pipeline:
        store.pipeline_record(pipeline)
        return pipeline
    names = store.pipeline_names()
    if len(names) != 1:
        raise ConfigError(
            f"say which pipeline with --pipeline (known: {', '.join(names) or 'none'})"
        )
    return str(names[0])


def follow_log(path: Path, done: Callable[[], bool]) -> Iterator[str]:
    """A log file's text as it grows, until `done()` and the file is read to its end."""
    from conveyor.engine.logs import follow

    return follow(path, done)


def approval_evidence(
    store: Store,
    artifacts: ArtifactStore,
    settings: Settings,
    cache: PipelineCache,
    ex_id: str,
) -> dict[str, Any]:
    """An execution's approval with its evidence (tests, failures, screenshots, digest,
    commits), its execution's summary and whether its author may approve it."""
    from conveyor.service import evidence

    ex = store.execution(ex_id)
    row = latest_approval(store, ex.id)
    pipeline = cache.of_execution(ex)
    out = evidence.gather(store, artifacts, settings, pipeline, ex, row)
    out["execution"] = execution_summary(ex)
    cfg = approval_config(pipeline, row.attempt_id)
    out["self_approval"] = bool(cfg.get("selfApproval", True))
    return out


# ---- the store's reads, for the entry points (they call no store method themselves) ----------


def pipelines(store: Reads) -> list[rec.PipelineRecord]:
    return store.pipeline_records()


def pipeline_row(store: Reads, name: str) -> rec.PipelineRecord:
    return store.pipeline_record(name)


def pipeline_names(store: Store) -> list[str]:
    return store.pipeline_names()


def execution(store: Reads, ex_id: str) -> rec.ExecutionRecord:
    """The execution `ex_id` (a full id or a unique prefix); NotFound otherwise."""
    return store.execution(ex_id)


def executions(
    store: Reads, pipeline: str | None = None, status: str | None = None, **page: Any
) -> list[rec.ExecutionRecord]:
    return store.list_executions(pipeline, status, **page)


def execution_count(store: Store, pipeline: str | None, status: str | None) -> int:
    return store.count_executions(pipeline, status)


def attempts(store: Reads, ex_id: str) -> list[rec.AttemptRecord]:
    return store.attempts_for(ex_id)


def approvals(store: Reads, ex_id: str) -> list[rec.ApprovalRecord]:
    return store.approval_records(ex_id)


def pending_approvals(store: Store) -> list[rec.ApprovalRecord]:
    return store.pending_approvals()


def history(store: Store, ex_id: str) -> list[rec.AttemptMoveRecord]:
    return store.history_for(ex_id)


def transitions(store: Reads, pipeline: str) -> list[rec.TransitionRecord]:
    return store.transitions_for(pipeline)


def change_request(store: Store, req_id: int) -> rec.RequestRecord:
    return store.get_request(req_id)


def deployments(store: Store, environment: str | None, limit: int) -> list[rec.DeploymentRecord]:
    return store.deployment_records(environment, limit=limit)


def audit_log(store: Store, limit: int) -> list[rec.AuditRecord]:
    return store.audit_log(limit)


def artifact_file(artifacts: ArtifactStore, digest: str, rel: str) -> Path | None:
    """Where the file `rel` of the artifact `digest` is kept; None when it has no such file."""
    for f in artifacts.manifest(digest):
        if f["path"] == rel and "blob" in f:
            blob = str(f["blob"])
            return artifacts.blobs / blob[:2] / blob
    return None


def live_engines(store: Reads, max_age: float) -> list[rec.EngineRecord]:
    """The engine loops whose lease is younger than `max_age` seconds."""
    return store.live_engines(max_age)


def pending_requests(store: Store, ex_id: str) -> list[Any]:
    return list(store.pending_requests(ex_id))


def active_executions(store: Store) -> list[Any]:
    return list(store.active_executions())


def current_deployments(store: Store) -> dict[str, rec.DeploymentRecord]:
    """Each environment's current deployment, by environment name."""
    return store.current_deployment_records()


def health(store: Store) -> dict[str, rec.HealthRecord]:
    return store.health_records()


def stored_pipelines(settings: Settings) -> list[rec.PipelineRecord]:
    """The stored pipelines, read through a store opened and closed for this one read."""
    from conveyor.service.commands import open_store

    store = open_store(settings)
    try:
        return store.pipeline_records()
    finally:
        store.close()
