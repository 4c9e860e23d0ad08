"""`conveyor buildspec validate FILE` and `conveyor buildspec run FILE --source DIR ...`.

`run` works like CodeBuild's local agent: the sources are copied into a fresh work
directory (`--workdir`, default a new folder under `<state dir>/builds/`), commands run on
the host (or in `--image` with podman), the live log is printed, then a summary: each phase
with its status and duration, exported variables, collected artifacts with their paths,
and report totals per report group. Exit 0 when the build succeeded, 1 when it failed,
2 for a bad buildspec or flag, 3 when podman or the image is missing.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.adapters import git
from conveyor.buildspec.container import wants_container
from conveyor.buildspec.result import BuildResult
from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.spec import load_buildspec
from conveyor.cli._common import json_option
from conveyor.errors import ConfigError, ConveyorError, NotFound, Unavailable, ValidationFailed
from conveyor.model.pipeline import Pipeline
from conveyor.settings import Settings


@click.group("buildspec")
def buildspec_group() -> None:
    """Check and run CodeBuild buildspec files locally."""


@buildspec_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option("Print the problems as JSON.")
def validate_cmd(file: Path, as_json: bool) -> None:
    """Check FILE; print every problem as FILE:LINE: message (exit 0 valid, 2 invalid)."""
    try:
        spec = load_buildspec(file)
    except ValidationFailed as e:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "valid": False,
                        "problems": [
                            {"file": p.file, "line": p.line, "message": p.message}
                            for p in e.problems
                        ],
                    },
                    indent=2,
                )
            )
        else:
            for p in e.problems:
                click.echo(str(p), err=True)
        sys.exit(2)
    if as_json:
        warnings = [{"file": w.file, "line": w.line, "message": w.message} for w in spec.warnings]
        click.echo(json.dumps({"valid": True, "problems": [], "warnings": warnings}))
    else:
        for w in spec.warnings:
            click.echo(str(w), err=True)
        phases = ", ".join(p.name for p in spec.phases) or "none"
        extra = f"; batch {spec.batch.kind} of {len(spec.batch.builds)}" if spec.batch else ""
        click.echo(f"{file}: valid buildspec {spec.version} (phases: {phases}{extra})")


def _sources(values: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for i, v in enumerate(values):
        name, sep, path = v.partition("=")
        if not sep or "/" in name or not name:
            if i > 0:
                raise click.BadParameter(
                    f"{v}: a secondary source needs a name: --source NAME={v} "
                    "(the buildspec reads it as $CODEBUILD_SRC_DIR_NAME)",
                    param_hint="--source",
                )
            name, path = "src", v
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise click.BadParameter(
                f"source name {name!r}: use letters, digits and _", param_hint="--source"
            )
        p = Path(path)
        if not p.is_dir():
            raise click.BadParameter(f"{path}: not a directory", param_hint="--source")
        if name in out:
            raise click.BadParameter(f"source {name!r} given twice", param_hint="--source")
        out[name] = p
    return out


@buildspec_group.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="Source directory; the first is primary. Secondary: NAME=DIR (CODEBUILD_SRC_DIR_NAME).",
)
@click.option(
    "--env", "envs", multiple=True, help="NAME=VALUE, overriding the buildspec's variables."
)
@click.option(
    "--image",
    default=None,
    help="Run every phase in this container image (podman); the host's podman is reachable "
    "inside through its socket (CONTAINER_HOST).",
)
@click.option(
    "--host",
    "on_host",
    is_flag=True,
    help="Run on this machine (the default; the same as --image host).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Work directory (default: a new one under the state dir).",
)
@click.option(
    "--secrets-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="NAME=VALUE lines for parameter-store / secrets-manager (default: the state dir's).",
)
@click.option(
    "--environment",
    default=None,
    help="Give the build the variables a pipeline Build gets for this environment "
    "(REGISTRY_HOST, REPOSITORY_URI, CONTAINER_RUNTIME, CONTAINERS_CONF, IMAGE_TAG...); "
    "needs the platform up (`conveyor up`).",
)
@click.option(
    "--pipeline",
    "pipeline_ref",
    default=None,
    help="With --environment: the registered pipeline (or pipeline file) whose environment "
    "it is (default: the only registered pipeline that has it).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON (the log goes to stderr)."
)
def run_cmd(**options: Any) -> None:
    """Run the buildspec FILE against --source directories, like CodeBuild's local agent."""
    opts = _RunOptions(**options)
    try:
        _run(opts)
    except click.ClickException as e:
        if not opts.as_json:
            raise
        _json_error("usage", e.format_message(), 2)
    except ValidationFailed as e:
        if not opts.as_json:
            for p in e.problems:
                click.echo(str(p), err=True)
            sys.exit(2)
        _json_error(e.code, str(e), 2, problems=[str(p) for p in e.problems])
    except ConveyorError as e:
        if not opts.as_json:
            click.echo(f"error: {e.message}", err=True)
            sys.exit(e.exit_code)
        _json_error(e.code, e.message, e.exit_code)


