"""Roll a stage back to the last good version, as CodePipeline's RollbackStage does.

When: an execution fails in a stage because a `monitor` action found a breach (reason
ActionFailed), or fails in any way in a stage with `onFailure: {result: ROLLBACK}`. Then,
for each environment the failing execution deployed to in that stage, Conveyor starts a
rollback; `conveyor rollback ENV [--to EXECUTION|DIGEST]` does the same on demand.

What is restored: the environment's last deployment before the failing one whose execution
succeeded (a rollback execution counts) — its digest, from the registry it was deployed
from (no rebuild; the image is pinned by digest and must still be there), with that
execution's own manifests (the input artifacts of its deploy action, from the artifact
store, by digest), into the environment as it was defined at that deployment (recorded
with it: a Kubernetes context, namespace and kubeconfig), not as the pipeline that ran
last defines it. On Kubernetes the whole set of objects is re-applied (ConfigMaps by their
content-hashed names, Services, every Deployment field); objects that the release rolled
back added and the restored one does not have are **kept and reported** (in the log, the
result and the deployment's `kept`), never deleted by a rollback: they may hold data or
be used by others (a failed deploy's own undo does delete what it added, see
conveyor.adapters.kubernetes). Old hashed ConfigMaps are left to the garbage collection.

How — a rollback *execution*, not a side door. The rollback is a new execution of the same
pipeline with kind `rollback`, trigger `{"type": "Rollback", "of": FAILED, "to": PREVIOUS}`
and the previous execution's source revisions; its definition is generated: one stage (the
rolled-back stage's name) with one action (the deploy action's name) of type
`deploy.rollback`, which restores the manifests and runs the very same `deploy` code. Why
this rather than calling the environment driver directly and writing rows by hand: the
rollback then gets everything an execution gets for free — an attempt row persisted before
it acts, a log, leases and crash recovery, timeouts, stop, the deployment recorded by the
engine (kind `rollback`) — and appears in `history`, `status` and the dashboard like any
run. The failing execution stays Failed and untouched. The generated pipeline runs in
PARALLEL mode, so it never waits for, nor is superseded by, other executions (the
environment's deploy lock still serialises the deploys themselves).

Production is never left without a serving version: the deploy driver starts the old
version beside the failing one and switches only once it is ready; if the rollback cannot
deploy, the failing version keeps serving and the alert says so.

Alerts (Slack-compatible webhook, conveyor.monitoring.alerts) when a rollback starts, when
it ends (rolled back, or not), and when a failure has nothing to roll back to.

Wiring: `Rollbacks` is an ordinary part. The composition root (conveyor.bootstrap) builds it
with the alert `Notifier` it owns and installs its hooks on the engines it builds; the
`deploy.rollback` type is registered through the `conveyor.actions` entry point and gets
the artifact store from `ctx.services`. The rollback execution runs on the same engine as
the failed one: the engine calls `on_stage_failed` before it writes the Failed status, so
`conveyor run`, which follows an execution until it and its rollback have ended, keeps its
engine running until the rollback is done.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.actions.rollback import ROLLBACK_TYPE
from conveyor.engine.hooks import Hooks
from conveyor.errors import ConfigError, ConveyorError, NotFound
from conveyor.model.pipeline import Pipeline
from conveyor.model.status import ActionStatus, ExecutionStatus
from conveyor.monitoring import alerts
from conveyor.store.db import Store
from conveyor.store.records import AttemptRecord, DeploymentRecord, ExecutionRecord

if TYPE_CHECKING:
    from conveyor.engine.engine import Engine

log = logging.getLogger("conveyor.rollback")
KEPT_CONFIG = ("manifests", "container", "timeout")


# ---- choosing what to restore --------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackPlan:
    environment: str
    pipeline: str
    stage: str
    action: str
    current: DeploymentRecord  # the deployment serving now
    target: DeploymentRecord  # the deployment to restore
    artifacts: dict[str, str]
    deploy_config: dict[str, Any]

    @property
    def to_execution(self) -> str:
        return str(self.target.execution_id)

    def describe(self) -> str:
        return (
            f"{self.environment}: {_short(self.current.digest)} -> "
            f"{_short(self.target.digest)} (from execution {self.to_execution})"
        )


def _short(digest: Any) -> str:
    return str(digest or "?")[:19]


def plan_rollback(
    store: Store, environment: str, *, failed_execution: str | None = None, to: str | None = None
) -> RollbackPlan:
    """What a rollback of ENVIRONMENT would restore (raises NotFound/ConfigError if nothing).

    `failed_execution`: restore the last good deployment before that execution's first
    deployment to the environment. `to`: an execution id (or prefix) or an image digest
    (`sha256:...`, or its first 12+ hex digits) that was deployed there before. Neither: the
    last good deployment before the current one with another digest.
    """
    deps = store.deployment_records(environment, limit=10000)  # newest first
    if not deps:
        raise NotFound(
            f"nothing was ever deployed to environment '{environment}': nothing to "
            "roll back (see `conveyor env list`)"
        )
    current = deps[0]
    statuses: dict[str, str] = {}

    def status(ex_id: str | None) -> str:
        if not ex_id:
            return "?"
        if ex_id not in statuses:
            try:
                statuses[ex_id] = store.execution(ex_id, light=True).status
            except NotFound:
                statuses[ex_id] = "?"
        return statuses[ex_id]

    if to:
        target = _match(deps, to)
        if target is None:
            known = ", ".join(f"{d.execution_id} ({_short(d.digest)})" for d in deps[:8])
            raise NotFound(
                f"'{to}' is neither an execution nor a digest deployed to "
                f"'{environment}' (recent: {known})"
            )
    else:
        if failed_execution:
            mine = [i for i, d in enumerate(deps) if d.execution_id == failed_execution]
            if not mine:
                raise NotFound(
                    f"execution {failed_execution} deployed nothing to "
                    f"'{environment}': nothing to roll back there"
                )
            older = deps[max(mine) + 1 :]
        else:
            older = [d for d in deps[1:] if d.digest != current.digest]
        target = next(
            (d for d in older if status(d.execution_id) == ExecutionStatus.SUCCEEDED), None
        )
        if target is None:
            raise NotFound(
                f"environment '{environment}' has no earlier deployment from a "
                "succeeded execution to roll back to; deploy a fixed version, or "
                "pick one with `conveyor rollback ENV --to EXECUTION|DIGEST`"
            )
    details = target.details or {}
    stage = details.get("stage") or (current.details or {}).get("stage")
    action = details.get("action") or (current.details or {}).get("action")
    if not stage or not action or not target.image:
        raise ConfigError(
            f"the deployment of execution {target.execution_id} to "
            f"'{environment}' does not say which stage/action/image made it; it "
            "cannot be redeployed automatically"
        )
    artifacts, config = _manifests_of(store, target)
    return RollbackPlan(
        environment,
        str(target.pipeline),
        str(stage),
        str(action),
        current,
        target,
        artifacts,
        config,
    )


def _match(deps: list[DeploymentRecord], to: str) -> DeploymentRecord | None:
    text = to.strip()
    hexpart = text.split(":", 1)[1] if text.startswith("sha256:") else text
    for d in deps:
        if d.execution_id and (
            d.execution_id == text or (len(text) >= 4 and str(d.execution_id).startswith(text))
        ):
            return d
    if len(hexpart) >= 12:
        for d in deps:
            digest = str(d.digest or "")
            if digest.split(":", 1)[-1].startswith(hexpart):
                return d
    return None


def _manifests_of(store: Store, dep: DeploymentRecord) -> tuple[dict[str, str], dict[str, Any]]:
    """The input artifacts (by digest) and deploy config that produced a deployment."""
    details = dep.details or {}
    if details.get("artifacts"):  # a rollback deployment carries them
        return dict(details["artifacts"]), dict(details.get("deploy_config") or {})
    from conveyor.engine.engine import pipeline_of

    ex = store.execution(str(dep.execution_id))
    pipeline = pipeline_of(ex.definition or {}, ex.pipeline)
    try:
        action = pipeline.stage(details["stage"]).action(details["action"])
    except KeyError:
        raise ConfigError(
            f"execution {ex.id} has no action {details.get('stage')}/"
            f"{details.get('action')} any more"
        ) from None
    latest: dict[tuple[str, str], AttemptRecord] = {}
    for a in store.attempts_for(ex.id):
        if a.status == ActionStatus.SUCCEEDED:
            latest[(a.stage, a.action)] = a
    produced: dict[str, str] = {}
    for a in latest.values():
        produced.update(a.artifacts or {})
    missing = [n for n in action.inputs if n not in produced]
    if missing:
        raise NotFound(
            f"execution {ex.id}: the artifact(s) {', '.join(missing)} its deploy "
            "read are not recorded; it cannot be redeployed"
        )
    config = {
        k: action.config[k]
        for k in KEPT_CONFIG
        if k in action.config and "#{" not in str(action.config[k])
    }
    return {n: produced[n] for n in action.inputs}, config


# ---- starting a rollback execution ---------------------------------------------------------


def environment_at(
    target: DeploymentRecord, source: ExecutionRecord, current_def: dict[str, Any]
) -> dict[str, Any]:
    """The environment as it was when TARGET was deployed: its context, namespace, kubeconfig.

    In order: the definition recorded with the deployment (since deployments record it),
    the definition of the execution that made it, then the pipeline's current one (only
    for an environment neither knows).
    """
    name = str(target.environment)
    recorded = (target.details or {}).get("environment_definition")
    if isinstance(recorded, dict) and recorded:
        return dict(recorded)
    for definition in (source.definition or {}, current_def):
        env = dict(definition.get("environments") or {}).get(name)
        if env:
            return dict(env)
    return {}


def start_rollback(
    store: Store, plan: RollbackPlan, *, failed_execution: str | None, reason: str, actor: str
) -> str:
    """Create the rollback execution (kind rollback); a running engine picks it up."""
    pipeline_row = store.pipeline_record(plan.pipeline)
    current_def = dict(pipeline_row.definition)
    source = store.execution(plan.to_execution)
    env_def = environment_at(plan.target, source, current_def)
    config: dict[str, Any] = {
        "image": plan.target.image,
        "artifacts": plan.artifacts,
        "to": plan.to_execution,
        "reason": reason,
        **plan.deploy_config,
    }
    if failed_execution:
        config["of"] = failed_execution
    current = plan.current.details or {}
    replaces = [
        r
        for r in current.get("applied") or []
        if r not in (current.get("hashed_config_maps") or [])
    ]
    if replaces:
        config["replaces"] = replaces
    action: dict[str, Any] = {
        "name": plan.action,
        "type": ROLLBACK_TYPE,
        "environment": plan.environment,
        "config": config,
    }
    definition: dict[str, Any] = {
        "name": plan.pipeline,
        "executionMode": "PARALLEL",
        "environments": {plan.environment: env_def},
        "stages": [{"name": plan.stage, "actions": [action]}],
    }
    if current_def.get("settings"):
        definition["settings"] = current_def["settings"]
    trigger = {
        "type": "Rollback",
        "of": failed_execution or plan.current.execution_id,
        "to": plan.to_execution,
        "environment": plan.environment,
        "digest": plan.target.digest,
        "commit": plan.target.commit,
        "from_digest": plan.current.digest,
        "reason": reason,
        "by": actor,
        "automatic": failed_execution is not None,
    }
    ex_id = store.create_execution(
        plan.pipeline,
        definition,
        variables={},
        trigger=trigger,
        revisions=dict(source.revisions or {}),
        kind="rollback",
        actor=actor,
    )
    store.audit(actor, "rollback", plan.environment, {"execution": ex_id, **trigger})
    return ex_id


# ---- the engine hooks ---------------------------------------------------------------------------


def should_roll_back(
    pipeline: Pipeline, stage_name: str, attempts: list[AttemptRecord]
) -> str | None:
    """Why the failure of STAGE calls for a rollback (None: it does not)."""
    try:
        stage = pipeline.stage(stage_name)
    except KeyError:
        return None
    failed = [a for a in attempts if a.stage == stage_name and a.status == ActionStatus.FAILED]
    if not failed:
        return None
    last = failed[-1]
    monitors = [a for a in failed if a.type == "monitor" and a.reason == "ActionFailed"]
    if monitors:
        return f"{stage_name}/{monitors[-1].action} failed: {monitors[-1].message}"
    if stage.on_failure is not None and stage.on_failure.result == "ROLLBACK":
        return (
            f"{stage_name}/{last.action} failed ({last.reason}) in a stage with "
            f"onFailure ROLLBACK: {last.message}"
        )
    return None


class Rollbacks:
    """The rollback part of an engine: its hooks start a rollback execution when a stage
    fails, and alert when one starts and ends. Built by `conveyor.bootstrap` with the alert
    notifier it owns; the rollback executions run on the same engine as any other (the hook
    runs before the failed execution is marked Failed, so whoever follows that execution
    sees its rollback too, and keeps the engine running until the rollback ends)."""

    def __init__(self, notifier: alerts.Notifier) -> None:
        self.notifier = notifier

    def install(self, hooks: Hooks) -> None:
        hooks.on_stage_failed.append(self.on_stage_failed)
        hooks.on_execution_done.append(self.on_execution_done)

    def on_stage_failed(
        self, engine: Engine, ex: ExecutionRecord, pipeline: Pipeline, stage_name: str
    ) -> None:
        if ex.kind == "rollback":
            return  # a failed rollback is reported by on_execution_done; never roll one back
        store = engine.store
        attempts = store.attempts_for(ex.id)
        reason = should_roll_back(pipeline, stage_name, attempts)
        if reason is None:
            return
        failed_at = max((a.ended_at or 0.0) for a in attempts if a.status == ActionStatus.FAILED)
        if _already_rolled_back(store, ex, failed_at):
            return
        envs = _environments_switched(store, ex, stage_name, attempts)
        hook = alerts.webhook_of(ex.definition)
        if not envs:
            self.notifier.send_later(
                hook,
                f":warning: {_where(ex)} failed: {reason}. It switched no "
                "environment in that stage: nothing to roll back.",
                "rollback-skipped",
                {"execution": ex.id, "reason": reason},
            )
            return
        for env in envs:
            self._start(store, ex, env, reason, hook)
        engine.wake()

    def _start(
        self, store: Store, ex: ExecutionRecord, env: str, reason: str, hook: str | None
    ) -> None:
        """Start the rollback of ENV after EX failed, and say so (or why it cannot)."""
        where = _where(ex)
        try:
            plan = plan_rollback(store, env, failed_execution=ex.id)
            rb = start_rollback(
                store, plan, failed_execution=ex.id, reason=reason, actor="engine (rollback)"
            )
        except ConveyorError as exc:
            log.error("no rollback of %s after %s: %s", env, ex.id, exc.message)
            self.notifier.send_later(
                hook,
                f":rotating_light: {where} failed in {env} ({reason}) and "
                f"could NOT be rolled back: {exc.message}. {env} still "
                "serves the failing version.",
                "rollback-impossible",
                {"execution": ex.id, "environment": env, "error": exc.message},
            )
            return
        log.warning(
            "execution %s failed (%s): rolling %s back in execution %s",
            ex.id,
            reason,
            plan.describe(),
            rb,
        )
        self.notifier.send_later(
            hook,
            f":rewind: {where} failed: {reason}. Rolling *{env}* back to "
            f"{_short(plan.target.digest)} (from execution "
            f"`{plan.to_execution}`) in execution `{rb}`.",
            "rollback-started",
            {
                "execution": rb,
                "of": ex.id,
                "to": plan.to_execution,
                "environment": env,
                "digest": plan.target.digest,
                "from_digest": plan.current.digest,
                "reason": reason,
            },
        )

    def on_execution_done(self, engine: Engine, ex: ExecutionRecord, pipeline: Pipeline) -> None:
        if ex.kind != "rollback":
            return
        trig = ex.trigger or {}
        facts = {
            "execution": ex.id,
            "of": trig.get("of"),
            "to": trig.get("to"),
            "environment": trig.get("environment") or "?",
            "digest": trig.get("digest"),
            "status": ex.status,
            "from_digest": trig.get("from_digest"),
            "reason": trig.get("reason"),
        }
        hook = alerts.webhook_of(ex.definition)
        self.notifier.send_later(hook, _finished_text(ex, trig), "rollback-finished", facts)


def _where(ex: ExecutionRecord) -> str:
    return f"*{ex.pipeline}* execution `{ex.id}`"


def _environments_switched(
    store: Store, ex: ExecutionRecord, stage_name: str, attempts: list[AttemptRecord]
) -> list[str]:
    """The environments EX deployed to in STAGE, or that a monitor of STAGE watched."""
    envs: list[str] = []
    for d in store.deployment_records(limit=10000):
        details = d.details or {}
        if (
            d.execution_id == ex.id
            and details.get("stage") == stage_name
            and d.environment not in envs
        ):
            envs.append(d.environment)
    for a in attempts:  # a monitor in its own stage: roll back what it watched
        env = ((a.details or {}).get("monitor") or {}).get("environment")
        if (
            a.stage == stage_name
            and a.status == ActionStatus.FAILED
            and env
            and env not in envs
            and any(d.execution_id == ex.id for d in store.deployment_records(env))
        ):
            envs.append(env)
    return envs


def _already_rolled_back(store: Store, ex: ExecutionRecord, failed_at: float) -> bool:
    """A rollback of this failure was already started (the hook must not start two)."""
    for other in store.list_executions(ex.pipeline, limit=50, light=True):
        if (
            other.kind == "rollback"
            and (other.trigger or {}).get("of") == ex.id
            and other.created_at >= failed_at
        ):
            return True
    return False


def _finished_text(ex: ExecutionRecord, trig: Mapping[str, Any]) -> str:
    env = trig.get("environment") or "?"
    took = f" in {ex.ended_at - ex.created_at:.0f} s" if ex.ended_at else ""
    if ex.status == ExecutionStatus.SUCCEEDED:
        return (
            f":white_check_mark: *{env}* rolled back{took}: it serves "
            f"{_short(trig.get('digest'))} again (execution `{trig.get('to')}`) instead of "
            f"{_short(trig.get('from_digest'))}. Rollback execution `{ex.id}`; cause: "
            f"{trig.get('reason') or 'manual rollback'}."
        )
    return (
        f":rotating_light: rollback of *{env}* {ex.status}: {ex.message}. {env} "
        f"still serves {_short(trig.get('from_digest'))} (the deploy driver keeps the "
        f"serving release until the new one is ready). Execution `{ex.id}`."
    )
