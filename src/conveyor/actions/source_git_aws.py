"""`source.git` on AWS: a CodeCommit source (a bare repository name) started by an
EventBridge rule, or a CodeStar connection source (a GitHub/GitLab/Bitbucket URL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.actions import aws_mapping as am
from conveyor.aws.synth import Synthesizer, _assume, _policy, arn, logical_id
from conveyor.errors import ConfigError
from conveyor.model.pipeline import Action
from conveyor.spec.codepipeline import (
    GIT_HOSTS,
    PLACEHOLDER_CONNECTION,
    _git_url,
    is_codecommit_name,
)

CODECOMMIT = {"category": "Source", "owner": "AWS", "provider": "CodeCommit", "version": "1"}
CONNECTION = {
    "category": "Source",
    "owner": "AWS",
    "provider": "CodeStarSourceConnection",
    "version": "1",
}


class GitSourceAws(am.AwsMapping):
    codepipeline_providers: ClassVar[tuple[am.ProviderKey, ...]] = (
        ("Source", "AWS", "CodeCommit"),
        ("Source", "*", "CodeStarSourceConnection"),
        ("Source", "ThirdParty", "GitHub"),
    )

    @classmethod
    def type_id(cls, original: Mapping[str, Any]) -> dict[str, Any]:
        return dict(CODECOMMIT if original.get("provider") == "CodeCommit" else CONNECTION)

    # ------------------------------------------------------------------ export
    @classmethod
    def to_codepipeline(cls, req: am.ExportRequest) -> dict[str, Any]:
        cfg, p, leftover, where = req.config, req.pipeline, req.leftover, req.where
        repo = str(cfg.get("repository", ""))
        branch = str(cfg.get("branch", "main"))
        tid = req.extra.get("actionTypeId") or {}
        if is_codecommit_name(repo) and tid.get("provider") != "GitHub":
            configuration = {"RepositoryName": repo, "BranchName": branch}
            if p.triggers and "PollForSourceChanges" not in leftover:
                # triggers start the pipeline (on AWS: the EventBridge rule of the stack)
                configuration["PollForSourceChanges"] = "false"
                req.warnings.append(
                    f"{where}: PollForSourceChanges is false; pushes start the pipeline through "
                    "the EventBridge rule `conveyor aws synth` creates (create one if you deploy "
                    "this JSON alone)"
                )
            return req.finish(dict(CODECOMMIT), configuration)
        host = _git_url(repo)
        if host is None:
            raise ConfigError(
                f"{where}: repository '{repo}' is neither a CodeCommit repository name nor a "
                "GitHub/GitLab/Bitbucket URL, so AWS cannot fetch it"
            )
        configuration = {
            "ConnectionArn": leftover.pop("ConnectionArn", PLACEHOLDER_CONNECTION),
            "FullRepositoryId": host[1],
            "BranchName": branch,
        }
        if p.triggers and "DetectChanges" not in leftover:
            configuration["DetectChanges"] = "false"  # the V2 trigger starts it
        if configuration["ConnectionArn"] == PLACEHOLDER_CONNECTION:
            req.warnings.append(
                f"{where}: ConnectionArn is a placeholder; create a connection "
                "(`aws codeconnections create-connection --provider-type "
                f"{GIT_HOSTS[host[0]]} --connection-name NAME`) and put its ARN here"
            )
        if tid.get("provider") == "GitHub":
            req.extra.pop("actionTypeId", None)
            req.leftover.clear()
        return req.finish(dict(CONNECTION), configuration)

    # ------------------------------------------------------------------ import
    @classmethod
    def from_codepipeline(cls, req: am.ImportRequest) -> dict[str, Any]:
        provider, cfg, name, path = req.type_id["provider"], req.configuration, req.name, req.path
        if provider == "CodeCommit":
            config = {
                "repository": cfg.pop("RepositoryName", ""),
                "branch": cfg.pop("BranchName", "main"),
            }
            if not config["repository"]:
                req.problems.err(
                    (*path, "configuration"),
                    f"action '{name}': a CodeCommit source needs RepositoryName",
                )
            return config
        if provider == "CodeStarSourceConnection":
            repo = cfg.pop("FullRepositoryId", "")
            if not repo:
                req.problems.err(
                    (*path, "configuration"),
                    f"action '{name}': a CodeStarSourceConnection source needs FullRepositoryId",
                )
            host = cfg.pop("ConveyorGitHost", "github.com")
            config = {
                "repository": f"https://{host}/{repo}.git",
                "branch": cfg.pop("BranchName", "main"),
            }
            if "ConnectionArn" in cfg:
                req.problems.warn(
                    (*path, "configuration", "ConnectionArn"),
                    f"action '{name}': the connection does not "
                    "say which host it is for; assumed github.com (edit `repository` for "
                    "GitLab/Bitbucket)",
                )
            return config
        if cfg.pop("OAuthToken", None) is not None:
            req.problems.warn(
                (*path, "configuration", "OAuthToken"),
                f"action '{name}': OAuthToken dropped (a secret); "
                "GitHub version 1 actions are deprecated: export writes a "
                "CodeStarSourceConnection",
            )
        return {
            "repository": f"https://github.com/{cfg.pop('Owner', '')}/{cfg.pop('Repo', '')}.git",
            "branch": cfg.pop("Branch", "main"),
        }

    # ------------------------------------------------------------------ synthesis
    @classmethod
    def to_cloudformation(cls, req: am.SynthRequest) -> dict[str, Any] | None:
        cfg, a, sx = req.config, req.action, req.synth
        repo = str(cfg.get("repository", ""))
        branch = str(cfg.get("branch", "main"))
        lid = logical_id(a.name)
        if is_codecommit_name(repo):
            return _codecommit(req, repo, branch, lid)
        host = _git_url(repo)
        if host is None:
            sx.fail(
                (*a.path, "config", "repository"),
                f"action '{a.name}': repository '{repo}' is neither a CodeCommit "
                "repository name nor "
                "a GitHub/GitLab/Bitbucket URL, so AWS cannot fetch it (a local path or "
                "a private "
                "host): push it to CodeCommit or one of those hosts first",
            )
            return None
        conn = sx.param(
            "ConnectionArn",
            "CodeStar/CodeConnections connection to the git host "
            "(create it in the console: Developer Tools > Connections)",
            AllowedPattern="^arn:aws[-a-z]*:(codestar-connections|codeconnections):.+$",
        )
        full = sx.param(
            f"{lid}FullRepositoryId", f"owner/name of the repository of '{a.name}'", host[1]
        )
        br = sx.param(
            f"{lid}BranchName", f"branch of source action '{a.name}'", branch, MinLength=1
        )
        req.decl["ActionTypeId"] = am.template_type_id(CONNECTION)
        configuration = {
            "ConnectionArn": conn,
            "FullRepositoryId": full,
            "BranchName": br,
            "DetectChanges": "false" if sx.p.triggers else "true",
        }
        if not any(st.get("Sid") == "Connection" for st in sx.pipeline_statements):
            sx.pipeline_statements.append(
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
        return req.finish(configuration)


def _codecommit(req: am.SynthRequest, repo: str, branch: str, lid: str) -> dict[str, Any]:
    a, sx = req.action, req.synth
    name = sx.param(
        f"{lid}RepositoryName",
        f"CodeCommit repository of source action '{a.name}'",
        repo,
        MinLength=1,
        MaxLength=100,
        AllowedPattern="^[\\w.-]+$",
    )
    br = sx.param(f"{lid}BranchName", f"branch of source action '{a.name}'", branch, MinLength=1)
    req.decl["ActionTypeId"] = am.template_type_id(CODECOMMIT)
    configuration = {"RepositoryName": name, "BranchName": br, "PollForSourceChanges": "false"}
    repo_arn = arn("codecommit", f"${{{lid}RepositoryName}}")
    sx.pipeline_statements.append(
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
    codecommit_rule(sx, a, lid, repo_arn)
    return req.finish(configuration)


def codecommit_rule(sx: Synthesizer, a: Action, lid: str, repo_arn: Any) -> None:
    """A push to a CodeCommit branch starts the pipeline via EventBridge (not a V2 trigger)."""
    triggers = [t for t in sx.p.triggers if t.source_action == a.name]
    if sx.p.triggers and not triggers:
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
    sx.resources[f"{lid}PushRule"] = {
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
        sx.warnings.append(
            f"trigger on '{a.name}': file-path filters cannot apply to CodeCommit pushes on "
            "AWS (EventBridge sees branches only); every push to the branch starts the pipeline"
        )
    if "PipelineEventsRole" not in sx.resources:
        sx.resources["PipelineEventsRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"EventBridge starts pipeline {sx.p.name}",
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
