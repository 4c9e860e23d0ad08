"""The commands, once: every change a person asks for through the CLI, the REST API or the
dashboard. Start an execution; stop, abandon or retry one; disable or enable a transition;
decide an approval; roll an environment back; add a user; apply a pipeline.

Each command checks its preconditions here, so that the entry points agree: stopping an
execution that is not running, retrying one that neither failed nor stopped, and disabling
the transition into the first stage are refused with the same error from every door. A
change is a row the engine acts on (a request, a transition, a decision), never a status
written here; each is appended to the audit log.

The store, the engine and the user table are imported when a command runs: the CLI imports
this module on its light paths.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError, Conflict, NotFound
from conveyor.model.status import ACTIVE_EXECUTION, ApprovalStatus, ExecutionStatus
from conveyor.service.users import User, Users, require

if TYPE_CHECKING:
    from conveyor.engine.engine import Engine
    from conveyor.engine.rollback import RollbackPlan
    from conveyor.model.pipeline import Pipeline
    from conveyor.service.queries import PipelineCache
    from conveyor.settings import Settings
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.db import Store
    from conveyor.store.records import ApprovalRecord

STOPPABLE = ACTIVE_EXECUTION
RETRYABLE = (ExecutionStatus.FAILED, ExecutionStatus.STOPPED)


# ---- opening the store -------------------------------------------------------------------------
def open_store(settings: Settings) -> Store:
    """The store of the settings' database (migrated to the code's schema)."""
    from conveyor.store.db import Store

    return Store.from_settings(settings)


def open_artifacts(settings: Settings) -> ArtifactStore:
    """The artifact store of the state dir."""
    from conveyor.store.artifacts import ArtifactStore

    return ArtifactStore(settings.state_dir / "artifacts")


def starting_engine(store: Store, settings: Settings, artifacts: ArtifactStore) -> Engine:
    """An idle engine that only starts executions (it writes the execution row; whichever
    engine loop runs picks it up): no action types, no platform, one worker."""
    from conveyor.actions.registry import ActionRegistry
    from conveyor.bootstrap import build_services
    from conveyor.engine.engine import Engine

    return Engine(
        store,
        settings,
        ActionRegistry({}),
        build_services(settings, artifacts),
        max_workers=1,
    )


# ---- pipelines and executions ------------------------------------------------------------------
def apply_pipeline(
    store: Store, pipeline: Pipeline, doc: Mapping[str, Any], path: str, actor: str
) -> None:
    """Create or update a pipeline from its file (audited)."""
    store.save_pipeline(pipeline.name, doc, path)
    store.audit(actor, "pipeline.apply", pipeline.name, {"file": path})


def save_pipeline(store: Store, pipeline: Pipeline, doc: Mapping[str, Any], path: str) -> None:
    """Store a pipeline's definition as `conveyor run` and the demo do (not audited, as before)."""
    store.save_pipeline(pipeline.name, doc, path)


def ask(store: Store, ex_id: str, kind: str, payload: Mapping[str, Any], actor: str) -> int:
    """Queue a request for the engine on execution `ex_id` without checking preconditions
    (Ctrl-C in `conveyor run` abandons its own execution); returns the request id."""
    return store.add_request(ex_id, kind, dict(payload), actor=actor)


def close_store(store: Store) -> None:
    store.close()


def start_execution(
    engine: Engine,
    name: str,
    *,
    variables: Mapping[str, str],
    actor: str,
    trigger: Mapping[str, Any],
    audit: Mapping[str, Any] | None = None,
) -> str:
    """Start an execution of the stored pipeline `name`; audited when `audit` is given."""
    store = engine.store
    store.pipeline_record(name)
    ex_id = engine.start(name, variables=dict(variables), trigger=dict(trigger), actor=actor)
    if audit is not None:
        store.audit(actor, "execution.start", ex_id, dict(audit))
    engine.wake()
    return ex_id


def request_change(
    store: Store, ex_id: str, kind: str, payload: Mapping[str, Any], actor: str
) -> tuple[int, str]:
    """Ask the engine to stop, abandon or retry an execution (a request row), and audit it;
    returns (request id, execution id). Stopping needs a running execution, retrying a
    Failed or Stopped one: anything else is a Conflict, whoever asks."""
    ex = store.execution(ex_id)
    if kind in ("stop", "abandon") and ex.status not in STOPPABLE:
        raise Conflict(f"execution {ex.id} is {ex.status}: there is nothing to stop")
    if kind == "retry" and ex.status not in RETRYABLE:
        raise Conflict(
            f"execution {ex.id} is {ex.status}: only a Failed or Stopped execution can be retried"
        )
    req = store.add_request(ex.id, kind, dict(payload), actor=actor)
    store.audit(actor, f"execution.{kind}", ex.id, dict(payload))
    return req, ex.id


def set_transition(
    store: Store,
    cache: PipelineCache,
    name: str,
    stage: str,
    enabled: bool,
    reason: str,
    actor: str,
) -> None:
    """Disable (with a reason) or enable the transition into `stage`, and audit it. The first
    stage has no transition into it: changing it is refused."""
    from conveyor.model.validate import did_you_mean

    p = cache.of_pipeline(store.pipeline_record(name))
    names = [s.name for s in p.stages]
    if stage not in names:
        raise NotFound(
            f"pipeline '{name}' has no stage '{stage}'{did_you_mean(stage, names)}"
            f" (stages: {', '.join(names)})"
        )
    if stage == names[0]:
        raise ConfigError(
            f"'{stage}' is the first stage: there is no transition into it to disable"
        )
    store.set_transition(name, stage, enabled, reason, actor)
    store.audit(
        actor,
        "transition.enable" if enabled else "transition.disable",
        f"{name}/{stage}",
        {"reason": reason},
    )


