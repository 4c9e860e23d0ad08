"""`image.promote`: copy an image BY DIGEST from one registry to another, without rebuilding.

    - name: PushImageToProd
      type: image.promote
      namespace: Promote
      config:
        image: "#{Build.ImageURI}"     # 127.0.0.1:5001/webapp@sha256:... (a tag is resolved)
        to: prod                        # a pipeline environment (its registry), or:
        # targetRegistry: 127.0.0.1:5002
        repository: webapp              # default: the environment's, else the source's
        tag: "1.4.0"                    # optional; default: the source's tag, if it had one

The copy is done by skopeo (`skopeo copy --all --preserve-digests`), not by an OCI client
of our own: skopeo is the reference implementation of containers/image (the library
podman and buildah push with), it copies manifests, indexes (`--all`: every platform of a
multi-arch image) and blobs, it asks the target for each blob first and skips those it
has (a second promotion moves only manifests), and `--preserve-digests` makes it refuse
any conversion that would change the digest. Re-implementing cross-repository blob
mounts, chunked uploads and retries would be more code to trust, for no gain.

Around the copy, Conveyor's registry client (conveyor.adapters.registry):
- resolves the source to a digest (a tag is promoted as the digest it names *now*);
- refuses to move an existing tag of an immutable target to another digest (tags are
  immutable in every promotion target unless the environment sets `immutableTags: false`);
  the same digest under the same tag is a no-op;
- counts the blobs and bytes the target lacked before the copy (what had to move);
- verifies afterwards that the target serves exactly the source digest.
The checks before the copy ask the registries in parallel (the source manifest, the target
tag and manifest, then the target's blobs), on threads started once per process, and the
verification is one HEAD: the action's own time around skopeo stays in tens of ms.

Outputs: `ImageURI` (target `host/repo@digest`), `ImageDigest`, `ImageTag`. The result's
`details["promotion"]` holds the provenance: source and target references, digest,
execution, time, blobs and bytes copied.
"""

from __future__ import annotations

import functools
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, ClassVar

from pydantic import Field, model_validator

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.adapters import process
from conveyor.adapters.registry import ImageRef
from conveyor.adapters.tool_errors import describe, error_line
from conveyor.errors import ActionError, ActionFailed, ConfigError, NotFound, missing_tool


class PromoteConfig(ActionConfig):
    image: str
    to: str | None = None
    targetRegistry: str | None = Field(default=None)
    repository: str | None = None
    tag: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> PromoteConfig:
        if bool(self.to) == bool(self.targetRegistry):
            raise ValueError("give exactly one of `to` (an environment) or `targetRegistry`")
        return self


