"""Operating the pipeline on AWS with boto3: deploy the stack, read state, approve, fetch logs.

Every client takes its endpoint from `CONVEYOR_AWS_ENDPOINT_URL` when set (tests point it at
a moto server, a fake of AWS). AWS errors a user can act on become ConveyorErrors with a
suggested command: no credentials, an unknown region, a stack left in ROLLBACK_COMPLETE,
names beyond CloudFormation's limits.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import AuthError, ConfigError, Conflict, ConveyorError, NotFound, Unavailable

STACK_NAME = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,127}$")
TEMPLATE_BODY_LIMIT = 51_200
TERMINAL_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
TERMINAL_BAD = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "DELETE_COMPLETE",
    "DELETE_FAILED",
    "UPDATE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
    "IMPORT_ROLLBACK_FAILED",
}


def check_stack_name(name: str) -> None:
    """CloudFormation: a letter first, then letters, digits and '-', at most 128 characters."""
    if not STACK_NAME.match(name):
        suggestion = (
            re.sub(r"[^-A-Za-z0-9]", "-", name).lstrip("-0123456789")[:128] or "conveyor-pipeline"
        )
        raise ConfigError(
            f"stack name '{name[:140]}' breaks CloudFormation's rule (a letter, then letters, "
            "digits "
            f"and '-', at most 128 characters): use `--stack-name {suggestion}`"
        )


def stack_name_for(pipeline: str) -> str:
    """The default stack name of a pipeline: `conveyor-<pipeline>` made valid."""
    raw = re.sub(r"[^-A-Za-z0-9]", "-", f"conveyor-{pipeline}")
    return raw[:128]


def endpoint_url() -> str | None:
    return os.environ.get("CONVEYOR_AWS_ENDPOINT_URL") or None


def _translate(e: Exception, region: str | None, what: str) -> ConveyorError:
    """A boto3/botocore failure as a clear error with a suggested command."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(e, NoCredentialsError | PartialCredentialsError):
        return AuthError(
            f"{what}: no AWS credentials found: run `aws configure` (or set AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), then check with "
            "`aws sts get-caller-identity`"
        )
    if isinstance(e, NoRegionError):
        return ConfigError(
            f"{what}: no AWS region: pass `--region eu-west-1` (for example) or run "
            "`aws configure set region eu-west-1`"
        )
    if isinstance(e, EndpointConnectionError):
        return Unavailable(
            f"{what}: cannot reach {e.kwargs.get('endpoint_url', 'the AWS endpoint')} (region "
            f"'{region}'): check the region (`aws ec2 describe-regions --query "
            "'Regions[].RegionName' --output text`) and the network"
        )
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        msg = e.response.get("Error", {}).get("Message", str(e))
        if code in (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "ExpiredTokenException",
        ):
            return AuthError(
                f"{what}: AWS rejected the credentials ({code}: {msg}): run `aws configure` or "
                "refresh your session, then `aws sts get-caller-identity`"
            )
        if code in ("AccessDenied", "AccessDeniedException"):
            return AuthError(f"{what}: access denied: {msg}")
        if code in (
            "PipelineNotFoundException",
            "StackNotFoundException",
            "ResourceNotFoundException",
        ):
            return NotFound(f"{what}: {msg}")
        return ConveyorError(f"{what}: {code}: {msg}")
    return ConveyorError(f"{what}: {type(e).__name__}: {e}")


def check_region(region: str | None) -> None:
    """An unknown region is a clear error, before any network call."""
    if region is None or endpoint_url():
        return
    import boto3

    known = boto3.session.Session().get_available_regions("cloudformation")
    if region not in known:
        import difflib

        close = difflib.get_close_matches(region, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown AWS region '{region}'{hint}: list them with `aws ec2 describe-regions "
            "--query 'Regions[].RegionName' --output text`"
        )


@dataclass(frozen=True)
class Change:
    action: str  # Add | Modify | Remove
    logical_id: str
    resource_type: str
    replacement: str


