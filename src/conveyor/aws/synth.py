"""Pipeline model -> one CloudFormation template (a dict): the same pipeline, run by AWS.

Pure: no boto3, no I/O. The template creates

- the CodePipeline (V2): stages, actions, runOrder, artifacts, namespaces, execution mode,
  variables, triggers (CodeStar connection sources), stage onFailure retry/rollback, and each
  `monitor` action as the stage's onSuccess condition on a CloudWatch alarm (result ROLLBACK);
- sources: CodeCommit for bare repository names (the seed; the repository and branch are
  parameters) with an EventBridge rule per source for pushes, or CodeStar connections for
  GitHub/GitLab/Bitbucket URLs (ConnectionArn parameter);
- one CodeBuild project per build / deploy / promote action, with its role and log group;
- ECR repositories per environment (IMMUTABLE tags where images are promoted to, scan on
  push, lifecycle policy), the S3 artifact bucket (encrypted, versioned, public access
  blocked, TLS-only policy), the approval SNS topic and its optional subscription;
- EKS access entries giving each deploy project's role edit rights in its namespace only.

What AWS cannot run (a podman environment, an action type with no AWS form) is an
`Unmappable` error listing every part, each with its path in the pipeline file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.actions.aws_mapping import (
    SYNTH_METHOD,
    SynthRequest,
    codebuild_type_id,
    template_type_id,
)
from conveyor.actions.registry import ActionRegistry
from conveyor.aws import images
from conveyor.errors import ConfigError
from conveyor.model.pipeline import Action, Environment, Path, Pipeline, Stage
from conveyor.model.variables import REF
from conveyor.spec.codepipeline import (
    SETTINGS_KEY,
    declared_variables,
    is_codecommit_name,
    project_name,
)

CODEBUILD_IMAGE = images.DEFAULT.name  # Ubuntu 22.04 with Docker, Node, Python, kubectl
PIPELINE_NAME = re.compile(r"^[A-Za-z0-9.@\-_]{1,100}$")
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{1,254}$")
PROVISIONING_MARGIN_MINUTES = 10
PORT_FORWARD_GROUP = "conveyor-port-forward"  # Kubernetes group: prepare-cluster binds its Role


@dataclass(frozen=True)
class Finding:
    path: Path
    message: str


class Unmappable(ConfigError):
    """The pipeline has parts AWS cannot run; `findings` locate each in the pipeline file."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__(
            "cannot synthesize for AWS:\n  " + "\n  ".join(f.message for f in findings)
        )


@dataclass
class Synthesis:
    template: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def logical_id(*parts: str) -> str:
    """A CloudFormation logical id: alphanumeric, CamelCased from the parts."""
    out = ""
    for part in parts:
        for word in re.split(r"[^A-Za-z0-9]+", part):
            if word:
                out += word[0].upper() + word[1:]
    return out[:255] or "X"


def sub(text: str) -> Any:
    """`Fn::Sub` only when the text has a `${...}` (cfn-lint W1020 otherwise)."""
    return {"Fn::Sub": text} if "${" in text else text


def arn(service: str, resource: str, region: bool = True, account: bool = True) -> dict[str, str]:
    r = "${AWS::Region}" if region else ""
    a = "${AWS::AccountId}" if account else ""
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:{service}:{r}:{a}:{resource}"}


def skip_check(resource: dict[str, Any], check: str, why: str) -> None:
    """A checkov finding justified in one line in the resource's metadata (checkov reads it)."""
    skips = resource.setdefault("Metadata", {}).setdefault("checkov", {}).setdefault("skip", [])
    skips.append({"id": check, "comment": why})


LOG_GROUP_KMS = (
    "CloudWatch Logs encrypts log data at rest by default; a customer key would need a key "
    "policy for the logs service that this template does not own"
)
ECR_KMS = (
    "images are encrypted at rest with AES256 (ECR's default); KMS adds a key and its policy "
    "without changing who may pull"
)
TEST_TAGS_MUTABLE = (
    "the test repository's tags are commit ids a retried build pushes again; deploys pin the "
    "digest, so a moved tag never changes what runs (prod is immutable)"
)
BUCKET_LOGS = (
    "artifact bucket: access logging needs a second bucket; CloudTrail data events are the "
    "audit path for these objects"
)


ECR_PUSH = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]
ARTIFACT_OBJECTS = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]


