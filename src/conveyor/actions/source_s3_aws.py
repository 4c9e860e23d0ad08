"""`source.s3` on AWS: CodePipeline's S3 source (polling off; an EventBridge rule or a person
starts the pipeline)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.actions import aws_mapping as am
from conveyor.aws.synth import logical_id

TYPE_ID = {"category": "Source", "owner": "AWS", "provider": "S3", "version": "1"}


class S3SourceAws(am.AwsMapping):
    codepipeline_providers: ClassVar[tuple[am.ProviderKey, ...]] = (("Source", "AWS", "S3"),)
    exported_type: ClassVar[Mapping[str, Any]] = TYPE_ID

    @classmethod
    def to_codepipeline(cls, req: am.ExportRequest) -> dict[str, Any]:
        cfg = req.config
        configuration = {"S3Bucket": cfg.get("bucket", ""), "S3ObjectKey": cfg.get("key", "")}
        if req.pipeline.triggers and "PollForSourceChanges" not in req.leftover:
            configuration["PollForSourceChanges"] = "false"
        return req.finish(dict(TYPE_ID), configuration)

    @classmethod
    def from_codepipeline(cls, req: am.ImportRequest) -> dict[str, Any]:
        req.problems.note(
            (*req.path, "actionTypeId"),
            f"note: action '{req.name}': an S3 source runs locally from the state dir's "
            "s3/BUCKET/KEY (a directory or a .zip), config.path, or an S3-compatible "
            "URL (config.endpoint or CONVEYOR_S3_ENDPOINT)",
        )
        cfg = req.configuration
        return {"bucket": cfg.pop("S3Bucket", ""), "key": cfg.pop("S3ObjectKey", "")}

    @classmethod
    def to_cloudformation(cls, req: am.SynthRequest) -> dict[str, Any] | None:
        a, cfg, sx = req.action, req.config, req.synth
        req.decl["ActionTypeId"] = am.template_type_id(TYPE_ID)
        bucket, key = str(cfg.get("bucket", "")), str(cfg.get("key", ""))
        configuration = {
            "S3Bucket": bucket,
            "S3ObjectKey": key,
            "PollForSourceChanges": "false",
        }
        sx.pipeline_statements.append(
            {
                "Sid": f"Source{logical_id(a.name)}",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/{key}"},
            }
        )
        sx.warnings.append(
            f"action '{a.name}': S3 source polling is off; start the pipeline with an "
            "EventBridge rule on the bucket (CloudTrail data events) or by hand"
        )
        return req.finish(configuration)
