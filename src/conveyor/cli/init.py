"""`conveyor init`: a pipeline file to start from, or (with --app) every file an existing
project needs, fitted to it; and the next step `repo create` / `pipeline apply` print."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from conveyor.cli._common import ranged_option
from conveyor.errors import ConfigError


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option(
    "--app",
    "app_dir",
    type=click.Path(file_okay=False),
    help="an existing app (package.json, angular.json): write its buildspec, Containerfile, "
    "k8s manifests and pipeline.yaml into it",
)
@click.option(
    "--tests",
    "tests_dir",
    type=click.Path(file_okay=False),
    help="its end-to-end suite (pytest + Selenium, Playwright for Python): write its buildspec",
)
@click.option("--name", help="the pipeline, image repository and git repositories' name")
@click.option("--project", help="the angular.json project, when the workspace has several")
@click.option("--apply", "apply", is_flag=True, help="also apply the JUnit reporter set-up")
@ranged_option(
    "--test-port", 8081, click.IntRange(1, 65535), "the test environment's port on this machine"
)
@ranged_option(
    "--prod-port", 8080, click.IntRange(1, 65535), "the prod environment's port on this machine"
)
@click.option("--force", is_flag=True, help="overwrite existing files")
def init(
    directory: str,
    app_dir: str | None,
    tests_dir: str | None,
    name: str | None,
    project: str | None,
    apply: bool,
    test_port: int,
    prod_port: int,
    force: bool,
) -> None:
    """Write pipeline.yaml with the seed's six stages into DIRECTORY; with --app, the files
    that take an existing app (and --tests, its end-to-end suite) through Conveyor."""
    if app_dir is None:
        for flag, value in (("--tests", tests_dir), ("--name", name), ("--project", project)):
            if value:
                raise ConfigError(f"{flag} goes with --app DIR (the app to take through Conveyor)")
        _example(Path(directory), force)
        return
    from conveyor.scaffold import project as scaffold
    from conveyor.scaffold.templates import Ports

    plan = scaffold.plan(
        Path(app_dir),
        Path(tests_dir) if tests_dir else None,
        name=name,
        project=project,
        ports=Ports(test_port, prod_port),
        lock=apply,
    )
    written = scaffold.write(plan, force=force, apply=apply)
    app, tests = plan.app, plan.tests
    runner = {"karma": "Karma", "jest": "Jest", "vitest": "Vitest"}[app.runner]
    click.echo(
        f"{app.root}: {app.kind} app '{app.name}', unit tests with {runner}, "
        f"build output {app.output_dir}/"
        + (f"; {tests.root}: {tests.label} suite" if tests else "")
    )
    for path in written:
        click.echo(f"wrote {path}")
    if plan.reporter:
        diff = "".join(
            c.diff(app.root) if c.path.name != "package-lock.json" else "" for c in plan.reporter
        )
        if apply:
            click.echo(f"applied the JUnit reporter set-up for {runner}:")
        else:
            click.echo(
                f"{runner} needs a JUnit reporter for the unit-test report; this set-up is "
                "NOT applied (run init again with --apply, or apply it by hand):"
            )
        click.echo(diff.rstrip("\n"))
        if any(c.path.name == "package.json" for c in plan.reporter):
            click.echo(
                "(package-lock.json: "
                + ("updated" if apply else "to update")
                + " with `npm install --package-lock-only`)"
            )
    pipeline_file = app.root / "pipeline.yaml"
    repos = f"conveyor repo create {plan.name}" + (
        f" && conveyor repo create {plan.name}-e2e" if tests else ""
    )
    click.echo("next:")
    click.echo("  conveyor up")
    click.echo(f"  {repos}")
    click.echo(f"  conveyor pipeline apply {pipeline_file}")


def _example(directory: Path, force: bool) -> None:
    target = directory / "pipeline.yaml"
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists (use --force to overwrite)")
    from importlib import resources

    target.parent.mkdir(parents=True, exist_ok=True)
    text = resources.files("conveyor").joinpath("templates/pipeline.yaml").read_text()
    target.write_text(text)
    click.echo(
        f"wrote {target}: 6 stages (Source, Build, DeployToEKS, RunSeleniumTest, "
        "DeployToEKSProdApproval, DeployToEKSProd); check it with `conveyor validate "
        f"{target}`"
    )


# ---- the next step, printed by `repo create` and `pipeline apply` --------------------------------


def git_sources(definition: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(action, repository, branch) of each source.git action of a pipeline definition."""
    out = []
    for stage in definition.get("stages") or []:
        for action in stage.get("actions") or []:
            if action.get("type") == "source.git":
                cfg = action.get("config") or {}
                out.append(
                    (
                        str(action.get("name")),
                        str(cfg.get("repository")),
                        str(cfg.get("branch") or "main"),
                    )
                )
    return out


def next_after_apply(definition: Mapping[str, Any], existing_repos: Iterable[str]) -> list[str]:
    """What to do after `pipeline apply`: create the repositories it reads, then push the
    others first and the triggering one last (its push starts the run)."""
    have = set(existing_repos)
    sources = git_sources(definition)
    missing = [repo for _, repo, _ in sources if repo not in have and "/" not in repo]
    if missing:
        return [f"next: conveyor repo create {r}" for r in dict.fromkeys(missing)]
    triggering = {str(t.get("source")) for t in definition.get("triggers") or []}
    ordered = sorted(sources, key=lambda s: s[0] in triggering)
    lines = []
    for action, repo, branch in ordered:
        starts = " (starts a run)" if action in triggering else ""
        lines.append(
            f"next: push {branch} to the repository {repo}{starts}: "
            f"git push conveyor {branch} (in its clone)"
        )
    return lines


def next_after_create(name: str, definitions: Iterable[Mapping[str, Any]]) -> str | None:
    """After `repo create NAME`, when no applied pipeline reads it: apply one first."""
    if any(repo == name for d in definitions for _, repo, _ in git_sources(d)):
        return None
    return (
        f"next: conveyor pipeline apply FILE (no applied pipeline reads {name} yet: apply it "
        "before the push, or the push starts nothing)"
    )
