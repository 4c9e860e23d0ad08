"""`conveyor import|export codepipeline`; `conveyor aws synth|deploy|status|approve|reject|logs`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from conveyor.errors import ConfigError, Problem, ValidationFailed


def _echo_warnings(lines: list[str]) -> None:
    for w in lines:
        click.echo(
            w
            if w.startswith(("warning", "note")) or ": warning" in w or ": note" in w
            else f"warning: {w}",
            err=True,
        )


def _write(text: str, output: str | None) -> None:
    if output and output != "-":
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _load_for_aws(
    file: str, target_env: tuple[str, ...], eks_deploy: str = "codebuild"
) -> tuple[Any, dict[str, str]]:
    """Load a pipeline file keeping its line index, so synth problems say FILE:LINE."""
    from conveyor.aws.synth import Unmappable, synthesize
    from conveyor.cli._common import parse_pairs
    from conveyor.spec.pipeline_file import parse
    from conveyor.spec.yamlfile import load

    targets = parse_pairs(target_env, "--target-env", "ENV=eks (e.g. --target-env test=eks)")
    data, lines = load(file)
    pipeline = parse(data, lines)
    try:
        synthesis = synthesize(
            pipeline, targets, _report_groups(Path(file), pipeline), eks_deploy=eks_deploy
        )
    except Unmappable as e:
        raise ValidationFailed(
            [
                lines.problem(f.path, f.message) if f.path else Problem(file, None, f.message)
                for f in e.findings
            ]
        ) from None
    return synthesis, targets


def _report_groups(file: Path, pipeline: Any) -> dict[str, list[str]]:
    """The report groups each build action's buildspec declares, when its source sits beside
    the pipeline file (`examples/webapp/buildspec.yml` for repository `webapp`)."""
    from conveyor.buildspec.spec import load_buildspec

    out: dict[str, list[str]] = {}
    sources = {
        x.outputs[0]: str(x.config.get("repository", ""))
        for _, x in pipeline.all_actions()
        if x.type == "source.git" and x.outputs
    }
    for _, a in pipeline.all_actions():
        spec = str(a.config.get("buildspec") or "buildspec.yml")
        repo = sources.get(a.inputs[0], "") if a.type == "build" and a.inputs else ""
        path = file.parent / repo / spec
        if not repo or "\n" in spec or not path.is_file():
            continue
        try:
            out[a.name] = [r.group for r in load_buildspec(path).reports]
        except ConfigError:
            continue  # the action's own run reports a bad buildspec
    return out


# ---------------------------------------------------------------------------- import / export


@click.command("codepipeline")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="write the pipeline file here (default: stdout)")
def import_codepipeline(file: str, output: str | None) -> None:
    """Convert `aws codepipeline get-pipeline` JSON (or a CFN template) into a pipeline file."""
    from conveyor.spec.codepipeline import load_codepipeline
    from conveyor.spec.pipeline_file import dump_yaml, from_model

    imported = load_codepipeline(file)
    for w in imported.warnings:
        click.echo(str(w), err=True)
    header = (
        f"# Imported from {Path(file).name} by `conveyor import codepipeline`.\n"
        "# AWS-only details (roles, artifact store, keys without a Conveyor equivalent) are kept "
        "under\n"
        "# settings.codepipeline so that `conveyor export codepipeline` gives them back.\n"
    )
    _write(header + dump_yaml(from_model(imported.pipeline)), output)


@click.command("codepipeline")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="write the JSON here (default: stdout)")
@click.option(
    "--role-arn", help="the pipeline's service role (else the imported one, else a placeholder)"
)
@click.option(
    "--artifact-bucket",
    help="the artifact store's S3 bucket (else the imported one, else a placeholder)",
)
def export_codepipeline(
    file: str, output: str | None, role_arn: str | None, artifact_bucket: str | None
) -> None:
    """Write a pipeline file as CodePipeline JSON (for `create-pipeline --cli-input-json`)."""
    from conveyor.spec.codepipeline import export_pipeline
    from conveyor.spec.pipeline_file import load_pipeline

    pipeline = load_pipeline(file)
    doc, warnings = export_pipeline(pipeline, role_arn=role_arn, artifact_bucket=artifact_bucket)
    _echo_warnings(warnings)
    _write(json.dumps(doc, indent=2) + "\n", output)


import_group = click.Group(
    "import", help="Convert other CI/CD definitions into a Conveyor pipeline file."
)
import_group.add_command(import_codepipeline)
export_group = click.Group(
    "export", help="Convert a Conveyor pipeline file into another CI/CD definition."
)
export_group.add_command(export_codepipeline)


# ---------------------------------------------------------------------------- aws


@click.group("aws")
def aws_group() -> None:
    """Run the same pipeline on AWS: synthesize CloudFormation, deploy it, operate it (boto3)."""


TARGET_ENV = click.option(
    "--target-env",
    multiple=True,
    metavar="ENV=eks",
    help="deploy a local (podman/kubernetes) environment to EKS instead",
)
EKS_DEPLOY = click.option(
    "--eks-deploy",
    type=click.Choice(["codebuild", "native"]),
    default="codebuild",
    show_default=True,
    help="native: CodePipeline's EKS deploy action where nothing reads the deploy's variables",
)


PIPELINE = click.option(
    "--pipeline",
    "pipeline",
    required=True,
    envvar="CONVEYOR_AWS_PIPELINE",
    help="the CodePipeline name (or set CONVEYOR_AWS_PIPELINE)",
)
REGION = click.option("--region", help="default: the AWS CLI's configured region")


@aws_group.command("synth")
@click.argument("pipeline_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="write the template here (default: stdout)")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default=None,
    help="default: from the output's extension, else yaml",
)
@TARGET_ENV
@EKS_DEPLOY
def synth(
    pipeline_file: str,
    output: str | None,
    fmt: str | None,
    target_env: tuple[str, ...],
    eks_deploy: str,
) -> None:
    """Write the CloudFormation template of PIPELINE_FILE (same input, same bytes)."""
    from conveyor.aws.template import render

    synthesis, _ = _load_for_aws(pipeline_file, target_env, eks_deploy)
    fmt = fmt or ("json" if output and output.endswith(".json") else "yaml")
    _echo_warnings(synthesis.warnings)
    header = [
        "CloudFormation template of pipeline "
        f"'{synthesis.template['Metadata']['Conveyor']['pipeline']}', "
        f"generated by `conveyor aws synth {Path(pipeline_file).name}`: edit the pipeline file, "
        "not this.",
        "Deploy: conveyor aws deploy PIPELINE_FILE (change set, asks first), or "
        "aws cloudformation deploy --capabilities CAPABILITY_IAM --template-file THIS "
        "--stack-name NAME",
        *(["", "Notes:"] + [f"  {w}" for w in synthesis.warnings] if synthesis.warnings else []),
    ]
    _write(render(synthesis.template, fmt, header=header), output)


@aws_group.command("deploy")
@click.argument("pipeline_file", type=click.Path(dir_okay=False))
@click.option("--stack-name", help="default: conveyor-<pipeline name>")
@REGION
@click.option(
    "--parameter",
    "parameters",
    multiple=True,
    metavar="NAME=VALUE",
    help="a template parameter (e.g. TestEksClusterName=my-cluster)",
)
@click.option("--yes", is_flag=True, help="execute the change set without asking")
@TARGET_ENV
@EKS_DEPLOY
def deploy(
    pipeline_file: str,
    stack_name: str | None,
    region: str | None,
    parameters: tuple[str, ...],
    yes: bool,
    target_env: tuple[str, ...],
    eks_deploy: str,
) -> None:
    """Create or update the pipeline's stack through a change set, showing changes and events."""
    from conveyor.aws.operations import (
        Aws,
        Change,
        check_stack_name,
        stack_name_for,
    )

    synthesis, _ = _load_for_aws(pipeline_file, target_env, eks_deploy)
    _echo_warnings(synthesis.warnings)
    pname = synthesis.template["Metadata"]["Conveyor"]["pipeline"]
    stack = stack_name or stack_name_for(pname)
    check_stack_name(stack)
    from conveyor.cli._common import parse_pairs

    params = parse_pairs(parameters, "--parameter")
    unknown = sorted(set(params) - set(synthesis.template["Parameters"]))
    if unknown:
        raise ConfigError(
            f"--parameter {', '.join(unknown)}: not a parameter of the template (known: "
            f"{', '.join(synthesis.template['Parameters'])})"
        )
    body = json.dumps(synthesis.template, separators=(",", ":"))
    aws = Aws(region)

    def confirm(changes: list[Change]) -> bool:
        click.echo(f"change set for stack {stack} ({aws.region}): {len(changes)} change(s)")
        for c in changes:
            repl = (
                f" (replacement: {c.replacement})" if c.replacement and c.action == "Modify" else ""
            )
            click.echo(f"  {c.action:<7} {c.logical_id:<45} {c.resource_type}{repl}")
        if yes:
            return True
        if not sys.stdin.isatty():
            raise ConfigError("not a terminal, cannot ask: pass --yes to execute the change set")
        return click.confirm("execute this change set?", default=False)

    def on_event(ev: dict[str, Any]) -> None:
        reason = f"  {ev['ResourceStatusReason']}" if ev.get("ResourceStatusReason") else ""
        click.echo(
            f"{str(ev.get('Timestamp', ''))[:19]}  {ev.get('LogicalResourceId', ''):<45} "
            f"{ev.get('ResourceStatus', '')}{reason}"
        )

    final = aws.deploy(stack, body, params, confirm=confirm, on_event=on_event)
    if final == "CANCELLED":
        click.echo("not executed; change set deleted")
    elif final == "NO_CHANGES":
        click.echo(f"stack {stack}: no changes")
    else:
        click.echo(f"stack {stack}: {final}")


