"""`build` on AWS: a CodeBuild project running the action's buildspec (its `publishes:` image
pushed to the environment's ECR repository), exported as a CodeBuild action."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.actions.aws_mapping import (
    AwsMapping,
    ExportRequest,
    ImportRequest,
    ProviderKey,
    SynthRequest,
    codebuild_configuration,
    codebuild_type_id,
)
from conveyor.aws import images
from conveyor.aws.synth import (
    CODEBUILD_IMAGE,
    ECR_PUSH,
    Synthesizer,
    _inline,
    codebuild_action_type,
)
from conveyor.model.pipeline import Action, Stage
from conveyor.spec.codepipeline import project_name


class BuildAws(AwsMapping):
    codepipeline_providers: ClassVar[tuple[ProviderKey, ...]] = (
        ("Build", "AWS", "CodeBuild"),
        ("Test", "AWS", "CodeBuild"),
    )

    @classmethod
    def to_codepipeline(cls, req: ExportRequest) -> dict[str, Any]:
        cfg = req.config
        configuration = codebuild_configuration(req)
        if cfg.get("primarySource"):
            configuration["PrimarySource"] = cfg["primarySource"]
        if cfg.get("env"):
            configuration["EnvironmentVariables"] = json.dumps(
                [
                    {"name": k, "value": str(v), "type": "PLAINTEXT"}
                    for k, v in dict(cfg["env"]).items()
                ],
                separators=(",", ":"),
            )
        return req.finish(codebuild_type_id(), configuration)

    @classmethod
    def from_codepipeline(cls, req: ImportRequest) -> dict[str, Any]:
        cfg = req.configuration
        config: dict[str, Any] = {"codebuildProject": cfg.pop("ProjectName", "")}
        if "PrimarySource" in cfg:
            config["primarySource"] = cfg.pop("PrimarySource")
        env_json = cfg.get("EnvironmentVariables")
        if isinstance(env_json, str):
            try:
                env = json.loads(env_json)
            except json.JSONDecodeError as e:
                req.problems.err(
                    (*req.path, "configuration", "EnvironmentVariables"),
                    f"action '{req.name}': EnvironmentVariables is not a JSON list: {e.msg}",
                )
                env = None
            if isinstance(env, list) and all(
                isinstance(x, Mapping) and "name" in x and x.get("type", "PLAINTEXT") == "PLAINTEXT"
                for x in env
            ):
                config["env"] = {str(x["name"]): str(x.get("value", "")) for x in env}
                del cfg["EnvironmentVariables"]
        return config

    @classmethod
    def check_import(cls, req: ImportRequest, config: Mapping[str, Any]) -> None:
        """An input artifact the buildspec cannot find (CODEBUILD_SRC_DIR_<name>)."""
        inputs = req.inputs
        primary = config.get("primarySource") or (inputs[0] if inputs else None)
        for i, art in enumerate(inputs):
            if art != primary and not re.fullmatch(r"[A-Za-z0-9_]+", art):
                req.problems.warn(
                    (*req.path, "inputArtifacts", i),
                    f"action '{req.name}': input artifact '{art}' cannot become "
                    f"CODEBUILD_SRC_DIR_{art} (a variable name has only letters, digits "
                    f"and _), so the buildspec cannot find it: rename it "
                    f"(e.g. '{re.sub(r'[^A-Za-z0-9_]', '_', art)}')",
                )

    @classmethod
    def to_cloudformation(cls, req: SynthRequest) -> dict[str, Any] | None:
        cfg = req.config
        proj = build(req.synth, req.stage, req.action, cfg)
        req.decl["ActionTypeId"] = codebuild_action_type()
        configuration: dict[str, Any] = {"ProjectName": {"Ref": proj}}
        if cfg.get("primarySource"):
            configuration["PrimarySource"] = cfg["primarySource"]
        if cfg.get("env"):
            configuration["EnvironmentVariables"] = json.dumps(
                [
                    {"name": k, "value": str(v), "type": "PLAINTEXT"}
                    for k, v in sorted(dict(cfg["env"]).items())
                ],
                separators=(",", ":"),
            )
        req.last_project[:] = [proj]
        tid = req.synth.extra(req.stage, req.action).get("actionTypeId")
        if tid and tid.get("category") == "Test":
            req.decl["ActionTypeId"]["Category"] = "Test"
        return req.finish(configuration)


def build(sx: Synthesizer, s: Stage, a: Action, cfg: dict[str, Any]) -> str:
    spec = str(cfg.get("buildspec") or "buildspec.yml")
    env: dict[str, Any] = {
        "AWS_ACCOUNT_ID": {"Ref": "AWS::AccountId"},
        "REGISTRY_HOST": {"Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"},
        "CONTAINER_RUNTIME": "docker",
    }
    statements: list[dict[str, Any]] = []
    privileged = False
    pub = cfg.get("publishes")
    if isinstance(pub, Mapping):
        env_name = str(
            pub.get("environment")
            or ("test" if "test" in sx.p.environments else next(iter(sx.p.environments), ""))
        )
        repo = sx.repository(env_name, (*a.path, "config", "publishes")) if env_name else None
        if repo is None:
            if not env_name:
                sx.fail(
                    (*a.path, "config", "publishes"),
                    f"action '{a.name}' publishes an image but the "
                    "pipeline has no environments to give it an ECR repository",
                )
        else:
            privileged = True
            env["REPOSITORY_URI"] = {"Fn::GetAtt": [repo, "RepositoryUri"]}
            env["IMAGE_REPO_NAME"] = {"Ref": repo}
            statements += [
                {
                    "Sid": "EcrPush",
                    "Effect": "Allow",
                    "Action": [
                        *ECR_PUSH,
                    ],
                    "Resource": {"Fn::GetAtt": [repo, "Arn"]},
                },
                {
                    "Sid": "EcrLogin",
                    "Effect": "Allow",
                    "Action": "ecr:GetAuthorizationToken",
                    "Resource": "*",
                },
            ]
        base = pub.get("base")
        if isinstance(base, str) and base and repo is not None:
            statements.append(base_image(sx, base, env))
    reached = sx.reached_environment(a)
    if reached is not None:
        # a test suite reading a deploy's URL: a browser at the image's paths (installed by
        # the suite's buildspec, the image has none), and port-forward to a
        # cluster-internal URL
        env["CHROME_BINARY"] = images.DEFAULT.chrome
        env["CHROMEDRIVER"] = images.DEFAULT.chromedriver
        env["INSTALL_BROWSER"] = "google-chrome"
        cluster, _ = sx.cluster(reached)
        env["EKS_CLUSTER"] = cluster
        statements.append(sx.eks_describe(reached))
    if cfg.get("image"):
        sx.warnings.append(
            f"action '{a.name}': build image '{cfg['image']}' is local; on AWS the project "
            f"runs on {CODEBUILD_IMAGE}"
        )
    if cfg.get("codebuildProject"):
        sx.warnings.append(
            f"action '{a.name}': imported from CodeBuild project '{cfg['codebuildProject']}'; "
            f"the template creates its own project '{project_name(sx.p.name, a.name)}' "
            f"running {spec if not _inline(a) else 'the inline buildspec'}"
        )
    proj = sx.project(
        s,
        a,
        buildspec=spec,
        env=env,
        statements=statements,
        privileged=privileged,
        description=f"{sx.p.name}: {s.name}/{a.name} (buildspec from the source)",
        cache=True,
    )
    if reached is not None:
        sx.kubectl_role(proj)
        sx.port_forward_access(a, reached)
    return proj


def base_image(sx: Synthesizer, base: str, env: dict[str, Any]) -> dict[str, Any]:
    """`publishes.base` on AWS: BASE_IMAGE (the Containerfile's BASE) is the recipe's own tag in
    the stack's repository for that image; the project may pull from it, nothing more."""
    from conveyor.images.recipe import lookup

    repo = sx.base_repository(base)
    env["BASE_IMAGE"] = {"Fn::Sub": f"${{{repo}.RepositoryUri}}:{lookup(base).content_hash()}"}
    return {
        "Sid": "EcrPullBase",
        "Effect": "Allow",
        "Action": [
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ],
        "Resource": {"Fn::GetAtt": [repo, "Arn"]},
    }
