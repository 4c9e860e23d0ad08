"""`approval`: CodePipeline's manual approval. Waits, with a token, for a person to approve or
reject (CLI, REST API or dashboard); fails on rejection or when its timeout passes.

    - name: DeployToEKSProdApproval
      type: approval
      config:
        summary: "Read the e2e reports, then approve the release to prod"
        digest: "#{Build.ImageDigest}"      # the decision is bound to this image
        timeout: 7d                          # 5m .. 60d, default 7d
        notify: {webhook: "http://127.0.0.1:9000/hook"}   # Slack-compatible JSON
        selfApproval: true
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.errors import ActionError, ActionFailed
from conveyor.model.pipeline import Action
from conveyor.model.status import ApprovalStatus, Reason
from conveyor.spec.pipeline_file import parse_duration

MIN_TIMEOUT, MAX_TIMEOUT, DEFAULT_TIMEOUT = 300, 60 * 86400, 7 * 86400


class Notify(ActionConfig):
    webhook: str | None = None


class ApprovalConfig(ActionConfig):
    summary: str = Field(default="", alias="customData")
    externalEntityLink: str | None = None
    digest: str | None = None
    timeout: int | str = DEFAULT_TIMEOUT
    notify: Notify = Notify()
    selfApproval: bool = True

    @field_validator("timeout")
    @classmethod
    def _range(cls, v: int | str) -> int | str:
        secs = parse_duration(v) or 0
        if not MIN_TIMEOUT <= secs <= MAX_TIMEOUT:
            raise ValueError("an approval timeout must be between 5m and 60d")
        return v


def slack_payload(ctx: ActionContext, cfg: ApprovalConfig, link: str) -> dict[str, Any]:
    text = (
        f"Approval needed: pipeline *{ctx.pipeline.name}*, execution `{ctx.execution_id}`, "
        f"action {ctx.stage}/{ctx.action.name}."
    )
    if cfg.digest:
        text += f" Image `{cfg.digest}`."
    if cfg.summary:
        text += f"\n{cfg.summary}"
    return {
        "text": f"{text}\nReview: {link}",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{text}\n<{link}|Review and decide>"},
            }
        ],
    }


class Approval(BaseAction):
    type_name = "approval"
    Config = ApprovalConfig
    resumable: ClassVar[bool] = True
    output_variables: ClassVar[frozenset[str] | None] = frozenset(
        {"ApprovedBy", "Comment", "Decision"}
    )
    default_timeout = MAX_TIMEOUT + 3600  # the approval's own timeout decides

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = ApprovalConfig.model_validate(dict(ctx.config))
        if ctx.gate is None:
            raise ActionError("approval actions need the engine's approval gate")
        timeout = parse_duration(cfg.timeout) or DEFAULT_TIMEOUT
        row = ctx.gate.open(
            summary=cfg.summary,
            digest=cfg.digest,
            timeout_seconds=timeout,
            external_link=cfg.externalEntityLink,
        )
        settings = ctx.services.settings
        link = f"{settings.server_url}/executions/{ctx.execution_id}/approval"
        # a resumed wait (a decision arrived, or a new engine took over) found the row:
        # the approvers were told when it opened
        opened_now = ctx.gate.opened_now
        if opened_now:
            ctx.log.write(
                f"waiting for approval (token {row.token[:8]}…); decide on {link}\n"
                f"  or: conveyor approve {ctx.execution_id} --comment '...'"
                f" | conveyor reject {ctx.execution_id} --comment '...'\n"
            )
        hook = cfg.notify.webhook or (ctx.pipeline.settings.get("notifications") or {}).get(
            "webhook"
        )
        if hook and opened_now:
            import httpx  # here: validating a pipeline (`run --detach`) must not pay for it

            try:
                httpx.post(hook, json=slack_payload(ctx, cfg, link), timeout=5).raise_for_status()
                ctx.log.write(f"notified {hook}\n")
            except httpx.HTTPError as e:
                ctx.log.write(f"warning: approval notification to {hook} failed: {e}\n")
        decision = ctx.gate.wait(ctx.cancel)
        who = decision.by or "engine"
        comment = decision.comment or ""
        vars_ = {"ApprovedBy": who, "Comment": comment, "Decision": decision.status}
        if decision.status == ApprovalStatus.APPROVED:
            return ActionResult(
                variables=vars_,
                message=f"approved by {who}: {comment}".rstrip(": "),
                details={"approval": vars_},
            )
        if decision.status == ApprovalStatus.REJECTED:
            return ActionResult(
                False,
                Reason.REJECTED,
                f"rejected by {who}: {comment}".rstrip(": "),
                variables=vars_,
                details={"approval": vars_},
            )
        if decision.status == ApprovalStatus.EXPIRED:
            return ActionResult(
                False,
                Reason.APPROVAL_EXPIRED,
                f"no decision within {cfg.timeout}",
                details={"approval": vars_},
            )
        if decision.status == ApprovalStatus.SUPERSEDED:
            return ActionResult(False, Reason.SUPERSEDED, comment, details={"approval": vars_})
        raise ActionFailed(f"approval ended: {decision.status}")

    @classmethod
    def extra_checks(
        cls, action: Action, config: ActionConfig
    ) -> Sequence[tuple[tuple[str | int, ...], str]]:
        assert isinstance(config, ApprovalConfig)
        link = config.externalEntityLink
        if link is None or link_may_be_http(link):
            return ()
        return [
            (
                ("config", "externalEntityLink"),
                f"externalEntityLink '{link[:80]}' is not an http(s) URL: the approval page "
                "shows only http:// and https:// links (write https://…)",
            )
        ]


def link_may_be_http(link: str) -> bool:
    """True when the literal part of a link (before any `#{…}`) can start an http(s) URL;
    a value from a variable is checked again where it is shown."""
    literal = link.split("#{", 1)[0].strip().lower()
    if not literal:
        return "#{" in link
    return any(s.startswith(literal) or literal.startswith(s) for s in ("http://", "https://"))
