"""The `build` action type: a CodeBuild project, run locally from a buildspec.

Config (all optional):

    buildspec: buildspec.yml        # a path inside the primary input, or the buildspec inline
    primarySource: app_src          # which input is CODEBUILD_SRC_DIR (default: the first)
    env: {NAME: value}              # project-level variables (override the buildspec's)
    image: 127.0.0.1:5001/builder   # run the commands in this image with podman
    environment: {image: IMAGE}     # the same (CodeBuild's spelling); `host`: on this machine
    publishes: {environment: test, repository: webapp, tag: latest, base: web}

Inputs: the primary input is CODEBUILD_SRC_DIR, the others CODEBUILD_SRC_DIR_<name>.
Outputs: the first output artifact receives the buildspec's primary artifact, the others
the secondary artifacts of the same identifier. Exported variables become the action's
output variables; reports are parsed and copied under `<workdir>/reports/`.
With `publishes`, after a successful build the pushed image's digest is resolved and the
action outputs ImageURI (repository@sha256:...), ImageDigest and ImageTag, and writes
`imageDetail.json` into the primary output, like CodePipeline's ECR source action.
`publishes.base` names the Conveyor base image (`conveyor images list`) the Containerfile builds
FROM: the buildspec gets `BASE_IMAGE`, here `localhost/conveyor/NAME:<recipe hash>`, on AWS the
same tag in the stack's ECR repository for it (`conveyor images push NAME --to ...`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.adapters.tools import tool_path
from conveyor.buildspec.container import wants_container
from conveyor.buildspec.result import PRIMARY, BuildResult
from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.secrets import resolve_secrets
from conveyor.buildspec.spec import (
    Buildspec,
    Command,
    find_buildspec,
    load_buildspec,
    parse_buildspec,
)
from conveyor.errors import ActionError, ActionFailed, ConfigError, ValidationFailed
from conveyor.model.pipeline import Pipeline
from conveyor.model.variables import REF, command_as_data
from conveyor.ports import Platform


class Publishes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str | None = None
    repository: str
    tag: str = "latest"
    # the Conveyor base image the Containerfile builds FROM (BASE_IMAGE for the buildspec)
    base: str | None = None

    @field_validator("base")
    @classmethod
    def _known_base(cls, v: str | None) -> str | None:
        from conveyor.images.recipe import RECIPES

        if v is not None and v not in RECIPES:
            raise ValueError(
                f"unknown base image {v!r} (known: {', '.join(sorted(RECIPES))}); "
                "see `conveyor images list`"
            )
        return v


def _check_base(name: str, tag: str, podman_env: Mapping[str, str]) -> None:
    """A missing base image names the command that builds it (podman would try to pull it)."""
    from conveyor.images.builder import image_exists

    if not image_exists(tag, podman_env):
        raise ActionError(
            f"publishes.base: the base image {tag} is not built here: run "
            f"`conveyor images build {name}` (`conveyor up` builds it too)"
        )


def base_env(pub: Publishes | None) -> dict[str, str]:
    """BASE_IMAGE: the recipe's own tag of `publishes.base` (so a changed recipe is a changed
    input of the build, and the image built is the one the recipe describes)."""
    if pub is None or pub.base is None:
        return {}
    from conveyor.images.recipe import lookup

    return {"BASE_IMAGE": lookup(pub.base).tag()}


class BuildEnvironment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str | None = None


class BuildConfig(ActionConfig):
    buildspec: str | None = None
    primary_source: str | None = Field(default=None, alias="primarySource")
    env: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    environment: BuildEnvironment | None = None
    publishes: Publishes | None = None
    # the CodeBuild project an imported CodePipeline action named; used on AWS, ignored locally
    codebuild_project: str | None = Field(default=None, alias="codebuildProject")


def _image(cfg: BuildConfig) -> str | None:
    """The build's environment image (`host` or none: run on this machine)."""
    return cfg.image or (cfg.environment.image if cfg.environment else None)


def _is_inline(text: str) -> bool:
    return "\n" in text.strip() or text.lstrip().startswith(("version:", "{", '"version'))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:100]


