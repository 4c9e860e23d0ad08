"""`aws.<Category>.<Provider>`: a CodePipeline action Conveyor has no local type for.

An imported pipeline keeps such an action (CodeDeploy, CloudFormation, Lambda, ECS...) as a
typed passthrough, e.g. `aws.Deploy.CodeDeploy`, with its CodePipeline `actionTypeId` and
`configuration` verbatim: the pipeline validates, `conveyor export codepipeline` writes the
action back unchanged, and a local run fails the action with "runs on AWS only: ...".

Registered through the entry point `aws.*` of the group `conveyor.actions`: the registry
gives every `aws.`-prefixed type name this class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from conveyor.actions.aws_mapping import ExportRequest, ImportRequest, ProviderKey, SynthRequest
from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.errors import ActionError, ConfigError

PREFIX = "aws."


class AwsPassthroughConfig(ActionConfig):
    action_type_id: dict[str, Any] = Field(alias="actionTypeId")
    configuration: dict[str, Any] = Field(default_factory=dict)


class AwsPassthrough(BaseAction):
    """A CodePipeline action kept as it is: valid and exported, run only by AWS."""

    type_name = "aws.*"
    Config = AwsPassthroughConfig
    output_variables: ClassVar[frozenset[str] | None] = None  # whatever AWS's action outputs

    @classmethod
    def extra_checks(
        cls, action: Any, config: ActionConfig
    ) -> list[tuple[tuple[str | int, ...], str]]:
        assert isinstance(config, AwsPassthroughConfig)
        missing = [k for k in ("category", "provider") if not config.action_type_id.get(k)]
        if missing:
            return [
                (
                    ("config", "actionTypeId"),
                    f"actionTypeId needs {' and '.join(missing)} (category, owner, provider, "
                    "version as CodePipeline names them)",
                )
            ]
        return []

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = AwsPassthroughConfig.model_validate(dict(ctx.config))
        tid = cfg.action_type_id
        what = "/".join(str(tid.get(k, "?")) for k in ("owner", "category", "provider"))
        raise ActionError(
            f"runs on AWS only: action '{ctx.action.name}' is a CodePipeline {what} action, "
            "which Conveyor cannot run locally; run the pipeline on AWS "
            "(`conveyor export codepipeline` or `conveyor aws synth`), or replace it with a "
            "local action type"
        )

    # ------------------------------------------------------------------ AWS mapping
    codepipeline_providers: ClassVar[tuple[ProviderKey, ...]] = (("*", "*", "*"),)

    @classmethod
    def type_id(cls, original: Mapping[str, Any]) -> dict[str, Any]:
        return dict(original)

    @classmethod
    def imported_type(cls, type_id: Mapping[str, Any]) -> str:
        return f"{PREFIX}{type_id['category']}.{type_id['provider']}".replace(" ", "")

    @classmethod
    def to_codepipeline(cls, req: ExportRequest) -> dict[str, Any]:
        cfg = req.config
        type_id = dict(cfg.get("actionTypeId") or {})
        configuration = dict(cfg.get("configuration") or {})
        if not type_id.get("provider"):
            raise ConfigError(
                f"{req.where}: an aws.* action needs config.actionTypeId (category, owner, "
                "provider, version)"
            )
        return req.finish(type_id, configuration)

    @classmethod
    def from_codepipeline(cls, req: ImportRequest) -> dict[str, Any]:
        tid = req.type_id
        owner = tid.get("owner", "AWS")
        req.problems.warn(
            (*req.path, "actionTypeId"),
            f"action '{req.name}': no local Conveyor action type for {owner}/{tid['category']}/"
            f"{tid['provider']}; kept as '{cls.imported_type(tid)}': it validates and exports "
            "unchanged, and runs on AWS only (a local run fails it)",
        )
        config = {"actionTypeId": dict(tid), "configuration": dict(req.configuration)}
        req.configuration.clear()
        return config

    @classmethod
    def to_cloudformation(cls, req: SynthRequest) -> dict[str, Any] | None:
        a, cfg = req.action, req.config
        tid = dict(cfg.get("actionTypeId") or {})
        if not tid.get("provider"):
            req.fail(
                (*a.path, "config"),
                f"action '{a.name}': an {a.type} action needs config.actionTypeId",
            )
            return None
        req.decl["ActionTypeId"] = {k[0].upper() + k[1:]: str(v) for k, v in sorted(tid.items())}
        req.synth.warnings.append(
            f"action '{a.name}': {tid.get('owner', 'AWS')}/{tid['provider']} is passed through "
            "as is; grant the pipeline role what that provider needs (not generated)"
        )
        return req.finish(dict(cfg.get("configuration") or {}))