@aws_group.command("status")
@click.argument("execution", required=False)
@PIPELINE
@REGION
@click.option("--json", "as_json", is_flag=True)
def status(execution: str | None, pipeline: str, region: str | None, as_json: bool) -> None:
    """Show the pipeline's state on AWS (get_pipeline_state), or one EXECUTION's actions."""
    from conveyor.aws.operations import Aws, state_rows

    aws = Aws(region)
    if execution:
        data = aws.execution(pipeline, execution)
        rows = [
            {
                "stage": d.get("stageName", ""),
                "action": d.get("actionName", ""),
                "status": d.get("status", ""),
                "summary": str(
                    ((d.get("output") or {}).get("executionResult") or {}).get(
                        "externalExecutionSummary", ""
                    )
                ),
                "changed": str(d.get("lastUpdateTime", "")),
            }
            for d in data["actions"]
        ]
        title = f"{pipeline} execution {execution}: {data['execution'].get('status')}"
        if as_json:
            click.echo(
                json.dumps({"execution": data["execution"], "actions": rows}, indent=2, default=str)
            )
            return
    else:
        state = aws.pipeline_state(pipeline)
        rows = state_rows(state)
        title = f"{pipeline} (version {state.get('pipelineVersion', '?')})"
        if as_json:
            click.echo(json.dumps({"pipeline": pipeline, "stages": rows}, indent=2, default=str))
            return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("stage", "action", "status", "summary", "changed"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["stage"], r["action"], r["status"], r["summary"][:80], r["changed"][:19])
    Console(no_color=not sys.stdout.isatty()).print(table)