# ---- approvals ---------------------------------------------------------------------------------
def decide_approval(
    store: Store,
    cache: PipelineCache,
    ex_id: str,
    user: User,
    *,
    approve: bool,
    comment: str,
    digest: str | None,
    require_digest: bool,
) -> ApprovalRecord:
    """Approve or reject an execution's pending approval as `user` and audit it. The decision
    is `engine.gate.decide`, a compare-and-set on the approval row: exactly one wins.

    `require_digest`: the caller (API, page) must name the digest it showed; a mismatch is a
    Conflict. The CLI decides on what is pending and prints the digest it decided on.
    """
    from conveyor.engine import gate
    from conveyor.errors import Problem, ValidationFailed
    from conveyor.service.queries import approval_config, is_author, latest_approval

    require(user, "approver", "deciding an approval")
    ex = store.execution(ex_id)
    row = latest_approval(store, ex.id)
    if row.status != ApprovalStatus.PENDING:
        raise Conflict(
            f"the approval of execution {ex.id} is no longer pending: {row.status}"
            f" by {row.decided_by or 'the engine'}" + (f" ({row.comment})" if row.comment else "")
        )
    if require_digest and row.digest and not digest:
        raise ValidationFailed(
            [
                Problem(
                    "request",
                    None,
                    f"this approval is bound to image {row.digest}: "
                    "send the digest you reviewed as 'digest'",
                )
            ]
        )
    cfg = approval_config(cache.of_execution(ex), row.attempt_id)
    decided = gate.decide(
        store,
        ex.id,
        approve=approve,
        by=user.name,
        comment=comment,
        digest=digest,
        author=user.name if is_author(user.name, user.email, ex) else None,
        self_approval=bool(cfg.get("selfApproval", True)),
    )
    store.audit(
        user.name,
        "approval.approve" if approve else "approval.reject",
        ex.id,
        {"attempt": decided.attempt_id, "digest": decided.digest, "comment": comment},
    )
    return decided


# ---- rollback ----------------------------------------------------------------------------------
def plan_rollback(store: Store, environment: str, to: str | None) -> RollbackPlan:
    """What rolling `environment` back (to `to`, else the last good version) redeploys."""
    from conveyor.engine.rollback import plan_rollback as plan

    return plan(store, environment, to=to)


def roll_back(store: Store, plan: RollbackPlan, *, reason: str, actor: str) -> str:
    """Start the rollback execution of `plan`; returns its id."""
    from conveyor.engine.rollback import start_rollback

    return start_rollback(store, plan, failed_execution=None, reason=reason, actor=actor)


# ---- users and the audit log -------------------------------------------------------------------
def add_user(
    store: Store, name: str, role: str, email: str | None, *, replace: bool, actor: str
) -> str:
    """Create a user (or give one a new token with `replace`), audited; returns the token."""
    token = Users(store).add(name, role, email, replace=replace)
    store.audit(actor, "user.create", name, {"role": role, "email": email, "replace": replace})
    return token


def record(
    store: Store, actor: str, action: str, target: str | None, detail: Mapping[str, Any]
) -> None:
    """Append a change made outside the commands above (a sign-in) to the audit log."""
    store.audit(actor, action, target, dict(detail))


# ---- the engine loop ---------------------------------------------------------------------------
def start_matching(app: Any, *, repository: str, ref: str, old: str, new: str) -> list[Any]:
    """Start the pipelines whose triggers match a push; returns (execution id, pipeline)."""
    from conveyor.engine.triggers import start_matching as start

    return list(start(app, repository=repository, ref=ref, old=old, new=new))


def run_engine(
    app: Any,
    stop: threading.Event,
    *,
    until: Callable[[Engine], bool] | None = None,
    poll: float | None = None,
) -> Engine:
    """Drive executions in this thread until `stop` (or `until(engine)`), polling remote sources
    every `poll` seconds in a thread of their own; returns the engine (shut down)."""
    eng: Engine = app.engine()
    if poll:
        from conveyor.engine.triggers import Poller

        poller = Poller(app, interval=poll)
        threading.Thread(target=poller.run, args=(stop,), daemon=True).start()
    try:
        eng.run(stop, until=(lambda: until(eng)) if until else None)
    finally:
        stop.set()
        eng.shutdown(wait=False)
    return eng


# ---- the light path of `conveyor run --detach` -------------------------------------------------
def start_detached(
    settings: Settings,
    pipeline: Pipeline,
    doc: Mapping[str, Any],
    path: str,
    *,
    variables: Mapping[str, str],
    actor: str,
    trigger: Mapping[str, Any],
) -> tuple[str, Any] | None:
    """Save the pipeline and queue an execution of it through the stdlib SQLite writer (no
    SQLAlchemy, no engine: a running engine, or one started in the background, drives it).
    Returns (execution id, the writer, which reads `live_engines`), or None when the
    database is not SQLite at the code's schema (the caller then takes the full path)."""
    from conveyor.model.variables import start_values
    from conveyor.store.sqlite_writer import open_writer

    writer = open_writer(settings.database_url)
    if writer is None:
        return None
    resolved, refused = start_values(pipeline.name, pipeline.variables, variables)
    if refused:
        writer.close()
        raise ConfigError(refused)
    writer.save_pipeline(pipeline.name, doc, path)
    ex_id = writer.create_execution(
        pipeline.name, doc, variables=resolved, trigger=dict(trigger), actor=actor
    )
    return ex_id, writer
