"""`deploy` on AWS: a CodeBuild project running kubectl against the environment's EKS
cluster (or, with `--eks-deploy native`, CodePipeline's EKS action)."""

from __future__ import annotations

import json
from typing import Any

from conveyor.actions.aws_mapping import (
    AwsMapping,
    ExportRequest,
    SynthRequest,
    codebuild_configuration,
    codebuild_type_id,
)
from conveyor.aws import buildspecs
from conveyor.aws.synth import (
    Synthesizer,
    _strings,
    access_entry,
    arn,
    codebuild_action_type,
    logical_id,
)
from conveyor.model.pipeline import Action, Environment, Stage
from conveyor.spec.pipeline_file import parse_duration


class DeployAws(AwsMapping):
    @classmethod
    def to_codepipeline(cls, req: ExportRequest) -> dict[str, Any]:
        return req.finish(codebuild_type_id(), image_configuration(req))

    @classmethod
    def to_cloudformation(cls, req: SynthRequest) -> dict[str, Any] | None:
        sx, a, cfg = req.synth, req.action, req.config
        native = sx.eks_deploy == "native" and native_ok(sx, a)
        e = sx.eks_env(a)
        if e is None:
            return None
        if native:
            req.decl["ActionTypeId"] = {
                "Category": "Deploy",
                "Owner": "AWS",
                "Provider": "EKS",
                "Version": "1",
            }
            return req.finish(native_deploy(sx, a, e, cfg))
        proj = deploy(sx, req.stage, a, e, cfg)
        req.decl["ActionTypeId"] = codebuild_action_type()
        configuration: dict[str, Any] = {"ProjectName": {"Ref": proj}}
        if cfg.get("image"):
            configuration["EnvironmentVariables"] = json.dumps(
                [{"name": "IMAGE", "value": str(cfg["image"]), "type": "PLAINTEXT"}],
                separators=(",", ":"),
            )
        req.last_project[:] = [proj]
        return req.finish(configuration)


def image_configuration(req: ExportRequest, *, tag: bool = False) -> dict[str, Any]:
    """A CodeBuild action's project, with IMAGE (and TAG) as its environment variables."""
    cfg = req.config
    configuration = codebuild_configuration(req)
    if cfg.get("image"):
        env = [{"name": "IMAGE", "value": str(cfg["image"]), "type": "PLAINTEXT"}]
        if tag and cfg.get("tag"):
            env.append({"name": "TAG", "value": str(cfg["tag"]), "type": "PLAINTEXT"})
        configuration["EnvironmentVariables"] = json.dumps(env, separators=(",", ":"))
    return configuration


def native_ok(sx: Synthesizer, a: Action) -> bool:
    """CodePipeline's EKS action exports no URL nor ImageURI: only a deploy whose variables
    nothing reads (no `#{NS.*}`, no monitor of its environment) can use it."""
    readers = [
        x.name
        for _, x in sx.p.all_actions()
        if x is not a
        and (
            (a.namespace and any(f"#{{{a.namespace}." in t for t in _strings(x.config)))
            or (x.type == "monitor" and x.environment == a.environment)
        )
    ]
    if readers:
        sx.warnings.append(
            f"action '{a.name}' stays a CodeBuild deploy under --eks-deploy native: "
            f"{', '.join(readers)} read(s) its URL or image, which the EKS action does not "
            "export"
        )
    return not readers


def native_deploy(
    sx: Synthesizer, a: Action, e: Environment, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Deploy/AWS/EKS/1: the pipeline role applies the manifests in the input artifact."""
    cluster, ns = sx.cluster(e)
    lid = logical_id(a.name)
    sx.pipeline_statements.append(
        {
            "Sid": f"EksDescribe{lid}",
            "Effect": "Allow",
            "Action": "eks:DescribeCluster",
            "Resource": arn("eks", f"cluster/${{{logical_id(e.name)}EksClusterName}}"),
        }
    )
    sx.resources[f"{lid}AccessEntry"] = access_entry(
        (
            f"lets the pipeline role (CodePipeline's EKS action '{a.name}') apply "
            f"manifests in the namespace of environment '{e.name}' only"
        ),
        cluster,
        {"Fn::GetAtt": ["PipelineRole", "Arn"]},
        ns,
        "AmazonEKSEditPolicy",
    )
    sx.warnings.append(
        f"action '{a.name}' uses CodePipeline's EKS action: it applies the manifests as they "
        "are in its input artifact, so they must already name the image by digest; it "
        "neither checks the namespace, nor undoes a failed rollout, nor exports a URL"
    )
    return {
        "ClusterName": cluster,
        "Namespace": ns,
        "ManifestFiles": str(cfg.get("manifests", "k8s/")),
    }


def deploy(sx: Synthesizer, s: Stage, a: Action, e: Environment, cfg: dict[str, Any]) -> str:
    cluster, ns = sx.cluster(e)
    repo = sx.repository(e.name, (*a.path, "environment"))
    image_name = (e.repository or sx.p.name).split("/")[-1]
    env: dict[str, Any] = {
        "EKS_CLUSTER": cluster,
        "K8S_NAMESPACE": ns,
        "MANIFESTS": str(cfg.get("manifests", "k8s/")),
        "IMAGE_NAME": image_name,
        "ROLLOUT_TIMEOUT": str(parse_duration(cfg.get("timeout")) or a.timeout_seconds or 300),
    }
    if e.url:
        env["APP_URL"] = e.url
    statements: list[dict[str, Any]] = [sx.eks_describe(e)]
    if repo:
        statements.append(
            {
                "Sid": "EcrResolveDigest",
                "Effect": "Allow",
                "Action": "ecr:DescribeImages",
                "Resource": {"Fn::GetAtt": [repo, "Arn"]},
            }
        )
    proj = sx.project(
        s,
        a,
        buildspec=buildspecs.deploy_buildspec(),
        env=env,
        statements=statements,
        description=f"{sx.p.name}: {s.name}/{a.name} (kubectl apply to {e.name})",
    )
    sx.kubectl_role(proj)
    role = f"{logical_id(a.name)}Role"
    sx.resources[f"{logical_id(a.name)}AccessEntry"] = access_entry(
        (
            f"lets the role of the CodeBuild project of '{a.name}' use kubectl in "
            "namespace of "
            f"environment '{e.name}' only (AmazonEKSEditPolicy scoped to the "
            "namespace); needs a cluster "
            "with authenticationMode API or API_AND_CONFIG_MAP"
        ),
        cluster,
        {"Fn::GetAtt": [role, "Arn"]},
        ns,
        "AmazonEKSEditPolicy",
    )
    return proj
