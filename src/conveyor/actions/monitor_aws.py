"""`monitor` on AWS: a CodeBuild action running the local monitor's HTTP probes for the bake
time, and the stage's onSuccess condition on a CloudWatch alarm (result ROLLBACK)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.actions.aws_mapping import (
    AwsMapping,
    ExportRequest,
    SynthRequest,
    codebuild_configuration,
    codebuild_type_id,
)
from conveyor.aws import buildspecs
from conveyor.aws.synth import PROVISIONING_MARGIN_MINUTES, Synthesizer, arn, logical_id
from conveyor.errors import ConfigError
from conveyor.model.pipeline import Action, Environment, Pipeline, Stage
from conveyor.spec.codepipeline import _codebuild_input, monitor_wait_minutes
from conveyor.spec.pipeline_file import parse_duration


class MonitorAws(AwsMapping):
    # its probes read the deploy's URL, which the deploy always exports (no buildspec check)
    synth_checks_refs: ClassVar[bool] = False

    @classmethod
    def to_codepipeline(cls, req: ExportRequest) -> dict[str, Any]:
        req.stage_rollbacks.append(req.action)
        configuration = codebuild_configuration(req)
        deploy = _deploy_of(req.pipeline, req.stage, req.action)
        if deploy is None or not deploy.namespace:
            raise ConfigError(
                f"{req.where}: a monitor on AWS probes the URL its environment's deploy exports: "
                "give that deploy a `namespace:`"
            )
        configuration["EnvironmentVariables"] = json.dumps(
            [{"name": "URL", "value": f"#{{{deploy.namespace}.URL}}", "type": "PLAINTEXT"}],
            separators=(",", ":"),
        )
        return req.finish(codebuild_type_id("Test"), configuration)

    @classmethod
    def to_cloudformation(cls, req: SynthRequest) -> dict[str, Any] | None:
        decl, rule = monitor(req.synth, req.stage, req.action)
        if rule:
            req.rules.append(rule)
        return decl


def monitor(
    sx: Synthesizer, s: Stage, a: Action
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A CodeBuild action running the local monitor's HTTP probes for the bake time (its
    failure fails the stage, whose OnFailure is ROLLBACK), and the optional CloudWatch
    alarm condition (parameter UseMonitorAlarm)."""
    e = _watched(sx, s, a)
    if e is None:
        return None, None
    deploy = next(
        (
            x
            for _, x in sx.p.all_actions()
            if x.type == "deploy" and x.environment == e.name and x.namespace
        ),
        None,
    )
    cluster, ns = sx.cluster(e)
    cfg = dict(a.config)
    bake = parse_duration(cfg.get("bake")) or 60
    probes = _probes(cfg)
    if "prometheus" in cfg:
        sx.warnings.append(
            f"monitor '{a.name}': prometheus queries are local-only; on AWS the HTTP probes "
            "(and the optional CloudWatch alarm) decide the rollback"
        )
    inputs = _codebuild_input(sx.p, s, a)  # the same artifact the export reads
    if deploy is None or not inputs:
        sx.fail(
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
    proj = sx.project(
        s,
        a,
        buildspec=buildspecs.monitor_buildspec(),
        env=env,
        statements=[sx.eks_describe(e)],
        description=f"{sx.p.name}: {s.name}/{a.name} (HTTP probes of {e.name})",
    )
    if not a.timeout_seconds:
        sx.resources[proj]["Properties"]["TimeoutInMinutes"] = min(
            2160, -(-bake // 60) + 5 + PROVISIONING_MARGIN_MINUTES
        )
    sx.kubectl_role(proj)
    sx.port_forward_access(a, e)
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
    return decl, alarm_rule(sx, s, a, e, (cluster, ns))


def _watched(sx: Synthesizer, s: Stage, a: Action) -> Environment | None:
    """The EKS environment a monitor watches: its own, else its stage's deploy's."""
    env_name = a.environment or next(
        (x.environment for x in s.actions if x.type == "deploy" and x.environment), None
    )
    if env_name is None:
        sx.fail(
            a.path,
            f"action '{a.name}': a monitor on AWS watches an environment: set `environment:` "
            "or "
            "put it in a stage with a deploy action",
        )
        return None
    e = sx.env(env_name, a.path)
    if e is None:
        return None
    if sx.target_envs.get(e.name, e.driver) != "eks":
        sx.fail(
            (*e.path, "driver"),
            f"environment '{e.name}' (watched by '{a.name}') uses driver '{e.driver}', "
            f"which AWS cannot run: set `driver: eks` or pass `--target-env {e.name}=eks`",
        )
        return None
    return e


def _probes(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The monitor's HTTP probes, as the CodeBuild project's PROBES."""
    return [
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


def alarm_rule(
    sx: Synthesizer, s: Stage, a: Action, e: Environment, where: tuple[Any, Any]
) -> dict[str, Any]:
    """The optional CloudWatch alarm (parameter UseMonitorAlarm) and the stage condition on it."""
    cluster, ns = where
    lid = logical_id(a.name)
    # the optional alarm: Container Insights' running pods, missing data is not a breach
    sx.param(
        "UseMonitorAlarm",
        "also roll back when the CloudWatch alarm of a monitor fires during its bake "
        "(needs Container Insights on the cluster)",
        "false",
        AllowedValues=["true", "false"],
    )
    sx.conditions["UseMonitorAlarm"] = {"Fn::Equals": [{"Ref": "UseMonitorAlarm"}, "true"]}
    service = sx.param(
        f"{logical_id(e.name)}ServiceName",
        f"Kubernetes Service of environment '{e.name}' (Container Insights dimension)",
        (e.repository or sx.p.name).split("/")[-1],
    )
    alarm_name = f"${{AWS::StackName}}-{a.name}"[:255]
    sx.resources[f"{lid}Alarm"] = {
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
            "AlarmDescription": f"{sx.p.name}: {s.name}/{a.name} watches environment {e.name}",
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
    sx.pipeline_statements.append(
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
    return rule


def _deploy_of(p: Pipeline, s: Stage, a: Action) -> Action | None:
    """The deploy whose environment a monitor watches (its own, else its stage's deploy)."""
    env = a.environment or next(
        (x.environment for x in s.actions if x.type == "deploy" and x.environment), None
    )
    return next(
        (x for _, x in p.all_actions() if x.type == "deploy" and x.environment == env), None
    )