def codebuild_action_type(category: str = "Build") -> dict[str, str]:
    """The ActionTypeId of a CodeBuild action in the template."""
    return template_type_id(codebuild_type_id(category))


def access_entry(
    why: str, cluster: Any, principal: Any, ns: Any, policy: str, groups: Sequence[str] = ()
) -> dict[str, Any]:
    """An EKS access entry: `policy` in namespace `ns` only (and Kubernetes `groups`)."""
    props: dict[str, Any] = {
        "ClusterName": cluster,
        "PrincipalArn": principal,
        "Type": "STANDARD",
    }
    if groups:
        props["KubernetesGroups"] = list(groups)
    props["AccessPolicies"] = [
        {
            "PolicyArn": {
                "Fn::Sub": f"arn:${{AWS::Partition}}:eks::aws:cluster-access-policy/{policy}"
            },
            "AccessScope": {"Type": "namespace", "Namespaces": [ns]},
        }
    ]
    return {
        "Type": "AWS::EKS::AccessEntry",
        "Metadata": {"Conveyor": {"why": why}},
        "Properties": props,
    }


def _env_vars(pairs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"Name": k, "Type": "PLAINTEXT", "Value": v} for k, v in sorted(pairs.items())]


def _policy(name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "PolicyName": name,
        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
    }


def _assume(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }


