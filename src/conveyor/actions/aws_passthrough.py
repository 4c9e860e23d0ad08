"""`aws.<Category>.<Provider>`: a CodePipeline action Conveyor has no local type for.

An imported pipeline keeps such an action (CodeDeploy, CloudFormation, Lambda, ECS...) as a
typed passthrough, e.g. `aws.Deploy.CodeDeploy`, with its CodePipeline `actionTypeId` and
`configuration` verbatim: the pipeline validates, `conveyor export codepipeline` writes the
action back unchanged, and a local run fails the action with "runs on AWS only: ...".

Registered through the entry point `aws.*` of the group `conveyor.actions`: the registry
gives every `aws.`-prefixed type name this class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.errors import ActionError

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