class Promote(BaseAction):
    type_name: ClassVar[str] = "image.promote"
    Config: ClassVar[type[ActionConfig]] = PromoteConfig
    output_variables: ClassVar[frozenset[str] | None] = frozenset(
        {"ImageURI", "ImageDigest", "ImageTag"}
    )

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = PromoteConfig.model_validate(dict(ctx.config))
        source = ImageRef.parse(cfg.image)
        host, env_repo, immutable, target_name = _target(ctx, cfg)
        repository = cfg.repository or env_repo or source.repository
        tag = cfg.tag or source.tag
        log = ctx.log.write
        started = time.time()
        # the checks around the copy ask the registries in parallel (one round trip for the
        # source manifest, the target tag and manifest; one for the target's blobs), and a
        # pinned source is not resolved apart: reading its manifest checks it exists
        pool = _checks()
        with nullcontext(ctx.services.registry) as client:  # shared: its owner closes it
            digest = source.digest or client.resolve(source)
            if source.digest is None:
                log(f"{source} is {digest} now; promoting that digest\n")
            src = source.with_digest(digest)
            dst = ImageRef(host, repository, tag, None)
            if src.host == dst.host and src.repository == dst.repository and not tag:
                raise ConfigError(
                    f"action '{ctx.action.name}': source and target are the same "
                    f"repository ({host}/{repository})"
                )
            tag_f = pool.submit(client.tag_digest, dst) if tag else None
            present_f = pool.submit(client.has_manifest, host, repository, digest)
            blobs = client.blobs(src)
            unique = {b.digest: b for b in blobs}
            has_f = {d: pool.submit(client.has_blob, host, repository, d) for d in unique}
            existing = tag_f.result() if tag_f else None
            if existing and existing != digest and immutable:
                raise ActionFailed(
                    f"tag '{tag}' in {host}/{repository} already names {existing}; tags are "
                    f"immutable in '{target_name}', so it cannot be moved to {digest}: promote "
                    "under a new tag (config `tag`), or leave the tag out to promote by digest"
                )
            missing = [b for d, b in unique.items() if not has_f[d].result()]
            manifest_present = present_f.result()
            bytes_total = sum(b.size for b in {b.digest: b for b in blobs}.values())
            bytes_missing = sum(b.size for b in missing)
            target = dst if tag else ImageRef(host, repository, None, digest)
            if existing == digest or (manifest_present and not tag):
                log(f"{target} already is {digest}: nothing to copy\n")
                copied = False
                duration = 0.0
            else:
                log(
                    f"copying {src} -> {target}: {len(missing)} of "
                    f"{len({b.digest for b in blobs})} blobs ({_size(bytes_missing)}) "
                    "missing at the target\n"
                )
                duration = _skopeo_copy(ctx, src, target)
                copied = True
            served = client.resolve(target)
            if served != digest:
                raise ActionError(
                    f"after the copy, {target} is {served}, not the source digest "
                    f"{digest}: the target registry rewrote the image; promotion "
                    "refused"
                )
            log(f"verified: {target} serves {digest}\n")
        uri = f"{host}/{repository}@{digest}"
        promotion: dict[str, Any] = {
            "source": str(source),
            "source_digest": digest,
            "source_ref": str(src),
            "target": str(target),
            "target_ref": uri,
            "target_environment": cfg.to,
            "tag": tag,
            "digest": digest,
            "execution_id": ctx.execution_id,
            "stage": ctx.stage,
            "action": ctx.action.name,
            "copied": copied,
            "blobs_total": len({b.digest for b in blobs}),
            "blobs_copied": len(missing) if copied else 0,
            "bytes_total": bytes_total,
            "bytes_copied": bytes_missing if copied else 0,
            "copy_seconds": round(duration, 3),
            "at": started,
            "tool": "skopeo copy --all --preserve-digests",
        }
        variables = {"ImageURI": uri, "ImageDigest": digest, "ImageTag": tag or ""}
        msg = (
            f"promoted {digest[:19]} to {target}"
            if copied
            else f"{target} already had {digest[:19]}"
        )
        return ActionResult(message=msg, variables=variables, details={"promotion": promotion})


def _target(ctx: ActionContext, cfg: PromoteConfig) -> tuple[str, str, bool, str]:
    """Where to promote to: registry host, the environment's repository, whether its tags
    are immutable, and the target's name (for messages)."""
    platform = ctx.services.platform
    if not cfg.to:
        assert cfg.targetRegistry is not None
        host = platform.registry_host(cfg.targetRegistry)
        return host, "", True, host
    env = ctx.pipeline.environments.get(cfg.to)
    if env is None:
        known = ", ".join(sorted(ctx.pipeline.environments)) or "none"
        raise ConfigError(
            f"action '{ctx.action.name}': `to: {cfg.to}` names no "
            f"environment of the pipeline (known: {known})"
        )
    immutable = bool(env.settings.get("immutableTags", True))
    return platform.environment_registry(env), env.repository, immutable, env.name


@functools.cache
def _checks() -> ThreadPoolExecutor:
    """The threads that ask registries in parallel, started once per process (starting
    threads for every promotion cost as much as the requests under load)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="promote-check")


def _skopeo_copy(ctx: ActionContext, src: ImageRef, dst: ImageRef) -> float:
    if not shutil.which("skopeo"):
        raise missing_tool("skopeo", "skopeo")
    argv = [
        "skopeo",
        "copy",
        "--all",
        "--preserve-digests",
        "--retry-times",
        "2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{src}",
        f"docker://{dst}",
    ]
    ctx.log.write("$ " + " ".join(argv) + "\n")
    res = process.run(
        argv, on_output=ctx.log.write, cancel=ctx.cancel, deadline=ctx.deadline, on_pid=ctx.on_pid
    )
    if res.cancelled:
        raise ActionError("promotion cancelled during the copy")
    if res.timed_out:
        raise ActionError("promotion timed out during the copy (the action's timeout)")
    if res.returncode != 0:
        said = describe(
            "skopeo", f"skopeo copy {src} -> {dst} failed (exit {res.returncode})", res.output
        )
        if "manifest unknown" in error_line(res.output).lower():
            raise NotFound(said)
        raise ActionError(said)
    return res.duration


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
