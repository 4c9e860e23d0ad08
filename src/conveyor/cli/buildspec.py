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
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.actions.buildspec_runner import BuildResult, run_buildspec
from conveyor.errors import ConveyorError, ValidationFailed
from conveyor.settings import Settings
from conveyor.spec.buildspec import load_buildspec


@click.group("buildspec")
def buildspec_group() -> None:
    """Check and run CodeBuild buildspec files locally."""


@buildspec_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
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
        click.echo(json.dumps({"valid": True, "problems": []}))
    else:
        phases = ", ".join(p.name for p in spec.phases) or "none"
        extra = f"; batch {spec.batch.kind} of {len(spec.batch.builds)}" if spec.batch else ""
        click.echo(f"{file}: valid buildspec {spec.version} (phases: {phases}{extra})")


def _sources(values: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for i, v in enumerate(values):
        name, sep, path = v.partition("=")
        if not sep or "/" in name or not name:
            name, path = ("src" if i == 0 else f"src{i + 1}"), v
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
    required=True,
    help="Source directory; the first is primary. Secondary: NAME=DIR (CODEBUILD_SRC_DIR_NAME).",
)
@click.option(
    "--env", "envs", multiple=True, help="NAME=VALUE, overriding the buildspec's variables."
)
@click.option("--image", default=None, help="Run the commands in this container image (podman).")
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
    "--json", "as_json", is_flag=True, help="Print the summary as JSON (the log goes to stderr)."
)
def run_cmd(
    file: Path,
    sources: tuple[str, ...],
    envs: tuple[str, ...],
    image: str | None,
    workdir: Path | None,
    secrets_file: Path | None,
    as_json: bool,
) -> None:
    """Run the buildspec FILE against --source directories, like CodeBuild's local agent."""
    settings = Settings.from_env()
    srcs = _sources(sources)
    from conveyor.cli.main import parse_pairs

    env = parse_pairs(envs, "--env")
    try:
        spec = load_buildspec(file)
    except ValidationFailed as e:
        for p in e.problems:
            click.echo(str(p), err=True)
        sys.exit(2)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = workdir or settings.state_dir / "builds" / f"{stamp}-{file.stem}"
    key = re.sub(
        r"[^A-Za-z0-9_.-]+", "_", f"cli-{file.resolve()}-{next(iter(srcs.values())).resolve()}"
    )[-120:]
    out = sys.stderr if as_json else sys.stdout

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
            secrets_file=secrets_file or settings.secrets_file,
            image=image,
            state_dir=settings.state_dir,
            project=file.stem,
            initiator="conveyor-cli",
        )
    except KeyboardInterrupt:
        cancel.set()
        click.echo("interrupted", err=True)
        sys.exit(130)
    except ConveyorError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(e.exit_code)
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    else:
        render_summary(result, Console(file=sys.stdout))
    sys.exit(0 if result.succeeded else 1)


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