@dataclass(frozen=True)
class _RunOptions:
    """The arguments and options of `conveyor buildspec run`."""

    file: Path
    sources: tuple[str, ...]
    envs: tuple[str, ...]
    image: str | None
    on_host: bool
    workdir: Path | None
    secrets_file: Path | None
    environment: str | None
    pipeline_ref: str | None
    as_json: bool


def _json_error(code: str, message: str, exit_code: int, **extra: object) -> None:
    """An error as JSON on stdout (`{"error": {"code", "message"}}`, as the API's)."""
    click.echo(json.dumps({"error": {"code": code, "message": message, **extra}}, indent=2))
    sys.exit(exit_code)


def _run(o: _RunOptions) -> None:
    settings = Settings.from_env()
    if o.on_host and wants_container(o.image):
        raise click.UsageError("--host and --image IMAGE contradict each other: give one")
    if not o.sources:
        raise click.UsageError("Missing option '--source' (the directory to build)")
    srcs = _sources(o.sources)
    from conveyor.cli.main import parse_pairs

    given = parse_pairs(o.envs, "--env")
    spec = load_buildspec(o.file)
    revision = git.commit_of(next(iter(srcs.values())), "HEAD") or ""
    env: dict[str, str] = {}
    if o.environment:
        env.update(
            _platform_env(
                settings, o.environment, o.pipeline_ref, revision, not wants_container(o.image)
            )
        )
    env.update(given)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = o.workdir or settings.state_dir / "builds" / f"{stamp}-{o.file.stem}"
    key = re.sub(
        r"[^A-Za-z0-9_.-]+", "_", f"cli-{o.file.resolve()}-{next(iter(srcs.values())).resolve()}"
    )[-120:]
    out = sys.stderr if o.as_json else sys.stdout

    def log(text: str) -> None:
        out.write(text)
        out.flush()

    cancel = threading.Event()
    try:
        result = run_buildspec(
            spec,
            srcs,
            env,
            workdir,
            log,
            cancel,
            None,
            cache_dir=settings.state_dir / "cache" / key,
            secrets_file=o.secrets_file or settings.secrets_file,
            image=o.image,
            state_dir=settings.state_dir,
            project=o.file.stem,
            initiator="conveyor-cli",
            resolved_source_version=revision,
        )
    except KeyboardInterrupt:
        cancel.set()
        click.echo("interrupted", err=True)
        sys.exit(130)
    if o.as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    else:
        render_summary(result, Console(file=sys.stdout))
    sys.exit(0 if result.succeeded else 1)


def _platform_env(
    settings: Settings, environment: str, pipeline_ref: str | None, revision: str, on_host: bool
) -> dict[str, str]:
    """What the pipeline's `build` action would give the buildspec for `environment`."""
    from conveyor.actions.build import build_environment
    from conveyor.bootstrap import platform_for

    pipeline = _pipeline_with(settings, environment, pipeline_ref)
    platform: Any = platform_for(settings)
    if platform is None:
        raise Unavailable("--environment needs the local platform, which is not installed")
    env_spec = pipeline.environments[environment]
    host = platform.environment_registry(env_spec)
    down = [
        p for p in platform.status() if p.kind == "registry" and p.address == host and not p.healthy
    ]
    if down:
        raise Unavailable(
            f"--environment {environment}: registry {down[0].name} at {host} is not up "
            f"({down[0].detail}); start the platform with `conveyor up`"
        )
    return build_environment(
        platform, pipeline, environment=environment, revision=revision, on_host=on_host
    )


