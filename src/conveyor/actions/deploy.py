"""`deploy`: apply the application's Kubernetes manifests to an environment, image pinned by digest.

    - name: DeployToTest
      type: deploy
      environment: test
      inputs: [app_src]
      namespace: DeployTest
      config:
        manifests: k8s/                    # a directory or file in the input artifact
        image: "#{Build.ImageURI}"         # host/repo@sha256:... (a tag is resolved to a digest);
                                           # default: imageDetail.json in an input artifact
        container: web                     # default: containers whose image repo name matches
        timeout: 180                       # seconds to wait for readiness / the rollout

The environment (pipeline file) chooses the driver:

- `podman` (local default): see conveyor.platform.environment — the new release starts
  beside the old one, is probed, then the environment's front door switches to it.
- `kubernetes` / `eks`: see conveyor.adapters.kubernetes — a release is the whole set of
  objects: ConfigMaps renamed after their content (`webapp-config-<hash>`, references
  rewritten; `settings.hashConfigMaps: false` keeps the names), a server-side dry run of
  every object first, then server-side apply into the environment's `namespace` with its
  kubeconfig `context`, wait for the rollout; on failure every object is put back as it
  was and the objects the release added are deleted. Hashed ConfigMaps of the last
  `settings.keepConfigMaps` (default 5) releases are kept.

Whatever fails (registry down, digest not found, manifest invalid, port taken, podman
missing, timeout), the environment keeps serving its last good version. The result's
`details["deployment"]` is what the engine records in the environment's history; output
variables: `URL`, `ImageDigest`, `ImageURI`.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.adapters.kubernetes import (
    KEEP_CONFIG_MAPS,
    ClientKubernetesApi,
    KubernetesApi,
    KubernetesDeployer,
    ManifestObject,
    ObjectDiff,
)
from conveyor.adapters.manifests import (
    CONFIG_OF_LABEL,
    Document,
    ManifestSet,
    hash_config_maps,
    line_of_path,
    load_manifests,
    pin_image,
    repository_name,
)
from conveyor.adapters.registry import ImageRef, RegistryClient
from conveyor.errors import ActionFailed, ConfigError, NotFound, ValidationFailed
from conveyor.model import provenance
from conveyor.model.pipeline import Environment
from conveyor.ports import Registry
from conveyor.spec.pipeline_file import environment_definition

DEFAULT_TIMEOUT = 120


class DeployConfig(ActionConfig):
    manifests: str = "k8s/"
    image: str | None = None
    container: str | None = None
    timeout: int | None = Field(default=None, gt=0)


class Deploy(BaseAction):
    type_name: ClassVar[str] = "deploy"
    Config: ClassVar[type[ActionConfig]] = DeployConfig
    output_variables: ClassVar[frozenset[str] | None] = frozenset(
        {"URL", "ImageDigest", "ImageURI"}
    )
    needs_environment: ClassVar[bool] = True

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = DeployConfig.model_validate(dict(ctx.config))
        env = ctx.required_environment("deploys to")
        log = ctx.log.write
        root, image_text = _locate(ctx, cfg)
        image = _pin(image_text, log, ctx.services.registry)
        if env.registry and env.driver == "podman":
            expected = ctx.services.platform.environment_registry(env)
            if image.host != expected:
                log(
                    f"warning: environment '{env.name}' uses registry {expected}, but the image "
                    f"comes from {image.host} (promote it first to deploy what the registry "
                    "of the environment holds)\n"
                )
        try:
            mset = load_manifests(root, cfg.manifests)
            pinned = pin_image(mset, str(image), cfg.container)
        except ValidationFailed as exc:
            raise ActionFailed(
                f"manifests in '{cfg.manifests}' are invalid:\n{exc.message}"
            ) from exc
        for p in pinned:
            log(
                f"{p.where}: container '{p.container}' ({p.chosen_by}): "
                f"{p.old_image} -> {p.new_image}\n"
            )
        objects = (
            kubernetes_release(env, mset, lambda m: log(m + "\n"))
            if env.driver in ("kubernetes", "eks")
            else []
        )
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        (ctx.workdir / f"manifests-{env.name}.yaml").write_text(mset.dump())
        timeout = float(cfg.timeout or env.settings.get("deployTimeout") or DEFAULT_TIMEOUT)
        remaining = ctx.remaining()
        if remaining is not None:
            timeout = max(1.0, min(timeout, remaining - 5))
        if env.driver == "podman":
            details = ctx.services.platform.podman_environment(env).deploy(
                mset,
                image,
                workdir=ctx.workdir,
                timeout=timeout,
                log=lambda m: log(m.rstrip("\n") + "\n"),
                cancel=ctx.cancel,
                primary=pinned[0].container,
            )
        elif env.driver in ("kubernetes", "eks"):
            details = _deploy_kubernetes(ctx, env, objects, image, timeout)
        else:
            raise ConfigError(
                f"environment '{env.name}': unknown driver '{env.driver}' "
                "(known: podman, kubernetes, eks)"
            )
        details.update(
            {
                "environment": env.name,
                "image": str(image),
                "digest": image.digest,
                "execution_id": ctx.execution_id,
                "stage": ctx.stage,
                "action": ctx.action.name,
                "attempt": ctx.attempt,
                "revisions": {k: dict(v) for k, v in ctx.revisions.items()},
                "environment_definition": environment_definition(env),
                "pinned": [
                    {"container": p.container, "where": p.where, "old_image": p.old_image}
                    for p in pinned
                ],
            }
        )
        details.setdefault("url", env.url or "")
        # the commit the image was built from, through the artifact lineage (not whichever
        # source happened to finish first)
        commit = provenance.commit_of(
            ctx.revisions, provenance.source_of(ctx.pipeline, ctx.action.name)
        )
        if commit:
            details["commit"] = commit
        assert image.digest is not None
        variables = {
            "URL": str(details.get("url") or ""),
            "ImageDigest": image.digest,
            "ImageURI": str(image),
        }
        return ActionResult(
            message=f"{env.name} serves {image.digest[:19]} at {details.get('url') or env.name}",
            variables=variables,
            details={"deployment": details},
            deployment=details,
        )


def _locate(ctx: ActionContext, cfg: DeployConfig) -> tuple[Path, str]:
    """The input artifact holding the manifests, and the image reference to deploy."""
    roots = list(ctx.inputs.values())
    if not roots:
        raise ConfigError(
            f"action '{ctx.action.name}' has no input artifact: list the artifact "
            "holding the manifests under `inputs`"
        )
    root = next((r for r in roots if (r / cfg.manifests).exists()), roots[0])
    image = cfg.image
    if not image:
        for r in roots:
            detail = r / "imageDetail.json"
            if detail.is_file():
                try:
                    image = str(json.loads(detail.read_text())["ImageURI"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ActionFailed(
                        f"{detail.name} in the input artifact has no ImageURI: {exc}"
                    ) from exc
                break
    if not image:
        raise ConfigError(
            f"action '{ctx.action.name}': no image to deploy: set `image` "
            '(e.g. "#{Build.ImageURI}") or give an input artifact with '
            "imageDetail.json"
        )
    return root, image


def _pin(text: str, log: Any, registry: Registry) -> ImageRef:
    """The image as a digest reference the registry has (a tag is resolved).

    Loopback registries (plain HTTP, no auth) are asked; a remote one (ECR...) is not: its
    reference must already carry the digest, and the cluster's pull verifies it.
    """
    ref = ImageRef.parse(text)
    host = ref.host.split(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "::1"):
        if ref.digest is None:
            raise ConfigError(
                f"image {ref}: give a digest reference (host/repo@sha256:...) for "
                f'the remote registry {ref.host}, e.g. "#{{Build.ImageURI}}"'
            )
        log(f"{ref}: remote registry, digest not checked before deploying\n")
        return ref
    try:
        digest = registry.resolve(ref)
    except NotFound as exc:
        raise ActionFailed(exc.message) from exc
    if ref.digest is None:
        log(f"{ref} resolved to {digest}\n")
    return ref.with_digest(digest)


def kubernetes_release(env: Environment, mset: ManifestSet, log: Any) -> list[ManifestObject]:
    """The objects of a Kubernetes release: ConfigMaps content-hashed (unless the
    environment's `settings.hashConfigMaps` is false), each with its file:line."""
    if env.settings.get("hashConfigMaps", True) is not False:
        for h in hash_config_maps(mset):
            log(f"{h.where}: ConfigMap '{h.name}' is applied as '{h.hashed}' (content-hashed)")
    return [
        ManifestObject(body, f"{d.file}:{d.line}", functools.partial(_field_line, d))
        for d, body in zip(mset.documents, mset.plain(), strict=True)
    ]


def _field_line(doc: Document, path: str) -> str | None:
    line = line_of_path(doc.data, path)
    return f"{doc.file}:{line}" if line else None


def kubernetes_deployer(env: Environment, log: Any) -> KubernetesDeployer:
    """A KubernetesDeployer on the environment's kubeconfig and context."""
    keep = env.settings.get("keepConfigMaps", KEEP_CONFIG_MAPS)
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ConfigError(
            f"environment '{env.name}': settings.keepConfigMaps must be a whole number >= 1, "
            f"not {keep!r}"
        )
    kubeconfig = env.settings.get("kubeconfig")
    api = ClientKubernetesApi(
        context=env.context, kubeconfig=str(kubeconfig) if kubeconfig else None
    )
    return KubernetesDeployer(api, log=log, keep_config_maps=keep)


def _deploy_kubernetes(
    ctx: ActionContext,
    env: Environment,
    objects: list[ManifestObject],
    image: ImageRef,
    timeout: float,
) -> dict[str, Any]:
    namespace = env.namespace or env.name
    deployer = kubernetes_deployer(env, lambda m: ctx.log.write(m + "\n"))
    started = time.time()
    details: dict[str, Any] = deployer.deploy(
        objects, namespace=namespace, timeout=timeout, cancel=ctx.cancel
    )
    previous = [
        img
        for imgs in details.get("previous_images", {}).values()
        for img in imgs
        if "@" in img and repository_name(img) == image.name
    ]
    details.update(
        {
            "context": env.context,
            "started_at": started,
            "finished_at": time.time(),
            "url": env.url or "",
            "previous_digest": previous[0].split("@", 1)[1] if previous else None,
            "hashed_config_maps": [
                f"ConfigMap/{o.name}"
                for o in objects
                if o.kind == "ConfigMap"
                and CONFIG_OF_LABEL in ((o.body.get("metadata") or {}).get("labels") or {})
            ],
        }
    )
    return details


def diff_release(
    env: Environment,
    root: Path,
    manifests: str,
    image: str,
    *,
    container: str | None = None,
    log: Any = lambda _m: None,
    api: KubernetesApi | None = None,
) -> list[ObjectDiff]:
    """What deploying MANIFESTS with IMAGE to ENV would change (`conveyor env diff`).

    The same release a deploy would apply — image pinned, ConfigMaps hashed — dry-run on
    the API server and compared with what is live, object by object (ObjectDiff). `api`:
    a KubernetesApi (default: the environment's kubeconfig and context).
    """
    if env.driver not in ("kubernetes", "eks"):
        raise ConfigError(
            f"environment '{env.name}' uses the {env.driver} driver: `env diff` compares with "
            "a Kubernetes API server's dry run (driver kubernetes or eks)"
        )
    with RegistryClient() as registry:  # a command's own, short-lived client (no engine here)
        pinned = _pin(image, lambda m: log(m.rstrip("\n")), registry)
    try:
        mset = load_manifests(root, manifests)
        pin_image(mset, str(pinned), container)
    except ValidationFailed as exc:
        raise ConfigError(f"manifests in '{manifests}' are invalid:\n{exc.message}") from exc
    objects = kubernetes_release(env, mset, log)
    deployer = kubernetes_deployer(env, log) if api is None else KubernetesDeployer(api, log=log)
    return deployer.diff(objects, env.namespace or env.name)
