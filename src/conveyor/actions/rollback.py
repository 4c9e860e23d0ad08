"""`deploy.rollback`: the action a rollback execution runs (see conveyor.engine.rollback).

It restores a previous deployment: that deployment's manifests, fetched by digest from the
artifact store (`ctx.services.artifacts`), deployed with its image digest by the very same
code as `deploy`. It is an ordinary action type, registered through the entry-point group
`conveyor.actions` like every other.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.actions.deploy import Deploy
from conveyor.errors import ActionFailed, NotFound

ROLLBACK_TYPE = "deploy.rollback"


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

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = RollbackConfig.model_validate(dict(ctx.config))
        store = ctx.services.artifacts
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