class Aws:
    """The boto3 side of `conveyor aws ...`. One session; clients made on demand."""

    def __init__(self, region: str | None = None, *, session: Any = None) -> None:
        import boto3

        check_region(region)
        self.session = session or boto3.session.Session(region_name=region)
        self.region = region or self.session.region_name
        self._clients: dict[str, Any] = {}

    def client(self, name: str) -> Any:
        if name not in self._clients:
            from botocore.config import Config

            self._clients[name] = self.session.client(
                name,
                region_name=self.region,
                endpoint_url=endpoint_url(),
                config=Config(
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                ),
            )
        return self._clients[name]

    def call(self, service: str, op: str, what: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client(service), op)(**kwargs)
        except ConveyorError:
            raise
        except Exception as e:  # botocore raises many unrelated types; all are translated
            raise _translate(e, self.region, what) from None

    # ------------------------------------------------------------------ stack
    def stack_status(self, stack: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            out = self.client("cloudformation").describe_stacks(StackName=stack)
        except ClientError as e:
            if "does not exist" in str(e):
                return None
            raise _translate(e, self.region, f"stack {stack}") from None
        except Exception as e:
            raise _translate(e, self.region, f"stack {stack}") from None
        return str(out["Stacks"][0]["StackStatus"])

    def deploy(
        self,
        stack: str,
        template_body: str,
        parameters: Mapping[str, str],
        *,
        confirm: Callable[[list[Change]], bool],
        on_event: Callable[[dict[str, Any]], None],
        poll_seconds: float = 2.0,
        timeout_seconds: float = 3600.0,
    ) -> str:
        """Create or update the stack through a change set; returns the final stack status.

        `confirm(changes)` decides whether to execute; `on_event` sees each new stack event.
        """
        status = self._deployable(stack, template_body)
        kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
        digest = hashlib.sha256(
            template_body.encode() + repr(sorted(parameters.items())).encode()
        ).hexdigest()[:12]
        cs_name = f"conveyor-{digest}"
        self.call(
            "cloudformation",
            "create_change_set",
            f"change set for stack {stack}",
            StackName=stack,
            ChangeSetName=cs_name,
            ChangeSetType=kind,
            TemplateBody=template_body,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            Description="conveyor aws deploy",
        )
        desc = self._wait_change_set(stack, cs_name, poll_seconds, timeout_seconds)
        if desc is None:
            self.call(
                "cloudformation",
                "delete_change_set",
                "delete empty change set",
                StackName=stack,
                ChangeSetName=cs_name,
            )
            return "NO_CHANGES"
        changes = [
            Change(
                c["ResourceChange"].get("Action", "?"),
                c["ResourceChange"].get("LogicalResourceId", "?"),
                c["ResourceChange"].get("ResourceType", "?"),
                str(c["ResourceChange"].get("Replacement", "") or ""),
            )
            for c in desc.get("Changes", [])
            if "ResourceChange" in c
        ]
        if not confirm(changes):
            self.call(
                "cloudformation",
                "delete_change_set",
                "delete change set",
                StackName=stack,
                ChangeSetName=cs_name,
            )
            if kind == "CREATE":
                self.call(
                    "cloudformation", "delete_stack", "delete the empty stack", StackName=stack
                )
            return "CANCELLED"
        seen = {e["EventId"] for e in self.events(stack)}
        self.call(
            "cloudformation",
            "execute_change_set",
            f"execute change set on {stack}",
            StackName=stack,
            ChangeSetName=cs_name,
        )
        final = self._follow(stack, seen, on_event, poll_seconds, timeout_seconds)
        return final

    def _deployable(self, stack: str, template_body: str) -> str | None:
        """The stack's status, when a change set can be made on it (else a Conflict)."""
        check_stack_name(stack)
        if len(template_body.encode()) > TEMPLATE_BODY_LIMIT:
            raise ConfigError(
                f"the template is {len(template_body.encode())} bytes; CloudFormation takes at "
                "most "
                f"{TEMPLATE_BODY_LIMIT} inline: upload it (`aws s3 cp template.json s3://BUCKET/`) "
                "and deploy with `aws cloudformation deploy --s3-bucket BUCKET ...`"
            )
        status = self.stack_status(stack)
        where = f"--stack-name {stack}" + (f" --region {self.region}" if self.region else "")
        if status == "ROLLBACK_COMPLETE":
            raise Conflict(
                f"stack '{stack}' is in ROLLBACK_COMPLETE (its creation failed and was rolled "
                "back); it "
                f"cannot be updated: delete it with `aws cloudformation delete-stack {where}` and "
                f"`aws cloudformation wait stack-delete-complete {where}`, then deploy again"
            )
        if status and status.endswith("_IN_PROGRESS"):
            raise Conflict(
                f"stack '{stack}' is busy ({status}): wait with `aws cloudformation "
                "describe-stacks "
                f"{where}` until it settles, then deploy again"
            )
        if status and status.endswith("_FAILED"):
            raise Conflict(
                f"stack '{stack}' is in {status}: look at `aws cloudformation "
                "describe-stack-events "
                f"{where}`; for UPDATE_ROLLBACK_FAILED use `aws cloudformation "
                "continue-update-rollback "
                f"{where}`"
            )
        return status

    def _follow(
        self,
        stack: str,
        seen: set[str],
        on_event: Callable[[dict[str, Any]], None],
        poll_seconds: float,
        timeout_seconds: float,
    ) -> str:
        """Show each new stack event until the stack settles; its final status."""
        deadline = time.monotonic() + timeout_seconds
        final = ""
        while time.monotonic() < deadline:
            for ev in reversed(self.events(stack)):
                if ev["EventId"] not in seen:
                    seen.add(ev["EventId"])
                    on_event(ev)
            final = self.stack_status(stack) or "DELETE_COMPLETE"
            if final in TERMINAL_OK or final in TERMINAL_BAD:
                break
            time.sleep(poll_seconds)
        for ev in reversed(self.events(stack)):
            if ev["EventId"] not in seen:
                seen.add(ev["EventId"])
                on_event(ev)
        if final not in TERMINAL_OK:
            failed = self.first_failure(stack)
            reason = (
                (
                    f": {failed['LogicalResourceId']} ({failed.get('ResourceType')}) "
                    f"{failed['ResourceStatus']}: {failed.get('ResourceStatusReason', '')}"
                )
                if failed
                else ""
            )
            raise ConveyorError(
                f"stack '{stack}' ended in {final or 'an unknown state (timed out)'}{reason}"
            )
        return final

    def _wait_change_set(
        self, stack: str, name: str, poll: float, timeout: float
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            desc: dict[str, Any] = self.call(
                "cloudformation",
                "describe_change_set",
                "change set",
                StackName=stack,
                ChangeSetName=name,
            )
            st = desc.get("Status")
            if st == "CREATE_COMPLETE":
                return desc
            if st == "FAILED":
                reason = str(desc.get("StatusReason", ""))
                if "didn't contain changes" in reason or "No updates" in reason:
                    return None
                raise ConveyorError(f"change set for stack '{stack}' failed: {reason}")
            if time.monotonic() > deadline:
                raise Unavailable(f"change set for stack '{stack}' still {st} after {timeout:.0f}s")
            time.sleep(poll)

    def events(self, stack: str) -> list[dict[str, Any]]:
        out = self.call(
            "cloudformation", "describe_stack_events", f"events of stack {stack}", StackName=stack
        )
        return list(out.get("StackEvents", []))

    def first_failure(self, stack: str) -> dict[str, Any] | None:
        """The earliest *_FAILED event: usually the cause, the rest follow from it."""
        failed = [
            e for e in self.events(stack) if str(e.get("ResourceStatus", "")).endswith("_FAILED")
        ]
        return failed[-1] if failed else None

    # ------------------------------------------------------------------ pipeline
    def pipeline_state(self, pipeline: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call(
            "codepipeline", "get_pipeline_state", f"pipeline {pipeline}", name=pipeline
        )
        return out

    def execution(self, pipeline: str, execution_id: str) -> dict[str, Any]:
        """An execution with its action executions (`list_action_executions`)."""
        ex = self.call(
            "codepipeline",
            "get_pipeline_execution",
            f"execution {execution_id}",
            pipelineName=pipeline,
            pipelineExecutionId=execution_id,
        )["pipelineExecution"]
        actions = self.call(
            "codepipeline",
            "list_action_executions",
            f"actions of execution {execution_id}",
            pipelineName=pipeline,
            filter={"pipelineExecutionId": execution_id},
        )
        return {"execution": ex, "actions": actions.get("actionExecutionDetails", [])}

    def pending_approvals(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Each approval waiting in a get_pipeline_state answer: stage, action, token, execution."""
        out = []
        for st in state.get("stageStates", []):
            ex_id = (st.get("latestExecution") or {}).get("pipelineExecutionId")
            for ac in st.get("actionStates", []):
                latest = ac.get("latestExecution") or {}
                if latest.get("status") == "InProgress" and latest.get("token"):
                    out.append(
                        {
                            "stage": st["stageName"],
                            "action": ac["actionName"],
                            "token": latest["token"],
                            "execution": ex_id,
                        }
                    )
        return out

    def decide(
        self,
        pipeline: str,
        approved: bool,
        comment: str,
        *,
        execution: str | None = None,
        action: str | None = None,
    ) -> dict[str, Any]:
        """Approve or reject the pending approval (found by its token in the pipeline state)."""
        pending = self.pending_approvals(self.pipeline_state(pipeline))
        if execution:
            pending = [x for x in pending if x["execution"] == execution]
        if action:
            pending = [x for x in pending if x["action"] == action]
        if not pending:
            raise NotFound(
                f"no approval is waiting in pipeline '{pipeline}'"
                + (f" for execution {execution}" if execution else "")
                + f": see `conveyor aws status --pipeline {pipeline}`"
            )
        if len(pending) > 1:
            names = ", ".join(f"{x['stage']}/{x['action']}" for x in pending)
            raise Conflict(
                f"{len(pending)} approvals are waiting ({names}): pick one with --action NAME"
            )
        p = pending[0]
        self.call(
            "codepipeline",
            "put_approval_result",
            f"approval {p['stage']}/{p['action']}",
            pipelineName=pipeline,
            stageName=p["stage"],
            actionName=p["action"],
            token=p["token"],
            result={"summary": comment[:512], "status": "Approved" if approved else "Rejected"},
        )
        return p

    def build_id_of(self, pipeline: str, action: str, execution: str | None = None) -> str:
        """The CodeBuild build id behind an action's latest (or a given execution's) run."""
        if execution:
            for d in self.execution(pipeline, execution)["actions"]:
                if d.get("actionName") == action:
                    ext = ((d.get("output") or {}).get("executionResult") or {}).get(
                        "externalExecutionId"
                    )
                    if ext:
                        return str(ext)
            raise NotFound(f"action '{action}' has no CodeBuild run in execution {execution}")
        state = self.pipeline_state(pipeline)
        names = []
        for st in state.get("stageStates", []):
            for ac in st.get("actionStates", []):
                names.append(ac["actionName"])
                if ac["actionName"] == action:
                    ext = (ac.get("latestExecution") or {}).get("externalExecutionId")
                    if not ext:
                        raise NotFound(
                            f"action '{action}' has not run on CodeBuild yet (no build id)"
                        )
                    return str(ext)
        raise NotFound(
            f"no action '{action}' in pipeline '{pipeline}' (actions: {', '.join(names)})"
        )

    def build_logs(self, build_id: str) -> Iterator[str]:
        """The CloudWatch Logs lines of a CodeBuild build, oldest first."""
        builds = self.call(
            "codebuild", "batch_get_builds", f"build {build_id}", ids=[build_id]
        ).get("builds", [])
        if not builds:
            raise NotFound(f"CodeBuild has no build '{build_id}'")
        logs = builds[0].get("logs") or {}
        group, stream = logs.get("groupName"), logs.get("streamName")
        if not group or not stream or group == "null":
            raise NotFound(
                f"build '{build_id}' has no CloudWatch Logs stream recorded (status "
                f"{builds[0].get('buildStatus')}); see `aws codebuild batch-get-builds --ids "
                f"{build_id}`"
            )
        yield from self.log_lines(group, stream)

    def log_lines(self, group: str, stream: str) -> Iterator[str]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            out = self.call("logs", "get_log_events", f"logs {group}/{stream}", **kwargs)
            for ev in out.get("events", []):
                yield str(ev.get("message", "")).rstrip("\n")
            nxt = out.get("nextForwardToken")
            if not nxt or nxt == token:
                return
            token = nxt


def state_rows(state: Mapping[str, Any]) -> list[dict[str, str]]:
    """get_pipeline_state as rows (stage, action, status, summary, changed), in pipeline order."""
    rows = []
    for st in state.get("stageStates", []):
        stage_status = (st.get("latestExecution") or {}).get("status", "")
        transition = st.get("inboundTransitionState") or {}
        if transition and transition.get("enabled") is False:
            stage_status += f" (transition disabled: {transition.get('disabledReason', '')})"
        for ac in st.get("actionStates", []) or [{}]:
            latest = ac.get("latestExecution") or {}
            summary = latest.get("summary") or (latest.get("errorDetails") or {}).get("message", "")
            changed = latest.get("lastStatusChange", "")
            rows.append(
                {
                    "stage": st.get("stageName", ""),
                    "stageStatus": stage_status,
                    "action": ac.get("actionName", ""),
                    "status": latest.get("status", "-"),
                    "summary": str(summary),
                    "changed": str(changed),
                }
            )
    return rows
