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
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.actions.deploy import Deploy
from conveyor.engine import hooks
from conveyor.errors import ActionFailed, ConfigError, ConveyorError, NotFound
from conveyor.model.pipeline import Pipeline
from conveyor.model.status import ACTIVE_EXECUTION, ActionStatus, ExecutionStatus
from conveyor.monitoring import alerts
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.db import Row, Store

if TYPE_CHECKING:
    from conveyor.engine.engine import Engine

log = logging.getLogger("conveyor.rollback")
ROLLBACK_TYPE = "deploy.rollback"
KEPT_CONFIG = ("manifests", "container", "timeout")
HELPER_LIMIT = 1800.0  # seconds a helper keeps a process alive to finish a rollback


# ---- the action the rollback execution runs ---------------------------------------------------


class RollbackConfig(ActionConfig):
    image: str  # host/repo@sha256:... as it was deployed
    artifacts: dict[str, str]  # input name -> artifact digest (the manifests)
    manifests: str = "k8s/"
    container: str | None = None
    timeout: int | None = None
    of: str | None = None  # the failing execution, if automatic
    to: str  # the execution whose deployment is restored
    reason: str = ""
    replaces: list[str] = []  # Kubernetes objects of the release rolled back (Kind/name)


class RollbackDeploy(BaseAction):
    """Redeploy a previous deployment: its manifests from the artifact store, its digest."""

    type_name: ClassVar[str] = ROLLBACK_TYPE
    Config: ClassVar[type[ActionConfig]] = RollbackConfig
    needs_environment: ClassVar[bool] = True
    output_variables: ClassVar[frozenset[str] | None] = Deploy.output_variables
    artifact_store: ClassVar[ArtifactStore | None] = None  # set per engine by the installer

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = RollbackConfig.model_validate(dict(ctx.config))
        store = self.artifact_store or ArtifactStore(Path(ctx.state_dir) / "artifacts")
        inputs: dict[str, Path] = {}
        for name, digest in cfg.artifacts.items():
            try:
                inputs[name] = store.get(digest, ctx.workdir / "in" / name)
            except NotFound as exc:
                raise ActionFailed(
                    f"cannot roll back to execution {cfg.to}: its artifact "
                    f"'{name}' ({digest[:19]}) is gone: {exc.message}"
                ) from exc
        ctx.log.write(
            f"rolling back {ctx.action.environment} to {cfg.image} (deployed by "
            f"execution {cfg.to})" + (f" after execution {cfg.of} failed" if cfg.of else "") + "\n"
        )
        if cfg.reason:
            ctx.log.write(f"reason: {cfg.reason}\n")
        deploy_cfg = {
            "image": cfg.image,
            "manifests": cfg.manifests,
            "container": cfg.container,
            "timeout": cfg.timeout,
        }
        sub = dataclasses.replace(
            ctx, config={k: v for k, v in deploy_cfg.items() if v is not None}, inputs=inputs
        )
        result = Deploy().run(sub)
        dep = result.details["deployment"]
        dep["kind"] = "rollback"
        dep["rollback"] = {"of": cfg.of, "to": cfg.to, "reason": cfg.reason}
        dep["artifacts"] = dict(cfg.artifacts)
        dep["deploy_config"] = {
            k: v for k, v in deploy_cfg.items() if k != "image" and v is not None
        }
        kept = [r for r in cfg.replaces if r not in (dep.get("applied") or [])]
        if kept:
            dep["kept"] = kept
            ctx.log.write(
                f"kept {', '.join(kept)}: added by the release rolled back, not part of the "
                "restored one (delete by hand what should go)\n"
            )
        result.message = f"rolled back: {result.message}" + (
            f"; kept {len(kept)} object(s) the rolled-back release added: {', '.join(kept)}"
            if kept
            else ""
        )
        return result