def _decide(approved: bool) -> click.Command:
    verb = "approve" if approved else "reject"

    @click.command(verb)
    @click.argument("execution", required=False)
    @PIPELINE
    @REGION
    @click.option("--comment", required=True, help="why (recorded by CodePipeline as the summary)")
    @click.option("--action", "action", help="the approval action, when several wait")
    def cmd(
        execution: str | None, pipeline: str, region: str | None, comment: str, action: str | None
    ) -> None:
        from conveyor.aws.operations import Aws

        done = Aws(region).decide(pipeline, approved, comment, execution=execution, action=action)
        click.echo(f"{verb}d {done['stage']}/{done['action']} of execution {done['execution']}")

    cmd.help = (
        f"{verb.capitalize()} the pending manual approval "
        "(its token is read from get_pipeline_state)."
    )
    return cmd


@aws_group.command("logs")
@click.argument("action")
@PIPELINE
@REGION
@click.option("--execution", help="a past execution (default: the action's latest run)")
@click.option("--build-id", help="read this CodeBuild build's logs directly")
def logs(
    action: str, pipeline: str, region: str | None, execution: str | None, build_id: str | None
) -> None:
    """Print the CodeBuild logs of ACTION (CloudWatch Logs)."""
    from conveyor.aws.operations import Aws

    aws = Aws(region)
    bid = build_id or aws.build_id_of(pipeline, action, execution)
    for line in aws.build_logs(bid):
        click.echo(line)


