"""`approval` on AWS: CodePipeline's manual approval, announced on the stack's SNS topic,
with the image digest in CustomData and a link to the evidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.actions import aws_mapping as am
from conveyor.model.pipeline import Action, Pipeline, Stage
from conveyor.spec.codepipeline import PLACEHOLDER_TOPIC, project_name
from conveyor.spec.pipeline_file import parse_duration

TYPE_ID = {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"}


def _summary(a_name: str, cfg: Mapping[str, Any]) -> str:
    summary = str(cfg.get("customData", cfg.get("summary", "")) or f"Approve {a_name}")
    if cfg.get("digest"):
        summary += f" Image: {cfg['digest']}"
    return summary


class ApprovalAws(am.AwsMapping):
    codepipeline_providers: ClassVar[tuple[am.ProviderKey, ...]] = (("Approval", "*", "Manual"),)
    exported_type: ClassVar[Mapping[str, Any]] = TYPE_ID

    @classmethod
    def to_codepipeline(cls, req: am.ExportRequest) -> dict[str, Any]:
        # as the stack has it: the SNS topic, the digest in CustomData, a link to the evidence
        cfg, p, s, a = req.config, req.pipeline, req.stage, req.action
        topic = str(cfg.get("notificationArn") or req.leftover.pop("NotificationArn", "")) or (
            PLACEHOLDER_TOPIC
        )
        if topic == PLACEHOLDER_TOPIC:
            req.warnings.append(
                f"{req.where}: NotificationArn is a placeholder ({PLACEHOLDER_TOPIC}): put the "
                "ApprovalTopicArn output of the stack there"
            )
        configuration = {"NotificationArn": topic, "CustomData": _summary(a.name, cfg)[:500]}
        link = cfg.get("externalEntityLink")
        evidence = _last_codebuild_before(p, s)
        if link:
            configuration["ExternalEntityLink"] = link
        elif evidence is not None:
            project = req.names.get(evidence.name) or project_name(p.name, evidence.name)
            configuration["ExternalEntityLink"] = (
                f"https://console.aws.amazon.com/codesuite/codebuild/projects/{project}/history"
            )
        return req.finish(dict(TYPE_ID), configuration)

    @classmethod
    def from_codepipeline(cls, req: am.ImportRequest) -> dict[str, Any]:
        cfg = req.configuration
        config: dict[str, Any] = {}
        if "CustomData" in cfg:
            config["customData"] = cfg.pop("CustomData")
        if "ExternalEntityLink" in cfg:
            config["externalEntityLink"] = cfg.pop("ExternalEntityLink")
        return config

    @classmethod
    def to_cloudformation(cls, req: am.SynthRequest) -> dict[str, Any] | None:
        sx, a, cfg, decl = req.synth, req.action, req.config, req.decl
        decl["ActionTypeId"] = am.template_type_id(TYPE_ID)
        configuration: dict[str, Any] = {
            "NotificationArn": {"Ref": "ApprovalTopic"},
            "CustomData": _summary(a.name, cfg)[:500],
        }
        link = cfg.get("externalEntityLink")
        if link:
            configuration["ExternalEntityLink"] = link
        elif req.last_project:
            configuration["ExternalEntityLink"] = {
                "Fn::Sub": (
                    "https://${AWS::Region}.console.aws.amazon.com/codesuite/codebuild/projects/"
                    f"${{{req.last_project[0]}}}/history?region=${{AWS::Region}}"
                )
            }
        if (cfg.get("notify") or {}).get("webhook"):
            sx.warnings.append(
                f"action '{a.name}': notify.webhook is local-only; on AWS subscribe the "
                "webhook to the approval topic (parameter ApprovalNotificationEndpoint, "
                "protocol https)"
            )
        req.approvals.append(a.name)
        if a.timeout_seconds or cfg.get("timeout"):
            secs = parse_duration(cfg.get("timeout")) or a.timeout_seconds or 0
            if secs:
                decl["TimeoutInMinutes"] = min(86400, max(5, -(-secs // 60)))
        return req.finish(configuration)


def _last_codebuild_before(p: Pipeline, s: Stage) -> Action | None:
    before: list[Action] = []
    for st in p.stages:
        if st is s:
            break
        before += [x for x in st.actions if x.type in ("build", "deploy", "image.promote")]
    return before[-1] if before else None