def _pipeline_with(settings: Settings, environment: str, ref: str | None) -> Pipeline:
    """The pipeline `--pipeline` names (registered name or file), else the only registered
    pipeline that has the environment."""
    from conveyor.service.queries import pipeline_of, stored_pipelines
    from conveyor.spec.pipeline_file import load_pipeline

    if ref and Path(ref).is_file():
        pipeline = load_pipeline(Path(ref))
    else:
        rows = stored_pipelines(settings)
        known = {r.name: pipeline_of(r.definition, r.name) for r in rows}
        if ref:
            if ref not in known:
                raise NotFound(
                    f"--pipeline {ref}: no such file or registered pipeline "
                    f"(registered: {', '.join(sorted(known)) or 'none'})"
                )
            pipeline = known[ref]
        else:
            having = [p for p in known.values() if environment in p.environments]
            if len(having) != 1:
                raise ConfigError(
                    f"--environment {environment}: "
                    + (
                        "no registered pipeline has it"
                        if not having
                        else "several pipelines have it ("
                        + ", ".join(sorted(p.name for p in having))
                        + ")"
                    )
                    + ": name one with --pipeline NAME|FILE"
                )
            pipeline = having[0]
    if environment not in pipeline.environments:
        raise ConfigError(
            f"--environment {environment}: pipeline '{pipeline.name}' has no such environment "
            f"(environments: {', '.join(sorted(pipeline.environments)) or 'none'})"
        )
    return pipeline


_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "SKIPPED": "dim",
    "STOPPED": "yellow",
    "TIMED_OUT": "red",
}


def render_summary(result: BuildResult, console: Console) -> None:
    """The summary table printed after a build (plain text when not a terminal)."""
    console.print()
    t = Table(title=f"Build {result.build_id}")
    t.add_column("phase")
    t.add_column("status")
    t.add_column("duration", justify="right")
    t.add_column("detail")
    for p in result.phases:
        st = _STYLE.get(p.status, "")
        detail = p.message + (f" (attempts: {p.attempts})" if p.attempts > 1 else "")
        t.add_row(
            p.name,
            f"[{st}]{p.status}[/{st}]" if st else p.status,
            f"{p.duration:.2f}s",
            escape(detail),
        )
    console.print(t)
    if result.exported:
        console.print("[bold]Exported variables[/bold]")
        for k, v in result.exported.items():
            console.print(f"  {k}={v}", markup=False)
    if result.artifacts:
        console.print("[bold]Artifacts[/bold]")
        for a in result.artifacts:
            name = f" ({a.name})" if a.name else ""
            console.print(
                f"  {a.identifier}{name}: {len(a.files)} file(s) in {a.path}", markup=False
            )
    if result.reports:
        console.print("[bold]Reports[/bold]")
        for r in result.reports:
            console.print(
                f"  {r.name} [{r.format}]: {r.total} tests, {r.passed} passed, {r.failed} failed, "
                f"{r.errors} errors, {r.skipped} skipped",
                markup=False,
            )
            for f in r.failures[:10]:
                console.print(
                    f"    x {f.get('suite', '')} {f.get('name', '')}: {f.get('message', '')}",
                    markup=False,
                )
    for w in result.warnings:
        console.print(f"warning: {w}", markup=False)
    verdict = (
        "[green]SUCCEEDED[/green]"
        if result.succeeded
        else f"[red]FAILED[/red]: {escape(result.message)}"
    )
    console.print(f"Build {verdict}")
    console.print(f"Log: {result.log_path}", markup=False)


def register(cli: click.Group) -> None:
    """Add `buildspec validate` and `buildspec run` to the main command."""
    cli.add_command(buildspec_group)