# ---- choosing what to restore --------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackPlan:
    environment: str
    pipeline: str
    stage: str
    action: str
    current: Row  # the deployment serving now
    target: Row  # the deployment to restore
    artifacts: dict[str, str]
    deploy_config: dict[str, Any]

    @property
    def to_execution(self) -> str:
        return str(self.target["execution_id"])

    def describe(self) -> str:
        return (
            f"{self.environment}: {_short(self.current.get('digest'))} -> "
            f"{_short(self.target.get('digest'))} (from execution {self.to_execution})"
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
    deps = store.deployments(environment, limit=10000)  # newest first
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
                statuses[ex_id] = store.get_execution(ex_id)["status"]
            except NotFound:
                statuses[ex_id] = "?"
        return statuses[ex_id]

    if to:
        target = _match(deps, to)
        if target is None:
            known = ", ".join(f"{d['execution_id']} ({_short(d['digest'])})" for d in deps[:8])
            raise NotFound(
                f"'{to}' is neither an execution nor a digest deployed to "
                f"'{environment}' (recent: {known})"
            )
    else:
        if failed_execution:
            mine = [i for i, d in enumerate(deps) if d["execution_id"] == failed_execution]
            if not mine:
                raise NotFound(
                    f"execution {failed_execution} deployed nothing to "
                    f"'{environment}': nothing to roll back there"
                )
            older = deps[max(mine) + 1 :]
        else:
            older = [d for d in deps[1:] if d["digest"] != current["digest"]]
        target = next(
            (d for d in older if status(d["execution_id"]) == ExecutionStatus.SUCCEEDED), None
        )
        if target is None:
            raise NotFound(
                f"environment '{environment}' has no earlier deployment from a "
                "succeeded execution to roll back to; deploy a fixed version, or "
                "pick one with `conveyor rollback ENV --to EXECUTION|DIGEST`"
            )
    details = target.get("details") or {}
    stage = details.get("stage") or (current.get("details") or {}).get("stage")
    action = details.get("action") or (current.get("details") or {}).get("action")
    if not stage or not action or not target.get("image"):
        raise ConfigError(
            f"the deployment of execution {target['execution_id']} to "
            f"'{environment}' does not say which stage/action/image made it; it "
            "cannot be redeployed automatically"
        )
    artifacts, config = _manifests_of(store, target)
    return RollbackPlan(
        environment,
        str(target["pipeline"]),
        str(stage),
        str(action),
        current,
        target,
        artifacts,
        config,
    )


def _match(deps: list[Row], to: str) -> Row | None:
    text = to.strip()
    hexpart = text.split(":", 1)[1] if text.startswith("sha256:") else text
    for d in deps:
        if d["execution_id"] and (
            d["execution_id"] == text
            or (len(text) >= 4 and str(d["execution_id"]).startswith(text))
        ):
            return d
    if len(hexpart) >= 12:
        for d in deps:
            digest = str(d.get("digest") or "")
            if digest.split(":", 1)[-1].startswith(hexpart):
                return d
    return None


def _manifests_of(store: Store, dep: Row) -> tuple[dict[str, str], dict[str, Any]]:
    """The input artifacts (by digest) and deploy config that produced a deployment."""
    details = dep.get("details") or {}
    if details.get("artifacts"):  # a rollback deployment carries them
        return dict(details["artifacts"]), dict(details.get("deploy_config") or {})
    from conveyor.engine.engine import pipeline_of

    ex = store.get_execution(str(dep["execution_id"]))
    pipeline = pipeline_of(ex["definition"], ex["pipeline"])
    try:
        action = pipeline.stage(details["stage"]).action(details["action"])
    except KeyError:
        raise ConfigError(
            f"execution {ex['id']} has no action {details.get('stage')}/"
            f"{details.get('action')} any more"
        ) from None
    latest: dict[tuple[str, str], Row] = {}
    for a in store.attempts_for(ex["id"]):
        if a["status"] == ActionStatus.SUCCEEDED:
            latest[(a["stage"], a["action"])] = a
    produced: dict[str, str] = {}
    for a in latest.values():
        produced.update(a["artifacts"] or {})
    missing = [n for n in action.inputs if n not in produced]
    if missing:
        raise NotFound(
            f"execution {ex['id']}: the artifact(s) {', '.join(missing)} its deploy "
            "read are not recorded; it cannot be redeployed"
        )
    config = {
        k: action.config[k]
        for k in KEPT_CONFIG
        if k in action.config and "#{" not in str(action.config[k])
    }
    return {n: produced[n] for n in action.inputs}, config


# ---- starting a rollback execution ---------------------------------------------------------


def environment_at(target: Row, source: Row, current_def: dict[str, Any]) -> dict[str, Any]:
    """The environment as it was when TARGET was deployed: its context, namespace, kubeconfig.

    In order: the definition recorded with the deployment (since deployments record it),
    the definition of the execution that made it, then the pipeline's current one (only
    for an environment neither knows).
    """
    name = str(target["environment"])
    recorded = (target.get("details") or {}).get("environment_definition")
    if isinstance(recorded, dict) and recorded:
        return dict(recorded)
    for definition in (source.get("definition") or {}, current_def):
        env = dict(definition.get("environments") or {}).get(name)
        if env:
            return dict(env)
    return {}


def start_rollback(
    store: Store, plan: RollbackPlan, *, failed_execution: str | None, reason: str, actor: str
) -> str:
    """Create the rollback execution (kind rollback); a running engine picks it up."""
    pipeline_row = store.get_pipeline(plan.pipeline)
    current_def = dict(pipeline_row["definition"])
    source = store.get_execution(plan.to_execution)
    env_def = environment_at(plan.target, source, current_def)
    config: dict[str, Any] = {
        "image": plan.target["image"],
        "artifacts": plan.artifacts,
        "to": plan.to_execution,
        "reason": reason,
        **plan.deploy_config,
    }
    if failed_execution:
        config["of"] = failed_execution
    current = plan.current.get("details") or {}
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
        "of": failed_execution or plan.current.get("execution_id"),
        "to": plan.to_execution,
        "environment": plan.environment,
        "digest": plan.target.get("digest"),
        "commit": plan.target.get("commit"),
        "from_digest": plan.current.get("digest"),
        "reason": reason,
        "by": actor,
        "automatic": failed_execution is not None,
    }
    ex_id = store.create_execution(
        plan.pipeline,
        definition,
        variables={},
        trigger=trigger,
        revisions=dict(source["revisions"] or {}),
        kind="rollback",
        actor=actor,
    )
    store.audit(actor, "rollback", plan.environment, {"execution": ex_id, **trigger})
    return ex_id