class Build(BaseAction):
    """Runs a CodeBuild buildspec from the primary input artifact."""

    type_name = "build"
    Config = BuildConfig

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = BuildConfig.model_validate(dict(ctx.config))
        sources = self._sources(ctx, cfg)
        primary = next(iter(sources))
        spec = self._buildspec(ctx, cfg, sources[primary], primary)
        platform = ctx.services.platform
        revision = _revision(ctx, primary)
        env = build_environment(
            platform,
            ctx.pipeline,
            environment=cfg.publishes.environment if cfg.publishes else None,
            revision=revision,
            on_host=not wants_container(_image(cfg)),
        )
        env.update(base_env(cfg.publishes))
        if cfg.publishes is not None and cfg.publishes.base is not None:
            _check_base(cfg.publishes.base, env["BASE_IMAGE"], platform.container_env())
        env.update(cfg.env)
        if cfg.publishes is not None:
            # the publish contract: the buildspec pushes $REPOSITORY_URI:$IMAGE_TAG
            env.update(publish_env(platform, cfg.publishes))
        secrets_file = ctx.services.settings.secrets_file
        store = ctx.services.secrets
        try:
            for value in resolve_secrets(spec, secrets_file, store).values():
                ctx.log.mask(value)
        except ConfigError as e:
            raise ActionFailed(str(e)) from None
        key = _safe(f"{ctx.pipeline.name}.{ctx.stage}.{ctx.action.name}")
        outputs = list(ctx.outputs)
        artifact_dirs: dict[str, Path] = {}
        if outputs:
            artifact_dirs[PRIMARY] = ctx.outputs[outputs[0]]
            for name in outputs[1:]:
                artifact_dirs[name] = ctx.outputs[name]
        if outputs and spec.artifacts is None and spec.batch is None:
            raise ActionFailed(
                f"action {ctx.action.name} declares output artifacts "
                f"({', '.join(outputs)}) but buildspec {spec.file} has no `artifacts` section"
            )
        if spec.artifacts is not None and len(outputs) > 1:
            known = {a.identifier for a in spec.artifacts.secondary}
            unknown = [o for o in outputs[1:] if o not in known]
            if unknown:
                raise ActionFailed(
                    f"output artifact(s) {', '.join(unknown)} match no secondary artifact "
                    f"of {spec.file} "
                    f"(secondary-artifacts: {', '.join(sorted(k for k in known if k)) or 'none'}); "
                    "the first output is the primary artifact, the others need a secondary "
                    "artifact of the same name"
                )
        image = _image(cfg)
        container_env = platform.container_env()
        result = run_buildspec(
            spec,
            sources,
            env,
            ctx.workdir / "build",
            ctx.log.write,
            ctx.cancel,
            ctx.deadline,
            artifact_dirs=artifact_dirs,
            cache_dir=ctx.state_dir / "cache" / key,
            secrets_file=secrets_file,
            secrets=store,
            image=image,
            container_env=container_env,
            state_dir=ctx.state_dir,
            copy_sources=False,
            project=_safe(ctx.action.name),
            build_number=_next_build_number(ctx.state_dir, key),
            initiator=f"codepipeline/{ctx.pipeline.name}",
            resolved_source_version=revision,
            on_pid=ctx.on_pid,
            report_dir=ctx.workdir / "reports",
        )
        variables = dict(result.exported)
        details: dict[str, Any] = result.summary()
        if result.succeeded and cfg.publishes is not None:
            variables.update(
                self._publish(ctx, cfg.publishes, platform, artifact_dirs.get(PRIMARY))
            )
            details["image"] = {k: variables[k] for k in ("ImageURI", "ImageDigest", "ImageTag")}
        return ActionResult(
            succeeded=result.succeeded,
            reason="" if result.succeeded else "ActionFailed",
            message=_message(result),
            variables=variables,
            reports=result.reports,
            details=details,
        )

    # -- reuse by input digest (engine/reuse.py)

    @staticmethod
    def reuse_by_default(config: Mapping[str, Any]) -> bool:
        """A build that publishes an image is reused when nothing it reads changed."""
        return bool(config.get("publishes"))

    def reuse_inputs(self, ctx: ActionContext) -> dict[str, Any]:
        """What a build reads beyond its input artifacts and config: the buildspec's content,
        the variables it runs with, and its environment image."""
        cfg = BuildConfig.model_validate(dict(ctx.config))
        sources = self._sources(ctx, cfg)
        primary = next(iter(sources))
        if cfg.buildspec and _is_inline(cfg.buildspec):
            buildspec = cfg.buildspec
        else:
            try:
                path = find_buildspec(sources[primary], cfg.buildspec or "buildspec.yml")
                buildspec = path.read_text(encoding="utf-8", errors="replace")
            except (ConfigError, OSError):
                buildspec = ""  # the run says what is wrong; no earlier run had it either
        image = cfg.image or (cfg.environment.image if cfg.environment else None)
        env = build_environment(
            getattr(ctx.services, "platform", None),
            ctx.pipeline,
            environment=cfg.publishes.environment if cfg.publishes else None,
            revision=_revision(ctx, primary),
            on_host=not image,
        )
        env.update(base_env(cfg.publishes))
        env.update(cfg.env)
        return {"buildspec": buildspec, "env": env, "image": image}

    # -- helpers

    def _sources(self, ctx: ActionContext, cfg: BuildConfig) -> dict[str, Path]:
        inputs = dict(ctx.inputs)
        if not inputs:
            empty = ctx.workdir / "nosource"
            empty.mkdir(parents=True, exist_ok=True)
            return {"nosource": empty}
        primary = cfg.primary_source or next(iter(inputs))
        if primary not in inputs:
            raise ActionFailed(
                f"primarySource {primary!r} is not an input of action {ctx.action.name} "
                f"(inputs: {', '.join(inputs)})"
            )
        return {primary: inputs[primary], **{k: v for k, v in inputs.items() if k != primary}}

    def _buildspec(
        self, ctx: ActionContext, cfg: BuildConfig, src: Path, primary: str
    ) -> Buildspec:
        try:
            if cfg.buildspec and _is_inline(cfg.buildspec):
                label = f"{ctx.stage}/{ctx.action.name}: config.buildspec"
                raw = ctx.action.config.get("buildspec")
                if isinstance(raw, str) and REF.search(raw):
                    return _inline_as_data(raw, label, ctx.variables)
                return parse_buildspec(cfg.buildspec, label)
            rel = cfg.buildspec or "buildspec.yml"
            path = find_buildspec(src, rel)
            return load_buildspec(path, name=f"{primary}/{rel}")
        except ValidationFailed as e:
            raise ActionFailed(f"buildspec is not valid:\n{e}") from None
        except ConfigError as e:
            raise ActionFailed(str(e).replace(str(src), primary)) from None

    def _publish(
        self, ctx: ActionContext, pub: Publishes, platform: Platform, out: Path | None
    ) -> dict[str, str]:
        repo = published_repository(platform, pub)
        ref = f"{repo}:{pub.tag}"
        try:
            digest = str(platform.resolve_digest(ref))
        except Exception as e:  # noqa: BLE001 - the platform's errors are many; report them as tool errors
            raise ActionError(f"publishes: cannot resolve the digest of {ref}: {e}") from None
        uri = f"{repo}@{digest}"
        if out is not None:
            (out / "imageDetail.json").write_text(
                json.dumps({"ImageURI": uri}) + "\n", encoding="utf-8"
            )
        ctx.log.write(f"[Container] Published {ref} -> {uri}\n")
        return {"ImageURI": uri, "ImageDigest": digest, "ImageTag": pub.tag}


