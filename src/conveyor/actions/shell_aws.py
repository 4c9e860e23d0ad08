"""`shell` on AWS: CodePipeline's Commands action (compute), `#{ns.var}` passed as data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.actions import aws_mapping as am
from conveyor.aws.synth import _RefScope, arn, logical_id
from conveyor.model.variables import command_as_data

TYPE_ID = {"category": "Compute", "owner": "AWS", "provider": "Commands", "version": "1"}


class ShellAws(am.AwsMapping):
    codepipeline_providers: ClassVar[tuple[am.ProviderKey, ...]] = (("Compute", "*", "Commands"),)
    # keys of the CodePipeline action (not its configuration) this type reads
    codepipeline_action_keys: ClassVar[frozenset[str]] = frozenset({"commands"})
    exported_type: ClassVar[Mapping[str, Any]] = TYPE_ID

    @classmethod
    def to_codepipeline(cls, req: am.ExportRequest) -> dict[str, Any]:
        type_id = dict(TYPE_ID)
        kept = req.extra.get("actionTypeId")
        commands = None
        if (dict(kept) if kept else type_id).get("provider") == "Commands":
            commands = list(req.config.get("commands") or [])
        return req.finish(type_id, {}, commands=commands)

    @classmethod
    def from_codepipeline(cls, req: am.ImportRequest) -> dict[str, Any]:
        # Commands actions carry their commands on the action, not in configuration
        return {"commands": list(req.raw.get("commands") or [])}

    @classmethod
    def to_cloudformation(cls, req: am.SynthRequest) -> dict[str, Any] | None:
        sx, a, cfg, decl = req.synth, req.action, req.config, req.decl
        decl["ActionTypeId"] = am.template_type_id(TYPE_ID)
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
        if not req.inputs:
            sx.fail(
                a.path,
                f"action '{a.name}': a CodePipeline Commands action needs an input artifact",
            )
            return None
        sx.pipeline_statements.append(
            {
                "Sid": f"Commands{logical_id(a.name)}",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": arn("logs", f"log-group:/aws/codepipeline/{sx.p.name}:*"),
            }
        )
        return req.finish({})