# ---- the engine hooks ---------------------------------------------------------------------------


def should_roll_back(pipeline: Pipeline, stage_name: str, attempts: list[Row]) -> str | None:
    """Why the failure of STAGE calls for a rollback (None: it does not)."""
    try:
        stage = pipeline.stage(stage_name)
    except KeyError:
        return None
    failed = [
        a for a in attempts if a["stage"] == stage_name and a["status"] == ActionStatus.FAILED
    ]
    if not failed:
        return None
    last = failed[-1]
    monitors = [a for a in failed if a["type"] == "monitor" and a["reason"] == "ActionFailed"]
    if monitors:
        return f"{stage_name}/{monitors[-1]['action']} failed: {monitors[-1]['message']}"
    if stage.on_failure is not None and stage.on_failure.result == "ROLLBACK":
        return (
            f"{stage_name}/{last['action']} failed ({last['reason']}) in a stage with "
            f"onFailure ROLLBACK: {last['message']}"
        )
    return None


def on_stage_failed(engine: Engine, ex: Row, pipeline: Pipeline, stage_name: str) -> None:
    if ex["kind"] == "rollback":
        return  # a failed rollback is reported by on_execution_done; never roll back a rollback
    store = engine.store
    attempts = store.attempts_for(ex["id"])
    reason = should_roll_back(pipeline, stage_name, attempts)
    if reason is None:
        return
    failed_at = max((a["ended_at"] or 0.0) for a in attempts if a["status"] == ActionStatus.FAILED)
    if _already_rolled_back(store, ex, failed_at):
        return
    envs: list[str] = []
    for d in store.deployments(limit=10000):
        details = d.get("details") or {}
        if (
            d["execution_id"] == ex["id"]
            and details.get("stage") == stage_name
            and d["environment"] not in envs
        ):
            envs.append(d["environment"])
    for a in attempts:  # a monitor in its own stage: roll back what it watched
        env = ((a.get("details") or {}).get("monitor") or {}).get("environment")
        if (
            a["stage"] == stage_name
            and a["status"] == ActionStatus.FAILED
            and env
            and env not in envs
            and any(d["execution_id"] == ex["id"] for d in store.deployments(env))
        ):
            envs.append(env)
    hook = alerts.webhook_of(ex["definition"])
    where = f"*{ex['pipeline']}* execution `{ex['id']}`"
    if not envs:
        alerts.send_later(
            hook,
            f":warning: {where} failed: {reason}. It switched no "
            "environment in that stage: nothing to roll back.",
            "rollback-skipped",
            {"execution": ex["id"], "reason": reason},
        )
        return
    started: list[str] = []
    for env in envs:
        try:
            plan = plan_rollback(store, env, failed_execution=ex["id"])
            rb = start_rollback(
                store, plan, failed_execution=ex["id"], reason=reason, actor="engine (rollback)"
            )
        except ConveyorError as exc:
            log.error("no rollback of %s after %s: %s", env, ex["id"], exc.message)
            alerts.send_later(
                hook,
                f":rotating_light: {where} failed in {env} ({reason}) and "
                f"could NOT be rolled back: {exc.message}. {env} still "
                "serves the failing version.",
                "rollback-impossible",
                {"execution": ex["id"], "environment": env, "error": exc.message},
            )
            continue
        started.append(rb)
        log.warning(
            "execution %s failed (%s): rolling %s back in execution %s",
            ex["id"],
            reason,
            plan.describe(),
            rb,
        )
        alerts.send_later(
            hook,
            f":rewind: {where} failed: {reason}. Rolling *{env}* back to "
            f"{_short(plan.target['digest'])} (from execution "
            f"`{plan.to_execution}`) in execution `{rb}`.",
            "rollback-started",
            {
                "execution": rb,
                "of": ex["id"],
                "to": plan.to_execution,
                "environment": env,
                "digest": plan.target.get("digest"),
                "from_digest": plan.current.get("digest"),
                "reason": reason,
            },
        )
    if started:
        _drive(engine, started)
    engine.wake()