class Synthesizer:
    """The template being built: what each type's `to_cloudformation` adds to (parameters,
    resources, the pipeline role's statements, findings, warnings) and the shared parts
    (environments, EKS clusters, ECR repositories, CodeBuild projects)."""

    def __init__(
        self,
        p: Pipeline,
        target_envs: Mapping[str, str],
        report_groups: Mapping[str, Sequence[str]] | None = None,
        registry: ActionRegistry | None = None,
    ) -> None:
        self.p = p
        self.registry = registry or ActionRegistry()
        self.target_envs = dict(target_envs)
        self.report_groups = {k: list(v) for k, v in (report_groups or {}).items()}
        self.eks_deploy = "codebuild"
        self.findings: list[Finding] = []
        self.warnings: list[str] = []
        self.params: dict[str, dict[str, Any]] = {}
        self.conditions: dict[str, Any] = {}
        self.resources: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.pipeline_statements: list[dict[str, Any]] = []
        self.project_arns: list[Any] = []
        self.repos: dict[str, str] = {}  # environment -> ECR repository logical id
        self.ns_owner: dict[str, Action] = {
            a.namespace: a for _, a in p.all_actions() if a.namespace
        }

    # ------------------------------------------------------------------ helpers
    def fail(self, path: Path, msg: str) -> None:
        # one problem per place: an environment used by several actions is named once
        if all(f.path != path for f in self.findings):
            self.findings.append(Finding(path, msg))

    def param(
        self, name: str, description: str, default: str | None = None, **extra: Any
    ) -> dict[str, str]:
        d: dict[str, Any] = {"Type": "String", "Description": description}
        if default is not None:
            d["Default"] = default
        d.update(extra)
        self.params[name] = d
        return {"Ref": name}

    def env(self, name: str, path: Path) -> Environment | None:
        e = self.p.environments.get(name)
        if e is None:
            self.fail(
                path,
                f"unknown environment '{name}' (known: "
                f"{', '.join(sorted(self.p.environments)) or 'none'})",
            )
        return e

    def eks_env(self, a: Action) -> Environment | None:
        if not a.environment:
            self.fail(a.path, f"action '{a.name}' ({a.type}) names no `environment:`")
            return None
        e = self.env(a.environment, (*a.path, "environment"))
        if e is None:
            return None
        driver = self.target_envs.get(e.name, e.driver)
        if driver != "eks":
            self.fail(
                (*e.path, "driver"),
                f"environment '{e.name}' uses driver '{e.driver}', which AWS cannot run (action "
                f"'{a.name}' "
                f"deploys to it): set `driver: eks` and `cluster:` in the pipeline file, or pass "
                f"`--target-env {e.name}=eks` to deploy it to the EKS cluster named by the "
                "parameter "
                f"{logical_id(e.name)}EksClusterName",
            )
            return None
        return e

    def cluster(self, e: Environment) -> tuple[dict[str, str], dict[str, str]]:
        lid = logical_id(e.name)
        cluster = self.param(
            f"{lid}EksClusterName",
            f"EKS cluster of environment '{e.name}'",
            e.cluster or f"{self.p.name}-{e.name}"[:100],
            MinLength=1,
            MaxLength=100,
            AllowedPattern="^[0-9A-Za-z][A-Za-z0-9\\-_]*$",
        )
        ns = self.param(
            f"{lid}Namespace",
            f"Kubernetes namespace of environment '{e.name}'",
            e.namespace or e.name,
            MinLength=1,
            MaxLength=63,
            AllowedPattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        )
        return cluster, ns

    def repository(self, env_name: str, path: Path) -> str | None:
        """The ECR repository resource of an environment (created on first use)."""
        if env_name in self.repos:
            return self.repos[env_name]
        e = self.env(env_name, path)
        if e is None:
            return None
        lid = logical_id(e.name) + "Repository"
        base = (e.repository or self.p.name).lower()
        promoted_to = any(
            a.type == "image.promote" and a.config.get("to") == e.name
            for _, a in self.p.all_actions()
        )
        immutable = promoted_to or e.name == "prod" or e.settings.get("immutableTags") is True
        self.ecr_repository(
            lid,
            f"{base}-{e.name.lower()}",
            f"ECR repository of environment '{e.name}'",
            immutable,
            200 if immutable else 50,
        )
        self.repos[env_name] = lid
        return lid

    def ecr_repository(
        self, lid: str, default: str, description: str, immutable: bool, keep: int
    ) -> None:
        """An ECR repository resource (scanned on push, kept on stack deletion, untagged images
        expired after 14 days, the newest `keep` kept), its name a parameter (default
        `default`, made a valid name) and its URI an output."""
        name = self.param(
            f"{lid}Name",
            description,
            re.sub(r"[^a-z0-9._/-]", "-", default),
            MinLength=2,
            MaxLength=256,
            AllowedPattern="^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$",
        )
        lifecycle = {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "expire untagged images after 14 days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 14,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": "keep the newest images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
        self.resources[lid] = {
            "Type": "AWS::ECR::Repository",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "RepositoryName": name,
                "ImageTagMutability": "IMMUTABLE" if immutable else "MUTABLE",
                "ImageScanningConfiguration": {"ScanOnPush": True},
                "EncryptionConfiguration": {"EncryptionType": "AES256"},
                "LifecyclePolicy": {"LifecyclePolicyText": json.dumps(lifecycle, sort_keys=True)},
            },
        }
        skip_check(self.resources[lid], "CKV_AWS_136", ECR_KMS)
        if not immutable:
            skip_check(self.resources[lid], "CKV_AWS_51", TEST_TAGS_MUTABLE)
        self.outputs[f"{lid}Uri"] = {
            "Description": description,
            "Value": {"Fn::GetAtt": [lid, "RepositoryUri"]},
        }

    def base_repository(self, base: str) -> str:
        """The ECR repository of a Conveyor base image (`publishes.base`): one per stack, tags
        immutable (each tag is a recipe's hash), filled by `conveyor images push BASE --to`."""
        lid = logical_id(base) + "BaseRepository"
        if lid in self.resources:
            return lid
        self.ecr_repository(
            lid,
            f"{self.p.name.lower()}-base-{base}",
            f"ECR repository of the '{base}' base image (fill it: conveyor images push {base} --to URI)",
            True,
            10,
        )
        self.resources[lid]["Metadata"]["Conveyor"] = {"baseImage": base}
        self.warnings.append(
            f"builds run FROM Conveyor's '{base}' image: after `aws deploy`, push it once with "
            f"`conveyor images push {base} --to <stack output {lid}Uri>`"
        )
        return lid

    def check_refs(self, a: Action) -> None:
        """Warn about `#{NS.Var}` that an AWS build action only has if its buildspec exports it."""
        for text in _strings(a.config):
            for mt in REF.finditer(text):
                owner = self.ns_owner.get(mt.group(1))
                if owner is not None and owner.type == "build" and not _inline(owner):
                    self.warnings.append(
                        f"action '{a.name}' reads #{{{mt.group(1)}.{mt.group(2)}}}: on "
                        "CodeBuild, action "
                        f"'{owner.name}' has it only if its buildspec lists `{mt.group(2)}` under "
                        "env.exported-variables"
                    )

    # ------------------------------------------------------------------ shared resources
    def artifact_bucket(self) -> None:
        self.resources["ArtifactBucket"] = {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {
                    "Rules": [
                        {
                            "Id": "expire-old-artifact-versions",
                            "Status": "Enabled",
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                        }
                    ]
                },
            },
        }
        skip_check(self.resources["ArtifactBucket"], "CKV_AWS_18", BUCKET_LOGS)
        self.resources["ArtifactBucketPolicy"] = {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "ArtifactBucket"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [
                                {"Fn::GetAtt": ["ArtifactBucket", "Arn"]},
                                {"Fn::Sub": "${ArtifactBucket.Arn}/*"},
                            ],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        }
        self.outputs["ArtifactBucketName"] = {
            "Description": "artifact bucket",
            "Value": {"Ref": "ArtifactBucket"},
        }
        self.pipeline_statements += [
            {
                "Sid": "ArtifactObjects",
                "Effect": "Allow",
                "Action": ARTIFACT_OBJECTS,
                "Resource": {"Fn::Sub": "${ArtifactBucket.Arn}/*"},
            },
            {
                "Sid": "ArtifactBucket",
                "Effect": "Allow",
                "Action": ["s3:GetBucketVersioning", "s3:GetBucketLocation", "s3:ListBucket"],
                "Resource": {"Fn::GetAtt": ["ArtifactBucket", "Arn"]},
            },
        ]

    def project(
        self,
        s: Stage,
        a: Action,
        *,
        buildspec: str,
        env: dict[str, Any],
        statements: list[dict[str, Any]],
        privileged: bool = False,
        description: str,
        cache: bool = False,
    ) -> str:
        lid = logical_id(a.name)
        name = project_name(self.p.name, a.name)
        if not PROJECT_NAME.match(name):
            self.fail(
                (*a.path, "name"),
                f"action '{a.name}': CodeBuild project name '{name}' does not match "
                "[A-Za-z0-9][A-Za-z0-9-_]{1,254}: rename the action",
            )
        log_group = f"/aws/codebuild/{name}"
        self.resources[f"{lid}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {"LogGroupName": log_group, "RetentionInDays": 30},
        }
        skip_check(self.resources[f"{lid}LogGroup"], "CKV_AWS_158", LOG_GROUP_KMS)
        self.project_role(s, a, name, log_group, statements)
        environment: dict[str, Any] = {
            "ComputeType": "BUILD_GENERAL1_SMALL",
            "Image": self.param(
                "CodeBuildImage",
                "the CodeBuild image of every project (the Selenium project's CHROME_BINARY and "
                "CHROMEDRIVER are this image's paths; another image: see the README)",
                CODEBUILD_IMAGE,
                MinLength=1,
            ),
            "Type": "LINUX_CONTAINER",
            "EnvironmentVariables": _env_vars(env),
        }
        if privileged:
            environment["PrivilegedMode"] = True
        props: dict[str, Any] = {
            "Name": name,
            "Description": description[:255],
            "ServiceRole": {"Fn::GetAtt": [f"{lid}Role", "Arn"]},
            "Artifacts": {"Type": "CODEPIPELINE"},
            "Source": {"Type": "CODEPIPELINE", "BuildSpec": buildspec},
            "Environment": environment,
            "LogsConfig": {
                "CloudWatchLogs": {"Status": "ENABLED", "GroupName": {"Ref": f"{lid}LogGroup"}}
            },
        }
        self.report_group_resources(a, name)
        if cache:
            # the buildspec's `cache:` paths, kept in the artifact bucket between builds
            props["Cache"] = {
                "Type": "S3",
                "Location": {"Fn::Sub": f"${{ArtifactBucket}}/codebuild-cache/{name}"},
            }
        if a.timeout_seconds:
            # the action's own time plus a margin for provisioning (the build's clock starts
            # before the image is ready), so that a deploy's `rollout undo` always runs
            props["TimeoutInMinutes"] = min(
                2160, max(5, -(-a.timeout_seconds // 60)) + PROVISIONING_MARGIN_MINUTES
            )
        self.resources[f"{lid}Project"] = {"Type": "AWS::CodeBuild::Project", "Properties": props}
        self.project_arns.append({"Fn::GetAtt": [f"{lid}Project", "Arn"]})
        return f"{lid}Project"

    def project_role(
        self,
        s: Stage,
        a: Action,
        name: str,
        log_group: str,
        statements: list[dict[str, Any]],
    ) -> None:
        """A CodeBuild project's role: its logs, artifacts and reports, plus `statements`."""
        lid = logical_id(a.name)
        base = [
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": arn("logs", f"log-group:{log_group}:*"),
            },
            {
                "Sid": "Artifacts",
                "Effect": "Allow",
                "Action": ARTIFACT_OBJECTS,
                "Resource": {"Fn::Sub": "${ArtifactBucket.Arn}/*"},
            },
            {
                "Sid": "Reports",
                "Effect": "Allow",
                "Action": [
                    "codebuild:CreateReportGroup",
                    "codebuild:CreateReport",
                    "codebuild:UpdateReport",
                    "codebuild:BatchPutTestCases",
                    "codebuild:BatchPutCodeCoverages",
                ],
                "Resource": arn("codebuild", f"report-group/{name}-*"),
            },
        ]
        self.resources[f"{lid}Role"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"CodeBuild project {name} (action {s.name}/{a.name})"[:1000],
                "AssumeRolePolicyDocument": _assume("codebuild.amazonaws.com"),
                "Policies": [_policy("least-privilege", base + statements)],
            },
        }
        if any(st.get("Resource") == "*" for st in statements):
            self.resources[f"{lid}Role"]["Metadata"] = {
                "Conveyor": {
                    "justification": (
                        "ecr:GetAuthorizationToken has no resource-level permissions: IAM only "
                        "accepts Resource '*' "
                        "for it; every other grant is scoped to named resources"
                    )
                }
            }

    def report_group_resources(self, a: Action, name: str) -> None:
        """The report groups the action's buildspec declares, managed by the stack."""
        for report in self.report_groups.get(a.name, []):
            self.resources[logical_id(a.name, report, "ReportGroup")] = {
                "Type": "AWS::CodeBuild::ReportGroup",
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {
                    "Name": f"{name}-{report}"[:128],
                    "Type": "TEST",
                    "DeleteReports": True,
                    "ExportConfig": {"ExportConfigType": "NO_EXPORT"},
                },
            }

    # ------------------------------------------------------------------ actions
    def action(self, req: SynthRequest) -> dict[str, Any] | None:
        """The action's declaration, from its type's `to_cloudformation` (None: not in the
        pipeline, or it became a stage condition)."""
        a = req.action
        try:
            mapping = self.registry.mapping(a.type, SYNTH_METHOD)
        except ConfigError as e:
            self.fail((*a.path, "type"), f"action '{a.name}': {e}")
            return None
        if getattr(mapping, "synth_checks_refs", True):
            self.check_refs(a)
        decl: dict[str, Any] | None = mapping.to_cloudformation(req)
        return decl

    def finish(self, req: SynthRequest, configuration: dict[str, Any]) -> dict[str, Any]:
        """An action's declaration: its configuration (and what import kept), artifacts."""
        a, decl = req.action, req.decl
        for key, value in (self.extra(req.stage, a).get("configuration") or {}).items():
            configuration.setdefault(key, value)
        if configuration:
            decl["Configuration"] = configuration
        if req.inputs:
            decl["InputArtifacts"] = [{"Name": x} for x in req.inputs]
        if a.outputs:
            decl["OutputArtifacts"] = [{"Name": x} for x in a.outputs]
        if a.namespace:
            decl["Namespace"] = a.namespace
        if a.region:
            decl["Region"] = a.region
        return decl

    def extra(self, s: Stage, a: Action) -> dict[str, Any]:
        """The CodePipeline keys an import kept for this action (settings.codepipeline)."""
        kept: dict[str, Any] = ((self.p.settings.get(SETTINGS_KEY) or {}).get("actions") or {}).get(
            f"{s.name}/{a.name}"
        ) or {}
        return kept

    def reached_environment(self, a: Action) -> Environment | None:
        """The EKS environment whose deploy URL `#{NS.URL}` this action reads, if any."""
        for text in _strings(a.config):
            for mt in REF.finditer(text):
                owner = self.ns_owner.get(mt.group(1))
                if owner is None or owner.type != "deploy" or mt.group(2) != "URL":
                    continue
                e = self.p.environments.get(owner.environment or "")
                if e is not None and self.target_envs.get(e.name, e.driver) == "eks":
                    return e
        return None

    def eks_describe(self, e: Environment) -> dict[str, Any]:
        return {
            "Sid": "EksDescribe",
            "Effect": "Allow",
            "Action": "eks:DescribeCluster",
            "Resource": arn("eks", f"cluster/${{{logical_id(e.name)}EksClusterName}}"),
        }

    def kubectl_role(self, proj: str) -> None:
        """The optional EksKubectlRoleArn: passed to the project, and assumable by its role."""
        self.param(
            "EksKubectlRoleArn",
            "optional role for kubectl (`update-kubeconfig --role-arn`); empty: the "
            "projects' own roles, which the EKS access entries authorize",
            "",
        )
        self.conditions["HasKubectlRole"] = {
            "Fn::Not": [{"Fn::Equals": [{"Ref": "EksKubectlRoleArn"}, ""]}]
        }
        variables = self.resources[proj]["Properties"]["Environment"]["EnvironmentVariables"]
        variables.append(
            {
                "Fn::If": [
                    "HasKubectlRole",
                    {
                        "Name": "EKS_KUBECTL_ROLE_ARN",
                        "Type": "PLAINTEXT",
                        "Value": {"Ref": "EksKubectlRoleArn"},
                    },
                    {"Ref": "AWS::NoValue"},
                ]
            }
        )
        role = proj.removesuffix("Project") + "Role"
        statements = self.resources[role]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"
        ]
        statements.append(
            {
                "Fn::If": [
                    "HasKubectlRole",
                    {
                        "Sid": "AssumeKubectlRole",
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Resource": {"Ref": "EksKubectlRoleArn"},
                    },
                    {"Ref": "AWS::NoValue"},
                ]
            }
        )

    def port_forward_access(self, a: Action, e: Environment) -> None:
        """Read-only access to the namespace plus port-forward (the Kubernetes group whose
        Role `conveyor aws prepare-cluster` creates there)."""
        cluster, ns = self.cluster(e)
        role = f"{logical_id(a.name)}Role"
        self.resources[f"{logical_id(a.name)}AccessEntry"] = access_entry(
            (
                f"lets the CodeBuild project of '{a.name}' reach the app of environment "
                f"'{e.name}' with kubectl port-forward: AmazonEKSViewPolicy in its "
                f"namespace only, plus the Kubernetes group {PORT_FORWARD_GROUP}, bound "
                "by `conveyor aws prepare-cluster` to a Role allowing pods/portforward "
                "in that namespace"
            ),
            cluster,
            {"Fn::GetAtt": [role, "Arn"]},
            ns,
            "AmazonEKSViewPolicy",
            [PORT_FORWARD_GROUP],
        )

    # ------------------------------------------------------------------ the whole
    def run(self) -> dict[str, Any]:
        p = self.p
        self.check_targets()
        self.artifact_bucket()
        stages = self.stages()
        props: dict[str, Any] = {
            "Name": p.name,
            "PipelineType": "V2",
            "ExecutionMode": p.execution_mode.value,
            "RoleArn": {"Fn::GetAtt": ["PipelineRole", "Arn"]},
            "RestartExecutionOnUpdate": False,
            "Stages": stages,
        }
        self.artifact_stores(props)
        if p.variables:
            props["Variables"] = declared_variables(p, capital=True)
        triggers = self.triggers()
        if triggers:
            props["Triggers"] = triggers
        self.resources["Pipeline"] = {"Type": "AWS::CodePipeline::Pipeline", "Properties": props}
        self.resources["PipelineRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"CodePipeline {p.name}",
                "AssumeRolePolicyDocument": _assume("codepipeline.amazonaws.com"),
                "Policies": [_policy("least-privilege", self.pipeline_statements)],
            },
        }
        self.outputs["PipelineName"] = {"Description": "the pipeline", "Value": {"Ref": "Pipeline"}}
        self.outputs["PipelineConsoleUrl"] = {
            "Description": "the pipeline in the console",
            "Value": {
                "Fn::Sub": (
                    "https://${AWS::Region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/${Pipeline}/view"
                    "?region=${AWS::Region}"
                )
            },
        }
        if self.findings:
            raise Unmappable(self.findings)
        return self.template()

    def check_targets(self) -> None:
        """The pipeline's name and the `--target-env` overrides."""
        p = self.p
        if not PIPELINE_NAME.match(p.name):
            self.fail(
                (*p.path, "name"),
                f"pipeline name '{p.name}' breaks CodePipeline's limit: 1-100 characters "
                "of A-Za-z0-9.@-_",
            )
        for env_name, target in self.target_envs.items():
            if env_name not in p.environments:
                self.fail(
                    (),
                    f"--target-env {env_name}={target}: no environment '{env_name}' (known: "
                    f"{', '.join(sorted(p.environments)) or 'none'})",
                )
            if target != "eks":
                self.fail((), f"--target-env {env_name}={target}: the only AWS target is 'eks'")

    def stages(self) -> list[dict[str, Any]]:
        """The pipeline's stages: each action from its type, onFailure and onSuccess."""
        p = self.p
        approvals: list[str] = []
        last_project: list[str] = []
        stages: list[dict[str, Any]] = []
        for s in p.stages:
            actions = []
            rules: list[dict[str, Any]] = []
            for a in s.actions:
                decl = self.action(
                    SynthRequest(
                        self,
                        s,
                        a,
                        list(a.inputs),
                        approvals,
                        last_project,
                        rules,
                        {"Name": a.name, "RunOrder": a.run_order},
                    )
                )
                if decl is not None:
                    actions.append(decl)
            sd: dict[str, Any] = {"Name": s.name, "Actions": actions}
            if s.on_failure and s.on_failure.result == "RETRY":
                sd["OnFailure"] = {
                    "Result": "RETRY",
                    "RetryConfiguration": {"RetryMode": s.on_failure.retry_mode},
                }
            elif (s.on_failure and s.on_failure.result == "ROLLBACK") or rules:
                sd["OnFailure"] = {"Result": "ROLLBACK"}  # a failed monitor rolls back
            if rules:
                sd["OnSuccess"] = {
                    "Fn::If": [
                        "UseMonitorAlarm",
                        {"Conditions": [{"Result": "ROLLBACK", "Rules": rules}]},
                        {"Ref": "AWS::NoValue"},
                    ]
                }
            stages.append(sd)
        if approvals:
            self.approval_topic()
        if self.project_arns:
            self.pipeline_statements.append(
                {
                    "Sid": "CodeBuild",
                    "Effect": "Allow",
                    "Action": [
                        "codebuild:BatchGetBuilds",
                        "codebuild:StartBuild",
                        "codebuild:StopBuild",
                    ],
                    "Resource": self.project_arns,
                }
            )
        return stages

    def artifact_stores(self, props: dict[str, Any]) -> None:
        """The artifact store, one per region when actions run in other regions."""
        p = self.p
        regions = sorted({a.region for _, a in p.all_actions() if a.region})
        if regions:
            stores = [
                {
                    "Region": {"Ref": "AWS::Region"},
                    "ArtifactStore": {"Type": "S3", "Location": {"Ref": "ArtifactBucket"}},
                }
            ]
            for r in regions:
                pname = f"ArtifactBucket{logical_id(r)}"
                self.param(
                    pname,
                    f"an existing S3 bucket in {r} for the artifacts of actions that run there",
                    MinLength=3,
                    MaxLength=63,
                )
                stores.append(
                    {"Region": r, "ArtifactStore": {"Type": "S3", "Location": {"Ref": pname}}}
                )
                self.pipeline_statements.append(
                    {
                        "Sid": f"ArtifactObjects{logical_id(r)}",
                        "Effect": "Allow",
                        "Action": ARTIFACT_OBJECTS,
                        "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{pname}}}/*"},
                    }
                )
            props["ArtifactStores"] = stores
        else:
            props["ArtifactStore"] = {"Type": "S3", "Location": {"Ref": "ArtifactBucket"}}

    def template(self) -> dict[str, Any]:
        p = self.p
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": f"Conveyor pipeline '{p.name}' on AWS: CodePipeline V2, CodeBuild, "
            "ECR, EKS access, "
            "S3 artifacts, SNS approvals (generated by `conveyor aws synth`; do not edit)",
            "Metadata": {
                "Conveyor": {
                    "pipeline": p.name,
                    "generator": "conveyor aws synth",
                    "codebuildImage": f"{CODEBUILD_IMAGE} by default (parameter CodeBuildImage): "
                    "Ubuntu 22.04 with Docker, Node.js, Python and kubectl, but no browser; the "
                    "Selenium project sets CHROME_BINARY, CHROMEDRIVER and INSTALL_BROWSER, and "
                    "the suite's buildspec installs Google Chrome and chromedriver there",
                    "notes": sorted(set(self.warnings)),
                }
            },
            "Parameters": dict(sorted(self.params.items())),
            **({"Conditions": dict(sorted(self.conditions.items()))} if self.conditions else {}),
            "Resources": dict(sorted(self.resources.items())),
            "Outputs": dict(sorted(self.outputs.items())),
        }

    def approval_topic(self) -> None:
        self.param(
            "ApprovalNotificationEndpoint",
            "who is asked to approve: an email address or an https URL (empty: no subscription)",
            "",
        )
        self.param(
            "ApprovalNotificationProtocol",
            "protocol of ApprovalNotificationEndpoint",
            "email",
            AllowedValues=["email", "https"],
        )
        self.conditions["HasApprovalSubscriber"] = {
            "Fn::Not": [{"Fn::Equals": [{"Ref": "ApprovalNotificationEndpoint"}, ""]}]
        }
        self.resources["ApprovalTopic"] = {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "DisplayName": f"{self.p.name} approvals"[:100],
                "KmsMasterKeyId": {
                    "Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:"
                    "alias/aws/sns"
                },
            },
        }
        self.resources["ApprovalSubscription"] = {
            "Type": "AWS::SNS::Subscription",
            "Condition": "HasApprovalSubscriber",
            "Properties": {
                "TopicArn": {"Ref": "ApprovalTopic"},
                "Protocol": {"Ref": "ApprovalNotificationProtocol"},
                "Endpoint": {"Ref": "ApprovalNotificationEndpoint"},
            },
        }
        self.outputs["ApprovalTopicArn"] = {
            "Description": "approval notifications",
            "Value": {"Ref": "ApprovalTopic"},
        }
        self.pipeline_statements.append(
            {
                "Sid": "ApprovalNotify",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": {"Ref": "ApprovalTopic"},
            }
        )

    def triggers(self) -> list[dict[str, Any]]:
        out = []
        for t in self.p.triggers:
            try:
                _, a = self.p.find_action(t.source_action)
            except KeyError:
                self.fail(t.path, f"trigger names '{t.source_action}', which is not an action")
                continue
            if a.type != "source.git" or is_codecommit_name(str(a.config.get("repository", ""))):
                continue  # CodeCommit: the EventBridge rule above
            push: dict[str, Any] = {}
            for key, f in (("Branches", t.branches), ("Tags", t.tags), ("FilePaths", t.file_paths)):
                if f.includes or f.excludes:
                    push[key] = {
                        k: list(v)
                        for k, v in (("Includes", f.includes), ("Excludes", f.excludes))
                        if v
                    }
            git: dict[str, Any] = {"SourceActionName": t.source_action}
            if push:
                git["Push"] = [push]
            out.append({"ProviderType": "CodeStarSourceConnection", "GitConfiguration": git})
        return out


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, Mapping):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list | tuple):
        return [s for x in v for s in _strings(x)]
    return []