@aws_group.command("rehearse")
@click.argument("pipeline_file", type=click.Path(dir_okay=False, exists=True))
@TARGET_ENV
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="REPOSITORY=DIR",
    help="the directory of a source repository (default: DIR named like it beside the file)",
)
@click.option("--workdir", type=click.Path(file_okay=False), help="default: a temporary directory")
@click.option("--keep", is_flag=True, help="leave the local environments running afterwards")
@click.option(
    "--json", "as_json", is_flag=True, help="print the result as JSON (progress on stderr)"
)
def rehearse_cmd(
    pipeline_file: str,
    target_env: tuple[str, ...],
    sources: tuple[str, ...],
    workdir: str | None,
    keep: bool,
    as_json: bool,
) -> None:
    """Run the synthesized AWS pipeline's buildspecs here, in order, with aws/kubectl/crane
    faked; check the data flow and print every recorded fake call (exit 1 if it fails)."""
    import tempfile

    from conveyor.aws.rehearsal import default_targets, rehearse, render
    from conveyor.cli._common import parse_pairs
    from conveyor.spec.pipeline_file import load_pipeline

    targets = parse_pairs(
        target_env, "--target-env", "ENV=eks (e.g. --target-env test=eks)"
    ) or default_targets(load_pipeline(pipeline_file))
    # the FILE:LINE problems of synth, if any, before anything starts
    _load_for_aws(pipeline_file, tuple(f"{k}={v}" for k, v in targets.items()))
    dirs = {k: Path(v) for k, v in parse_pairs(sources, "--source", "REPOSITORY=DIR").items()}
    with tempfile.TemporaryDirectory(prefix="conveyor-rehearsal-") as tmp:
        result = rehearse(
            Path(pipeline_file),
            Path(workdir) if workdir else Path(tmp),
            targets=targets,
            sources=dirs,
            say=lambda m: click.echo(m, err=as_json),
            keep=keep,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for line in render(result):
            click.echo(line)
    if not result.succeeded:
        sys.exit(1)


@aws_group.command("prepare-cluster")
@click.option("--context", help="the kubeconfig context of the cluster (default: the current one)")
@click.option("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    required=True,
    help="a namespace the pipeline deploys to (repeat for each environment)",
)
def prepare_cluster_cmd(
    context: str | None, kubeconfig: str | None, namespaces: tuple[str, ...]
) -> None:
    """With your own credentials: create the namespaces the deploy roles may not create, and
    the Role that lets the Selenium and monitor projects port-forward there."""
    from conveyor.adapters.kubernetes import ClientKubernetesApi
    from conveyor.aws.cluster import prepare_cluster

    api = ClientKubernetesApi(context=context, kubeconfig=kubeconfig)
    prepare_cluster(api, namespaces, say=click.echo)


aws_group.add_command(_decide(True))
aws_group.add_command(_decide(False))


def register(cli: click.Group) -> None:
    """Add `import codepipeline`, `export codepipeline` and the `aws` group to the CLI."""
    for group in (import_group, export_group, aws_group):
        cli.add_command(group)