def _drive(engine: Engine, executions: list[str]) -> None:
    """Make sure the rollback runs to its end even if this engine is about to stop.

    The engine that saw the failure may be short-lived: `conveyor run` stops its in-process
    engine as soon as *its* execution ends, possibly with the rollback's deploy in flight.
    A non-daemon thread waits while that engine lives (it drives the rollback itself), then
    takes over under the same worker id — so the lease stays valid and an action still
    running in the old engine's pool is not mistaken for a crash — ticks only the rollback
    executions until they end, and flushes the alerts. The process does not exit before
    production is restored (bounded by HELPER_LIMIT).
    """
    from conveyor.engine.engine import Engine as EngineClass

    store, settings = engine.store, engine.settings

    def done() -> bool:
        return all(store.get_execution(e)["status"] not in ACTIVE_EXECUTION for e in executions)

    def alive() -> bool:
        return any(e["worker"] == engine.worker for e in store.live_engines(settings.lease_seconds))

    def run() -> None:
        end = time.monotonic() + HELPER_LIMIT
        try:
            while alive() and not done() and time.monotonic() < end:
                time.sleep(max(0.1, settings.poll_seconds))
            if done() or time.monotonic() >= end:
                return
            helper = EngineClass(
                store,
                settings,
                engine.registry,
                engine.services,
                artifacts=engine.artifacts,
                hooks=engine.hooks,
                max_workers=2,
            )
            helper.worker = engine.worker
            log.info(
                "driving rollback execution(s) %s after the engine stopped", ", ".join(executions)
            )
            try:
                while not done() and time.monotonic() < end:
                    store.renew(helper.worker, settings.lease_seconds)
                    for ex_id in executions:
                        ex = store.execution(ex_id)
                        if ex.status in ACTIVE_EXECUTION:
                            helper._tick(ex)  # noqa: SLF001 - only these executions, see above
                    time.sleep(max(0.05, settings.poll_seconds))
            finally:
                helper.shutdown(wait=True)
        except Exception:  # noqa: BLE001 - a long-lived engine still drives the rollback
            log.exception("the rollback helper stopped")
        finally:
            alerts.flush()

    threading.Thread(target=run, name=f"rollback-{executions[0]}", daemon=False).start()