def published_repository(platform: Platform, pub: Publishes) -> str:
    """`publishes.repository` with its environment's registry host in front (unless it has one)."""
    repo = pub.repository
    first = repo.split("/", 1)[0]
    if not ("." in first or ":" in first or first == "localhost") and pub.environment:
        repo = f"{platform.registry_host(pub.environment)}/{repo}"
    return repo


def publish_env(platform: Platform, pub: Publishes) -> dict[str, str]:
    """REPOSITORY_URI, IMAGE_REPO_NAME, REGISTRY_HOST and IMAGE_TAG from `publishes`, so that a
    buildspec pushes `$REPOSITORY_URI:$IMAGE_TAG` where the action resolves the digest."""
    uri = published_repository(platform, pub)
    host, _, name = uri.partition("/")
    if not name:  # no registry to name: the platform's default REPOSITORY_URI stays
        return {"IMAGE_TAG": pub.tag}
    return {
        "REPOSITORY_URI": uri,
        "REGISTRY_HOST": host,
        "IMAGE_REPO_NAME": name,
        "IMAGE_TAG": pub.tag,
    }


_TOKEN = re.compile(r"CONVEYORREF(\d+)FERYEVNOC")


def _inline_as_data(raw: str, label: str, scope: Mapping[str, Mapping[str, str]]) -> Buildspec:
    """An inline buildspec whose `#{ns.var}` values are data: in commands they become quoted
    environment references (their values go in `env.variables`), elsewhere plain values."""
    refs: list[tuple[str, str]] = []

    def token(m: re.Match[str]) -> str:
        refs.append((m.group(1), m.group(2)))
        return f"CONVEYORREF{len(refs) - 1}FERYEVNOC"

    spec = parse_buildspec(REF.sub(token, raw), label)
    values: dict[str, str] = {}

    def ref_text(m: re.Match[str]) -> str:
        ns, var = refs[int(m.group(1))]
        return f"#{{{ns}.{var}}}"

    def value(m: re.Match[str]) -> str:
        ns, var = refs[int(m.group(1))]
        try:
            return str(scope[ns][var])
        except KeyError:
            raise ActionFailed(f"{label}: unknown variable #{{{ns}.{var}}}") from None

    def walk(obj: Any) -> Any:
        if isinstance(obj, Command):
            text, env = command_as_data(_TOKEN.sub(ref_text, obj.text), scope)
            values.update(env)
            return dataclasses.replace(obj, text=text)
        if isinstance(obj, str):
            return _TOKEN.sub(value, obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            changes = {f.name: walk(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            return dataclasses.replace(obj, **changes)
        if isinstance(obj, Mapping):
            return {walk(k): walk(v) for k, v in obj.items()}
        if isinstance(obj, tuple):
            return tuple(walk(x) for x in obj)
        return obj

    out: Buildspec = walk(spec)
    # project-level values for the references: exported by the runner, quoted, as data
    return dataclasses.replace(
        out, env=dataclasses.replace(out.env, variables={**values, **out.env.variables})
    )


def build_environment(
    platform: Platform | None,
    pipeline: Pipeline,
    *,
    environment: str | None = None,
    revision: str = "",
    on_host: bool = True,
) -> dict[str, str]:
    """The variables a Build gets from the platform, shared by the `build` action and
    `conveyor buildspec run --environment` (so a pipeline's Build reproduces by hand):
    CONTAINERS_CONF and the registries file (CONTAINERS_REGISTRIES_CONF), CONTAINER_RUNTIME,
    REGISTRY_HOST / REPOSITORY_URI / IMAGE_REPO_NAME of the target environment, IMAGE_TAG
    (the source revision) and, on the host, Conveyor's own Python first on PATH."""
    env: dict[str, str] = {}
    if platform is not None:
        env.update(platform.container_env())
        env.update(platform.image_env(pipeline))
        key = re.sub(r"[^A-Z0-9]", "_", (environment or "").upper())
        if environment and f"REGISTRY_HOST_{key}" in env:
            env["REGISTRY_HOST"] = env[f"REGISTRY_HOST_{key}"]
            env["REPOSITORY_URI"] = env[f"REPOSITORY_URI_{key}"]
            env["IMAGE_REPO_NAME"] = env["REPOSITORY_URI"].split("/", 1)[1]
    if revision:
        env["IMAGE_TAG"] = revision
    if on_host:
        # on the host, Conveyor's own Python environment (pytest, selenium) comes first, as a
        # CodeBuild image's runtimes do; then the Node set-up brought (.tools/node)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = venv_bin + os.pathsep + tool_path()
    return env


def _message(result: BuildResult) -> str:
    if result.succeeded:
        n = sum(len(a.files) for a in result.artifacts)
        return f"build succeeded ({n} artifact file(s), {len(result.reports)} report(s))"
    failing = [r for r in result.reports if r.failed or r.errors]
    if failing:
        # "the tests said no" is the one line a person needs, not the command that ran them
        parts = []
        for r in failing:
            names = ", ".join(f.get("name", "?").rsplit(".", 1)[-1] for f in r.failures[:3])
            more = f" and {len(r.failures) - 3} more" if len(r.failures) > 3 else ""
            parts.append(
                f"{r.failed + r.errors} of {r.total} tests failed in report '{r.name}': "
                f"{names}{more}"
            )
        return "; ".join(parts)
    return result.message or "build failed"


def _revision(ctx: ActionContext, primary: str) -> str:
    for stage in ctx.pipeline.stages:
        for action in stage.actions:
            if primary in action.outputs:
                rev = ctx.revisions.get(action.name) or ctx.variables.get(
                    action.namespace or "", {}
                )
                for k in ("CommitId", "commitId", "revision", "Revision"):
                    if rev and k in rev:
                        return str(rev[k])
    return ""


def _next_build_number(state_dir: Path, key: str) -> int:
    path = state_dir / "builds" / f"{key}.number"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        n = int(path.read_text().strip()) + 1
    except (OSError, ValueError):
        n = 1
    path.write_text(str(n))
    return n