def _inline(a: Action) -> bool:
    spec = a.config.get("buildspec")
    return isinstance(spec, str) and "\n" in spec.strip()


def synthesize(
    p: Pipeline,
    target_envs: Mapping[str, str] | None = None,
    report_groups: Mapping[str, Sequence[str]] | None = None,
    eks_deploy: str = "codebuild",
    registry: ActionRegistry | None = None,
) -> Synthesis:
    """The template of a pipeline; raises Unmappable listing every part AWS cannot run.

    `report_groups` names, per build action, the report groups its buildspec declares (read by
    the caller from the source's buildspec): each becomes an AWS::CodeBuild::ReportGroup named
    as CodeBuild names it (`<project>-<report>`), so that the stack manages it.
    """
    if eks_deploy not in ("codebuild", "native"):
        raise ConfigError(f"--eks-deploy {eks_deploy}: expected codebuild or native")
    s = Synthesizer(p, target_envs or {}, report_groups or {}, registry)
    s.eks_deploy = eks_deploy
    template = s.run()
    return Synthesis(template, sorted(set(s.warnings)))


class _RefScope(dict[str, Mapping[str, str]]):
    """A scope whose values are the references themselves: CodePipeline resolves them."""

    def __missing__(self, ns: str) -> Mapping[str, str]:
        return _RefVars(ns)


class _RefVars(dict[str, str]):
    def __init__(self, ns: str) -> None:
        super().__init__()
        self.ns = ns

    def __missing__(self, var: str) -> str:
        return f"#{{{self.ns}.{var}}}"
