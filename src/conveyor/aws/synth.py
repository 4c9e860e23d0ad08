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

from conveyor.aws import buildspecs, images
from conveyor.errors import ConfigError
from conveyor.model.pipeline import Action, Environment, Path, Pipeline, Stage
from conveyor.model.variables import REF, command_as_data
from conveyor.spec.codepipeline import (
    SETTINGS_KEY,
    _codebuild_input,
    _git_url,
    is_codecommit_name,
    monitor_wait_minutes,
    project_name,
)
from conveyor.spec.pipeline_file import parse_duration

CODEBUILD_IMAGE = images.DEFAULT.name  # Ubuntu 22.04 with Docker, Node, Python, kubectl
PIPELINE_NAME = re.compile(r"^[A-Za-z0-9.@\-_]{1,100}$")
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{1,254}$")
CODEBUILD_TYPES = ("build", "deploy", "image.promote")
PROVISIONING_MARGIN_MINUTES = 10
PORT_FORWARD_GROUP = "conveyor-port-forward"  # Kubernetes group: prepare-cluster binds its Role
MAPPED = (
    "source.git",
    "source.s3",
    "build",
    "deploy",
    "image.promote",
    "approval",
    "monitor",
    "shell",
)


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


class _Synth:
    def __init__(
        self,
        p: Pipeline,
        target_envs: Mapping[str, str],
        report_groups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.p = p
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
        default = re.sub(r"[^a-z0-9._/-]", "-", f"{base}-{e.name.lower()}")
        name = self.param(
            f"{lid}Name",
            f"ECR repository of environment '{e.name}'",
            default,
            MinLength=2,
            MaxLength=256,
            AllowedPattern="^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$",
        )
        promoted_to = any(
            a.type == "image.promote" and a.config.get("to") == e.name
            for _, a in self.p.all_actions()
        )
        immutable = promoted_to or e.name == "prod" or e.settings.get("immutableTags") is True
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
                        "countNumber": 200 if immutable else 50,
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
            "Description": f"ECR repository of environment '{e.name}'",
            "Value": {"Fn::GetAtt": [lid, "RepositoryUri"]},
        }
        self.repos[env_name] = lid
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
                "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
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
                "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
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
        if a.type == "build":
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

    # ------------------------------------------------------------------ actions
    def action(
        self, s: Stage, a: Action, approvals: list[str], last_project: list[str]
    ) -> dict[str, Any] | None:
        cfg = dict(a.config)
        extra = ((self.p.settings.get(SETTINGS_KEY) or {}).get("actions") or {}).get(
            f"{s.name}/{a.name}"
        ) or {}
        decl: dict[str, Any] = {"Name": a.name, "RunOrder": a.run_order}
        configuration: dict[str, Any] = {}
        inputs = list(a.inputs)
        self.check_refs(a)
        if a.type == "source.git":
            repo = str(cfg.get("repository", ""))
            branch = str(cfg.get("branch", "main"))
            lid = logical_id(a.name)
            if is_codecommit_name(repo):
                name = self.param(
                    f"{lid}RepositoryName",
                    f"CodeCommit repository of source action '{a.name}'",
                    repo,
                    MinLength=1,
                    MaxLength=100,
                    AllowedPattern="^[\\w.-]+$",
                )
                br = self.param(
                    f"{lid}BranchName", f"branch of source action '{a.name}'", branch, MinLength=1
                )
                decl["ActionTypeId"] = {
                    "Category": "Source",
                    "Owner": "AWS",
                    "Provider": "CodeCommit",
                    "Version": "1",
                }
                configuration = {
                    "RepositoryName": name,
                    "BranchName": br,
                    "PollForSourceChanges": "false",
                }
                repo_arn = arn("codecommit", f"${{{lid}RepositoryName}}")
                self.pipeline_statements.append(
                    {
                        "Sid": f"Source{lid}",
                        "Effect": "Allow",
                        "Action": [
                            "codecommit:GetBranch",
                            "codecommit:GetCommit",
                            "codecommit:UploadArchive",
                            "codecommit:GetUploadArchiveStatus",
                            "codecommit:CancelUploadArchive",
                        ],
                        "Resource": repo_arn,
                    }
                )
                self.codecommit_rule(a, lid, repo_arn)
            else:
                host = _git_url(repo)
                if host is None:
                    self.fail(
                        (*a.path, "config", "repository"),
                        f"action '{a.name}': repository '{repo}' is neither a CodeCommit "
                        "repository name nor "
                        "a GitHub/GitLab/Bitbucket URL, so AWS cannot fetch it (a local path or "
                        "a private "
                        "host): push it to CodeCommit or one of those hosts first",
                    )
                    return None
                conn = self.param(
                    "ConnectionArn",
                    "CodeStar/CodeConnections connection to the git host "
                    "(create it in the console: Developer Tools > Connections)",
                    AllowedPattern="^arn:aws[-a-z]*:(codestar-connections|codeconnections):.+$",
                )
                full = self.param(
                    f"{lid}FullRepositoryId", f"owner/name of the repository of '{a.name}'", host[1]
                )
                br = self.param(
                    f"{lid}BranchName", f"branch of source action '{a.name}'", branch, MinLength=1
                )
                decl["ActionTypeId"] = {
                    "Category": "Source",
                    "Owner": "AWS",
                    "Provider": "CodeStarSourceConnection",
                    "Version": "1",
                }
                configuration = {
                    "ConnectionArn": conn,
                    "FullRepositoryId": full,
                    "BranchName": br,
                    "DetectChanges": "false" if self.p.triggers else "true",
                }
                if not any(st.get("Sid") == "Connection" for st in self.pipeline_statements):
                    self.pipeline_statements.append(
                        {
                            "Sid": "Connection",
                            "Effect": "Allow",
                            "Action": [
                                "codestar-connections:UseConnection",
                                "codeconnections:UseConnection",
                            ],
                            "Resource": conn,
                        }
                    )
        elif a.type == "source.s3":
            decl["ActionTypeId"] = {
                "Category": "Source",
                "Owner": "AWS",
                "Provider": "S3",
                "Version": "1",
            }
            bucket, key = str(cfg.get("bucket", "")), str(cfg.get("key", ""))
            configuration = {
                "S3Bucket": bucket,
                "S3ObjectKey": key,
                "PollForSourceChanges": "false",
            }
            self.pipeline_statements.append(
                {
                    "Sid": f"Source{logical_id(a.name)}",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{key}"},
                }
            )
            self.warnings.append(
                f"action '{a.name}': S3 source polling is off; start the pipeline with an "
                "EventBridge rule on the bucket (CloudTrail data events) or by hand"
            )
        elif a.type == "build":
            proj = self.build(s, a, cfg)
            decl["ActionTypeId"] = {
                "Category": "Build",
                "Owner": "AWS",
                "Provider": "CodeBuild",
                "Version": "1",
            }
            configuration = {"ProjectName": {"Ref": proj}}
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
            last_project[:] = [proj]
        elif a.type == "deploy" and self.eks_deploy == "native" and self.native_ok(a):
            e = self.eks_env(a)
            if e is None:
                return None
            decl["ActionTypeId"] = {
                "Category": "Deploy",
                "Owner": "AWS",
                "Provider": "EKS",
                "Version": "1",
            }
            configuration = self.native_deploy(a, e, cfg)
        elif a.type == "deploy":
            e = self.eks_env(a)
            if e is None:
                return None
            proj = self.deploy(s, a, e, cfg)
            decl["ActionTypeId"] = {
                "Category": "Build",
                "Owner": "AWS",
                "Provider": "CodeBuild",
                "Version": "1",
            }
            configuration = {"ProjectName": {"Ref": proj}}
            if cfg.get("image"):
                configuration["EnvironmentVariables"] = json.dumps(
                    [{"name": "IMAGE", "value": str(cfg["image"]), "type": "PLAINTEXT"}],
                    separators=(",", ":"),
                )
            last_project[:] = [proj]
        elif a.type == "image.promote":
            promoted, extra_input = self.promote(s, a, cfg)
            if promoted is None:
                return None
            proj = promoted
            decl["ActionTypeId"] = {
                "Category": "Build",
                "Owner": "AWS",
                "Provider": "CodeBuild",
                "Version": "1",
            }
            action_env = [
                {"name": "IMAGE", "value": str(cfg.get("image", "")), "type": "PLAINTEXT"}
            ]
            if cfg.get("tag"):
                action_env.append({"name": "TAG", "value": str(cfg["tag"]), "type": "PLAINTEXT"})
            configuration = {
                "ProjectName": {"Ref": proj},
                "EnvironmentVariables": json.dumps(action_env, separators=(",", ":")),
            }
            if not inputs:
                if extra_input is None:
                    self.fail(
                        a.path,
                        f"action '{a.name}': a CodeBuild action needs an input artifact; give "
                        "`inputs:` (the build's output)",
                    )
                    return None
                inputs = [extra_input]
                self.warnings.append(
                    f"action '{a.name}': CodeBuild actions need an input artifact; reads "
                    f"'{extra_input}' (the output of the action that built the image)"
                )
        elif a.type == "approval":
            decl["ActionTypeId"] = {
                "Category": "Approval",
                "Owner": "AWS",
                "Provider": "Manual",
                "Version": "1",
            }
            summary = str(cfg.get("customData", cfg.get("summary", "")) or f"Approve {a.name}")
            if cfg.get("digest"):
                summary += f" Image: {cfg['digest']}"
            configuration = {
                "NotificationArn": {"Ref": "ApprovalTopic"},
                "CustomData": summary[:500],
            }
            link = cfg.get("externalEntityLink")
            if link:
                configuration["ExternalEntityLink"] = link
            elif last_project:
                configuration["ExternalEntityLink"] = {
                    "Fn::Sub": (
                        "https://${AWS::Region}.console.aws.amazon.com/codesuite/codebuild/projects/"
                        f"${{{last_project[0]}}}/history?region=${{AWS::Region}}"
                    )
                }
            if (cfg.get("notify") or {}).get("webhook"):
                self.warnings.append(
                    f"action '{a.name}': notify.webhook is local-only; on AWS subscribe the "
                    "webhook to the approval topic (parameter ApprovalNotificationEndpoint, "
                    "protocol https)"
                )
            approvals.append(a.name)
            if a.timeout_seconds or cfg.get("timeout"):
                from conveyor.spec.pipeline_file import parse_duration

                secs = parse_duration(cfg.get("timeout")) or a.timeout_seconds or 0
                if secs:
                    decl["TimeoutInMinutes"] = min(86400, max(5, -(-secs // 60)))
        elif a.type == "shell":
            decl["ActionTypeId"] = {
                "Category": "Compute",
                "Owner": "AWS",
                "Provider": "Commands",
                "Version": "1",
            }
            # a `#{ns.var}` is passed as data: an environment variable CodePipeline resolves,
            # referenced quoted in the command (as the local `shell` action does)
            commands: list[str] = []
            refs: dict[str, str] = {}
            for c in cfg.get("commands") or []:
                text, names = command_as_data(str(c), _RefScope())
                commands.append(text)
                refs.update(names)
            decl["Commands"] = commands
            if refs:
                decl["EnvironmentVariables"] = [
                    {"Name": k, "Value": v, "Type": "PLAINTEXT"} for k, v in sorted(refs.items())
                ]
            if not inputs:
                self.fail(
                    a.path,
                    f"action '{a.name}': a CodePipeline Commands action needs an input artifact",
                )
                return None
            self.pipeline_statements.append(
                {
                    "Sid": f"Commands{logical_id(a.name)}",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": arn("logs", f"log-group:/aws/codepipeline/{self.p.name}:*"),
                }
            )
        elif a.type.startswith("aws."):
            tid = dict(cfg.get("actionTypeId") or {})
            if not tid.get("provider"):
                self.fail(
                    (*a.path, "config"),
                    f"action '{a.name}': an {a.type} action needs config.actionTypeId",
                )
                return None
            decl["ActionTypeId"] = {k[0].upper() + k[1:]: str(v) for k, v in sorted(tid.items())}
            configuration = dict(cfg.get("configuration") or {})
            self.warnings.append(
                f"action '{a.name}': {tid.get('owner', 'AWS')}/{tid['provider']} is passed through "
                "as is; grant the pipeline role what that provider needs (not generated)"
            )
        else:
            self.fail(
                (*a.path, "type"),
                f"action '{a.name}': action type '{a.type}' has no AWS mapping "
                f"(mapped: {', '.join(MAPPED)}, and aws.* pass-through)",
            )
            return None
        if "actionTypeId" in extra and a.type == "build":
            tid = extra["actionTypeId"]
            if tid.get("category") == "Test":
                decl["ActionTypeId"]["Category"] = "Test"
        for key, value in (extra.get("configuration") or {}).items():
            configuration.setdefault(key, value)
        if configuration:
            decl["Configuration"] = configuration
        if inputs:
            decl["InputArtifacts"] = [{"Name": x} for x in inputs]
        if a.outputs:
            decl["OutputArtifacts"] = [{"Name": x} for x in a.outputs]
        if a.namespace:
            decl["Namespace"] = a.namespace
        if a.region:
            decl["Region"] = a.region
        return decl

    def build(self, s: Stage, a: Action, cfg: dict[str, Any]) -> str:
        spec = str(cfg.get("buildspec") or "buildspec.yml")
        env: dict[str, Any] = {
            "AWS_ACCOUNT_ID": {"Ref": "AWS::AccountId"},
            "REGISTRY_HOST": {
                "Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"
            },
            "CONTAINER_RUNTIME": "docker",
        }
        statements: list[dict[str, Any]] = []
        privileged = False
        pub = cfg.get("publishes")
        if isinstance(pub, Mapping):
            env_name = str(
                pub.get("environment")
                or (
                    "test" if "test" in self.p.environments else next(iter(self.p.environments), "")
                )
            )
            repo = self.repository(env_name, (*a.path, "config", "publishes")) if env_name else None
            if repo is None:
                if not env_name:
                    self.fail(
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
                            "ecr:BatchCheckLayerAvailability",
                            "ecr:BatchGetImage",
                            "ecr:CompleteLayerUpload",
                            "ecr:DescribeImages",
                            "ecr:GetDownloadUrlForLayer",
                            "ecr:InitiateLayerUpload",
                            "ecr:PutImage",
                            "ecr:UploadLayerPart",
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
        reached = self.reached_environment(a)
        if reached is not None:
            # a test suite reading a deploy's URL: a browser at the image's paths (installed by
            # the suite's buildspec, the image has none), and port-forward to a
            # cluster-internal URL
            env["CHROME_BINARY"] = images.DEFAULT.chrome
            env["CHROMEDRIVER"] = images.DEFAULT.chromedriver
            env["INSTALL_BROWSER"] = "google-chrome"
            cluster, _ = self.cluster(reached)
            env["EKS_CLUSTER"] = cluster
            statements.append(self.eks_describe(reached))
        if cfg.get("image"):
            self.warnings.append(
                f"action '{a.name}': build image '{cfg['image']}' is local; on AWS the project "
                f"runs on {CODEBUILD_IMAGE}"
            )
        if cfg.get("codebuildProject"):
            self.warnings.append(
                f"action '{a.name}': imported from CodeBuild project '{cfg['codebuildProject']}'; "
                f"the template creates its own project '{project_name(self.p.name, a.name)}' "
                f"running {spec if not _inline(a) else 'the inline buildspec'}"
            )
        proj = self.project(
            s,
            a,
            buildspec=spec,
            env=env,
            statements=statements,
            privileged=privileged,
            description=f"{self.p.name}: {s.name}/{a.name} (buildspec from the source)",
        )
        if reached is not None:
            self.kubectl_role(proj)
            self.port_forward_access(a, reached)
        return proj

    def native_ok(self, a: Action) -> bool:
        """CodePipeline's EKS action exports no URL nor ImageURI: only a deploy whose variables
        nothing reads (no `#{NS.*}`, no monitor of its environment) can use it."""
        readers = [
            x.name
            for _, x in self.p.all_actions()
            if x is not a
            and (
                (a.namespace and any(f"#{{{a.namespace}." in t for t in _strings(x.config)))
                or (x.type == "monitor" and x.environment == a.environment)
            )
        ]
        if readers:
            self.warnings.append(
                f"action '{a.name}' stays a CodeBuild deploy under --eks-deploy native: "
                f"{', '.join(readers)} read(s) its URL or image, which the EKS action does not "
                "export"
            )
        return not readers

    def native_deploy(self, a: Action, e: Environment, cfg: dict[str, Any]) -> dict[str, Any]:
        """Deploy/AWS/EKS/1: the pipeline role applies the manifests in the input artifact."""
        cluster, ns = self.cluster(e)
        lid = logical_id(a.name)
        self.pipeline_statements.append(
            {
                "Sid": f"EksDescribe{lid}",
                "Effect": "Allow",
                "Action": "eks:DescribeCluster",
                "Resource": arn("eks", f"cluster/${{{logical_id(e.name)}EksClusterName}}"),
            }
        )
        self.resources[f"{lid}AccessEntry"] = {
            "Type": "AWS::EKS::AccessEntry",
            "Metadata": {
                "Conveyor": {
                    "why": (
                        f"lets the pipeline role (CodePipeline's EKS action '{a.name}') apply "
                        f"manifests in the namespace of environment '{e.name}' only"
                    )
                }
            },
            "Properties": {
                "ClusterName": cluster,
                "PrincipalArn": {"Fn::GetAtt": ["PipelineRole", "Arn"]},
                "Type": "STANDARD",
                "AccessPolicies": [
                    {
                        "PolicyArn": {
                            "Fn::Sub": "arn:${AWS::Partition}:eks::aws:cluster-access-policy/"
                            "AmazonEKSEditPolicy"
                        },
                        "AccessScope": {"Type": "namespace", "Namespaces": [ns]},
                    }
                ],
            },
        }
        self.warnings.append(
            f"action '{a.name}' uses CodePipeline's EKS action: it applies the manifests as they "
            "are in its input artifact, so they must already name the image by digest; it "
            "neither checks the namespace, nor undoes a failed rollout, nor exports a URL"
        )
        return {
            "ClusterName": cluster,
            "Namespace": ns,
            "ManifestFiles": str(cfg.get("manifests", "k8s/")),
        }

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
        self.resources[f"{logical_id(a.name)}AccessEntry"] = {
            "Type": "AWS::EKS::AccessEntry",
            "Metadata": {
                "Conveyor": {
                    "why": (
                        f"lets the CodeBuild project of '{a.name}' reach the app of environment "
                        f"'{e.name}' with kubectl port-forward: AmazonEKSViewPolicy in its "
                        f"namespace only, plus the Kubernetes group {PORT_FORWARD_GROUP}, bound "
                        "by `conveyor aws prepare-cluster` to a Role allowing pods/portforward "
                        "in that namespace"
                    )
                }
            },
            "Properties": {
                "ClusterName": cluster,
                "PrincipalArn": {"Fn::GetAtt": [role, "Arn"]},
                "Type": "STANDARD",
                "KubernetesGroups": [PORT_FORWARD_GROUP],
                "AccessPolicies": [
                    {
                        "PolicyArn": {
                            "Fn::Sub": "arn:${AWS::Partition}:eks::aws:cluster-access-policy/"
                            "AmazonEKSViewPolicy"
                        },
                        "AccessScope": {"Type": "namespace", "Namespaces": [ns]},
                    }
                ],
            },
        }

    def deploy(self, s: Stage, a: Action, e: Environment, cfg: dict[str, Any]) -> str:
        cluster, ns = self.cluster(e)
        repo = self.repository(e.name, (*a.path, "environment"))
        image_name = (e.repository or self.p.name).split("/")[-1]
        env: dict[str, Any] = {
            "EKS_CLUSTER": cluster,
            "K8S_NAMESPACE": ns,
            "MANIFESTS": str(cfg.get("manifests", "k8s/")),
            "IMAGE_NAME": image_name,
            "ROLLOUT_TIMEOUT": str(parse_duration(cfg.get("timeout")) or a.timeout_seconds or 300),
        }
        if e.url:
            env["APP_URL"] = e.url
        statements: list[dict[str, Any]] = [self.eks_describe(e)]
        if repo:
            statements.append(
                {
                    "Sid": "EcrResolveDigest",
                    "Effect": "Allow",
                    "Action": "ecr:DescribeImages",
                    "Resource": {"Fn::GetAtt": [repo, "Arn"]},
                }
            )
        proj = self.project(
            s,
            a,
            buildspec=buildspecs.deploy_buildspec(),
            env=env,
            statements=statements,
            description=f"{self.p.name}: {s.name}/{a.name} (kubectl apply to {e.name})",
        )
        self.kubectl_role(proj)
        role = f"{logical_id(a.name)}Role"
        self.resources[f"{logical_id(a.name)}AccessEntry"] = {
            "Type": "AWS::EKS::AccessEntry",
            "Metadata": {
                "Conveyor": {
                    "why": (
                        f"lets the role of the CodeBuild project of '{a.name}' use kubectl in "
                        "namespace of "
                        f"environment '{e.name}' only (AmazonEKSEditPolicy scoped to the "
                        "namespace); needs a cluster "
                        "with authenticationMode API or API_AND_CONFIG_MAP"
                    )
                }
            },
            "Properties": {
                "ClusterName": cluster,
                "PrincipalArn": {"Fn::GetAtt": [role, "Arn"]},
                "Type": "STANDARD",
                "AccessPolicies": [
                    {
                        "PolicyArn": {
                            "Fn::Sub": "arn:${AWS::Partition}:eks::aws:cluster-access-policy/"
                            "AmazonEKSEditPolicy"
                        },
                        "AccessScope": {"Type": "namespace", "Namespaces": [ns]},
                    }
                ],
            },
        }
        return proj

    def promote(self, s: Stage, a: Action, cfg: dict[str, Any]) -> tuple[str | None, str | None]:
        target = cfg.get("to")
        if not target:
            self.fail(
                (*a.path, "config"),
                f"action '{a.name}': on AWS a promotion needs `to:` (an environment, "
                "whose ECR repository is the target); `targetRegistry` is local-only",
            )
            return None, None
        dst = self.repository(str(target), (*a.path, "config", "to"))
        src_action = self._image_source(cfg.get("image"))
        src_env = None
        if src_action is not None and isinstance(src_action.config.get("publishes"), Mapping):
            src_env = src_action.config["publishes"].get("environment") or (
                "test" if "test" in self.p.environments else None
            )
        src = self.repository(str(src_env), a.path) if src_env else None
        if dst is None:
            return None, None
        statements: list[dict[str, Any]] = [
            {
                "Sid": "EcrPushTarget",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:CompleteLayerUpload",
                    "ecr:DescribeImages",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:InitiateLayerUpload",
                    "ecr:PutImage",
                    "ecr:UploadLayerPart",
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
            self.warnings.append(
                f"action '{a.name}': the source repository of '{cfg.get('image')}' is not one "
                "this template creates; grant the promote role pull access to it"
            )
        env: dict[str, Any] = {
            "TARGET_REPOSITORY_URI": {"Fn::GetAtt": [dst, "RepositoryUri"]},
            "TARGET_REPOSITORY_NAME": {"Ref": dst},
            "REGISTRY_HOST": {
                "Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"
            },
        }
        proj = self.project(
            s,
            a,
            buildspec=buildspecs.promote_buildspec(),
            env=env,
            statements=statements,
            description=f"{self.p.name}: {s.name}/{a.name} (copy by digest to {target})",
        )
        extra_input = (
            src_action.outputs[0] if src_action is not None and src_action.outputs else None
        )
        return proj, extra_input

    def _image_source(self, image: Any) -> Action | None:
        """The action an `image: "#{NS.ImageURI}"` reads from (followed through promotions)."""
        if not isinstance(image, str):
            return None
        mt = REF.search(image)
        if not mt:
            return None
        owner = self.ns_owner.get(mt.group(1))
        if owner is not None and owner.type == "image.promote":
            return self._image_source(owner.config.get("image"))
        return owner

    def codecommit_rule(self, a: Action, lid: str, repo_arn: Any) -> None:
        """A push to a CodeCommit branch starts the pipeline via EventBridge (not a V2 trigger)."""
        triggers = [t for t in self.p.triggers if t.source_action == a.name]
        if self.p.triggers and not triggers:
            return
        branches: list[Any] = []
        file_filters = False
        for t in triggers:
            for inc in t.branches.includes:
                branches.append({"wildcard": inc} if any(ch in inc for ch in "*?") else inc)
            if t.branches.excludes and not t.branches.includes:
                branches.append({"anything-but": list(t.branches.excludes)})
            file_filters = file_filters or bool(t.file_paths.includes or t.file_paths.excludes)
        if not branches:
            branches = [{"Ref": f"{lid}BranchName"}]
        self.resources[f"{lid}PushRule"] = {
            "Type": "AWS::Events::Rule",
            "Metadata": {
                "Conveyor": {
                    "why": (
                        "CodePipeline V2 triggers only take CodeStar connection sources; a "
                        "CodeCommit source starts the "
                        "pipeline through this EventBridge rule (branch filters only: file-path "
                        "filters cannot apply "
                        "to CodeCommit events"
                        + (
                            ", so this source's filePaths filter is NOT enforced on AWS"
                            if file_filters
                            else ""
                        )
                        + ")"
                    )
                }
            },
            "Properties": {
                "Description": f"push to the {a.name} repository starts the pipeline",
                "State": "ENABLED",
                "EventPattern": {
                    "source": ["aws.codecommit"],
                    "detail-type": ["CodeCommit Repository State Change"],
                    "resources": [repo_arn],
                    "detail": {
                        "event": ["referenceCreated", "referenceUpdated"],
                        "referenceType": ["branch"],
                        "referenceName": branches,
                    },
                },
                "Targets": [
                    {
                        "Arn": arn("codepipeline", "${Pipeline}"),
                        "Id": "pipeline",
                        "RoleArn": {"Fn::GetAtt": ["PipelineEventsRole", "Arn"]},
                    }
                ],
            },
        }
        if file_filters:
            self.warnings.append(
                f"trigger on '{a.name}': file-path filters cannot apply to CodeCommit pushes on "
                "AWS (EventBridge sees branches only); every push to the branch starts the pipeline"
            )
        if "PipelineEventsRole" not in self.resources:
            self.resources["PipelineEventsRole"] = {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Description": f"EventBridge starts pipeline {self.p.name}",
                    "AssumeRolePolicyDocument": _assume("events.amazonaws.com"),
                    "Policies": [
                        _policy(
                            "start-pipeline",
                            [
                                {
                                    "Effect": "Allow",
                                    "Action": "codepipeline:StartPipelineExecution",
                                    "Resource": arn("codepipeline", "${Pipeline}"),
                                }
                            ],
                        )
                    ],
                },
            }

    def monitor(self, s: Stage, a: Action) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """A CodeBuild action running the local monitor's HTTP probes for the bake time (its
        failure fails the stage, whose OnFailure is ROLLBACK), and the optional CloudWatch
        alarm condition (parameter UseMonitorAlarm)."""
        env_name = a.environment or next(
            (x.environment for x in s.actions if x.type == "deploy" and x.environment), None
        )
        if env_name is None:
            self.fail(
                a.path,
                f"action '{a.name}': a monitor on AWS watches an environment: set `environment:` "
                "or "
                "put it in a stage with a deploy action",
            )
            return None, None
        e = self.env(env_name, a.path)
        if e is None:
            return None, None
        if self.target_envs.get(e.name, e.driver) != "eks":
            self.fail(
                (*e.path, "driver"),
                f"environment '{e.name}' (watched by '{a.name}') uses driver '{e.driver}', "
                f"which AWS cannot run: set `driver: eks` or pass `--target-env {e.name}=eks`",
            )
            return None, None
        deploy = next(
            (
                x
                for _, x in self.p.all_actions()
                if x.type == "deploy" and x.environment == e.name and x.namespace
            ),
            None,
        )
        cluster, ns = self.cluster(e)
        lid = logical_id(a.name)
        cfg = dict(a.config)
        bake = parse_duration(cfg.get("bake")) or 60
        probes = [
            {
                k: v
                for k, v in (
                    ("path", str(p.get("path", "/healthz"))),
                    ("minAvailability", p.get("minAvailability", 0.99)),
                    ("maxLatencyMs", p.get("maxLatencyMs")),
                    ("expectStatus", p.get("expectStatus")),
                )
                if v is not None
            }
            for p in (cfg.get("probes") or [{"path": "/healthz"}])
            if isinstance(p, Mapping)
        ]
        if "prometheus" in cfg:
            self.warnings.append(
                f"monitor '{a.name}': prometheus queries are local-only; on AWS the HTTP probes "
                "(and the optional CloudWatch alarm) decide the rollback"
            )
        inputs = _codebuild_input(self.p, s, a)  # the same artifact the export reads
        if deploy is None or not inputs:
            self.fail(
                a.path,
                f"action '{a.name}': on AWS a monitor probes the URL a deploy to "
                f"'{e.name}' exports: give that deploy a `namespace:`",
            )
            return None, None
        env: dict[str, Any] = {
            "EKS_CLUSTER": cluster,
            "BAKE_SECONDS": str(bake),
            "INTERVAL": str(cfg.get("interval", 5)),
            "PROBES": json.dumps(probes, separators=(",", ":")),
        }
        proj = self.project(
            s,
            a,
            buildspec=buildspecs.monitor_buildspec(),
            env=env,
            statements=[self.eks_describe(e)],
            description=f"{self.p.name}: {s.name}/{a.name} (HTTP probes of {e.name})",
        )
        if not a.timeout_seconds:
            self.resources[proj]["Properties"]["TimeoutInMinutes"] = min(
                2160, -(-bake // 60) + 5 + PROVISIONING_MARGIN_MINUTES
            )
        self.kubectl_role(proj)
        self.port_forward_access(a, e)
        decl: dict[str, Any] = {
            "Name": a.name,
            "RunOrder": a.run_order,
            "ActionTypeId": {
                "Category": "Test",
                "Owner": "AWS",
                "Provider": "CodeBuild",
                "Version": "1",
            },
            "Configuration": {
                "ProjectName": {"Ref": proj},
                "EnvironmentVariables": json.dumps(
                    [
                        {
                            "name": "URL",
                            "value": f"#{{{deploy.namespace}.URL}}",
                            "type": "PLAINTEXT",
                        }
                    ],
                    separators=(",", ":"),
                ),
            },
            "InputArtifacts": [{"Name": inputs[0]}],
        }
        if a.region:
            decl["Region"] = a.region
        # the optional alarm: Container Insights' running pods, missing data is not a breach
        self.param(
            "UseMonitorAlarm",
            "also roll back when the CloudWatch alarm of a monitor fires during its bake "
            "(needs Container Insights on the cluster)",
            "false",
            AllowedValues=["true", "false"],
        )
        self.conditions["UseMonitorAlarm"] = {"Fn::Equals": [{"Ref": "UseMonitorAlarm"}, "true"]}
        service = self.param(
            f"{logical_id(e.name)}ServiceName",
            f"Kubernetes Service of environment '{e.name}' (Container Insights dimension)",
            (e.repository or self.p.name).split("/")[-1],
        )
        alarm_name = f"${{AWS::StackName}}-{a.name}"[:255]
        self.resources[f"{lid}Alarm"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Condition": "UseMonitorAlarm",
            "Metadata": {
                "Conveyor": {
                    "why": (
                        f"optional (UseMonitorAlarm) for monitor '{a.name}': ALARM when the "
                        "Service runs no ready pod (Container Insights must be enabled on the "
                        "cluster); missing data is not a breach, so a first deploy without "
                        "metrics yet is not rolled back. The HTTP probes run in the CodeBuild "
                        f"action {a.name}."
                    )
                }
            },
            "Properties": {
                "AlarmName": {"Fn::Sub": alarm_name},
                "AlarmDescription": f"{self.p.name}: {s.name}/{a.name} watches environment "
                f"{e.name}",
                "Namespace": "ContainerInsights",
                "MetricName": "service_number_of_running_pods",
                "Dimensions": [
                    {"Name": "ClusterName", "Value": cluster},
                    {"Name": "Namespace", "Value": ns},
                    {"Name": "Service", "Value": service},
                ],
                "Statistic": "Minimum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": 1.0,
                "ComparisonOperator": "LessThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        }
        self.pipeline_statements.append(
            {
                "Sid": f"Alarm{lid}",
                "Effect": "Allow",
                "Action": ["cloudwatch:DescribeAlarmHistory", "cloudwatch:DescribeAlarms"],
                "Resource": arn("cloudwatch", f"alarm:{alarm_name}"),
            }
        )
        rule = {
            "Name": f"{lid}Alarm"[:100],
            "RuleTypeId": {
                "Category": "Rule",
                "Owner": "AWS",
                "Provider": "CloudWatchAlarm",
                "Version": "1",
            },
            "Configuration": {
                "AlarmName": {"Fn::Sub": alarm_name},
                "AlarmStates": "ALARM",
                "WaitTime": str(monitor_wait_minutes(a)),
            },
        }
        return decl, rule

    # ------------------------------------------------------------------ the whole
    def run(self) -> dict[str, Any]:
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
        self.artifact_bucket()
        approvals: list[str] = []
        last_project: list[str] = []
        stages = []
        for s in p.stages:
            actions = []
            rules = []
            for a in s.actions:
                if a.type == "monitor":
                    mdecl, rule = self.monitor(s, a)
                    if mdecl:
                        actions.append(mdecl)
                    if rule:
                        rules.append(rule)
                    continue
                decl = self.action(s, a, approvals, last_project)
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
        props: dict[str, Any] = {
            "Name": p.name,
            "PipelineType": "V2",
            "ExecutionMode": p.execution_mode.value,
            "RoleArn": {"Fn::GetAtt": ["PipelineRole", "Arn"]},
            "RestartExecutionOnUpdate": False,
            "Stages": stages,
        }
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
                        "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
                        "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{pname}}}/*"},
                    }
                )
            props["ArtifactStores"] = stores
        else:
            props["ArtifactStore"] = {"Type": "S3", "Location": {"Ref": "ArtifactBucket"}}
        if p.variables:
            props["Variables"] = [
                {
                    k: v
                    for k, v in (
                        ("Name", x.name),
                        ("DefaultValue", x.default),
                        ("Description", x.description),
                    )
                    if v not in (None, "")
                }
                for x in p.variables
            ]
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
) -> Synthesis:
    """The template of a pipeline; raises Unmappable listing every part AWS cannot run.

    `report_groups` names, per build action, the report groups its buildspec declares (read by
    the caller from the source's buildspec): each becomes an AWS::CodeBuild::ReportGroup named
    as CodeBuild names it (`<project>-<report>`), so that the stack manages it.
    """
    if eks_deploy not in ("codebuild", "native"):
        raise ConfigError(f"--eks-deploy {eks_deploy}: expected codebuild or native")
    s = _Synth(p, target_envs or {}, report_groups or {})
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
