"""`image.promote` on AWS: a CodeBuild project copying the image by digest from the source
environment's ECR repository to the target's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conveyor.actions.aws_mapping import AwsMapping, ExportRequest, SynthRequest, codebuild_type_id
from conveyor.actions.deploy_aws import image_configuration
from conveyor.aws import buildspecs
from conveyor.aws.synth import ECR_PUSH, Synthesizer, codebuild_action_type
from conveyor.model.pipeline import Action, Stage
from conveyor.model.variables import REF


class PromoteAws(AwsMapping):
    @classmethod
    def to_codepipeline(cls, req: ExportRequest) -> dict[str, Any]:
        return req.finish(codebuild_type_id(), image_configuration(req, tag=True))

    @classmethod
    def to_cloudformation(cls, req: SynthRequest) -> dict[str, Any] | None:
        sx, a, cfg = req.synth, req.action, req.config
        proj, extra_input = promote(sx, req.stage, a, cfg)
        if proj is None:
            return None
        req.decl["ActionTypeId"] = codebuild_action_type()
        action_env = [{"name": "IMAGE", "value": str(cfg.get("image", "")), "type": "PLAINTEXT"}]
        if cfg.get("tag"):
            action_env.append({"name": "TAG", "value": str(cfg["tag"]), "type": "PLAINTEXT"})
        configuration = {
            "ProjectName": {"Ref": proj},
            "EnvironmentVariables": json.dumps(action_env, separators=(",", ":")),
        }
        if not req.inputs:
            if extra_input is None:
                sx.fail(
                    a.path,
                    f"action '{a.name}': a CodeBuild action needs an input artifact; give "
                    "`inputs:` (the build's output)",
                )
                return None
            req.inputs.append(extra_input)
            sx.warnings.append(
                f"action '{a.name}': CodeBuild actions need an input artifact; reads "
                f"'{extra_input}' (the output of the action that built the image)"
            )
        return req.finish(configuration)


def promote(
    sx: Synthesizer, s: Stage, a: Action, cfg: dict[str, Any]
) -> tuple[str | None, str | None]:
    target = cfg.get("to")
    if not target:
        sx.fail(
            (*a.path, "config"),
            f"action '{a.name}': on AWS a promotion needs `to:` (an environment, "
            "whose ECR repository is the target); `targetRegistry` is local-only",
        )
        return None, None
    dst = sx.repository(str(target), (*a.path, "config", "to"))
    src_action = _image_source(sx, cfg.get("image"))
    src_env = None
    if src_action is not None and isinstance(src_action.config.get("publishes"), Mapping):
        src_env = src_action.config["publishes"].get("environment") or (
            "test" if "test" in sx.p.environments else None
        )
    src = sx.repository(str(src_env), a.path) if src_env else None
    if dst is None:
        return None, None
    statements: list[dict[str, Any]] = [
        {
            "Sid": "EcrPushTarget",
            "Effect": "Allow",
            "Action": [
                *ECR_PUSH,
            ],
            "Resource": {"Fn::GetAtt": [dst, "Arn"]},
        },
        {
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
    ]
    if src:
        statements.insert(
            0,
            {
                "Sid": "EcrPullSource",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:DescribeImages",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": {"Fn::GetAtt": [src, "Arn"]},
            },
        )
    else:
        sx.warnings.append(
            f"action '{a.name}': the source repository of '{cfg.get('image')}' is not one "
            "this template creates; grant the promote role pull access to it"
        )
    env: dict[str, Any] = {
        "TARGET_REPOSITORY_URI": {"Fn::GetAtt": [dst, "RepositoryUri"]},
        "TARGET_REPOSITORY_NAME": {"Ref": dst},
        "REGISTRY_HOST": {"Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"},
    }
    proj = sx.project(
        s,
        a,
        buildspec=buildspecs.promote_buildspec(),
        env=env,
        statements=statements,
        description=f"{sx.p.name}: {s.name}/{a.name} (copy by digest to {target})",
    )
    extra_input = src_action.outputs[0] if src_action is not None and src_action.outputs else None
    return proj, extra_input


def _image_source(sx: Synthesizer, image: Any) -> Action | None:
    """The action an `image: "#{NS.ImageURI}"` reads from (followed through promotions)."""
    if not isinstance(image, str):
        return None
    mt = REF.search(image)
    if not mt:
        return None
    owner = sx.ns_owner.get(mt.group(1))
    if owner is not None and owner.type == "image.promote":
        return _image_source(sx, owner.config.get("image"))
    return owner