def _already_rolled_back(store: Store, ex: Row, failed_at: float) -> bool:
    """A rollback of this failure was already started (the hook must not start two)."""
    for other in store.list_executions(ex["pipeline"], limit=50, light=True):
        if (
            other["kind"] == "rollback"
            and (other["trigger"] or {}).get("of") == ex["id"]
            and other["created_at"] >= failed_at
        ):
            return True
    return False


def on_execution_done(engine: Engine, ex: Row, pipeline: Pipeline) -> None:
    if ex["kind"] != "rollback":
        return
    trig = ex["trigger"] or {}
    env = trig.get("environment") or "?"
    hook = alerts.webhook_of(ex["definition"])
    facts = {
        "execution": ex["id"],
        "of": trig.get("of"),
        "to": trig.get("to"),
        "environment": env,
        "digest": trig.get("digest"),
        "status": ex["status"],
        "from_digest": trig.get("from_digest"),
        "reason": trig.get("reason"),
    }
    took = f" in {ex['ended_at'] - ex['created_at']:.0f} s" if ex["ended_at"] else ""
    if ex["status"] == ExecutionStatus.SUCCEEDED:
        text = (
            f":white_check_mark: *{env}* rolled back{took}: it serves "
            f"{_short(trig.get('digest'))} again (execution `{trig.get('to')}`) instead of "
            f"{_short(trig.get('from_digest'))}. Rollback execution `{ex['id']}`; cause: "
            f"{trig.get('reason') or 'manual rollback'}."
        )
    else:
        text = (
            f":rotating_light: rollback of *{env}* {ex['status']}: {ex['message']}. {env} "
            f"still serves {_short(trig.get('from_digest'))} (the deploy driver keeps the "
            f"serving release until the new one is ready). Execution `{ex['id']}`."
        )
    alerts.send_later(hook, text, "rollback-finished", facts)


def install(engine: Engine) -> None:
    """Register the rollback action type (bound to the engine's artifact store) and hooks."""
    bound = type("RollbackDeploy", (RollbackDeploy,), {"artifact_store": engine.artifacts})
    engine.registry.register(ROLLBACK_TYPE, bound)
    if on_stage_failed not in engine.hooks.on_stage_failed:
        engine.hooks.on_stage_failed.append(on_stage_failed)
    if on_execution_done not in engine.hooks.on_execution_done:
        engine.hooks.on_execution_done.append(on_execution_done)


def wait_for(store: Store, ex_id: str, timeout: float) -> Row:
    """Poll an execution until it ends (for callers without a live view)."""
    end = time.monotonic() + timeout
    while True:
        ex = store.get_execution(ex_id)
        if ex["status"] not in ACTIVE_EXECUTION or time.monotonic() > end:
            return ex
        time.sleep(0.2)


if install not in hooks.INSTALLERS:
    hooks.INSTALLERS.append(install)
