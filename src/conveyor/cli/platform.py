"""`conveyor up | down | platform status` and `conveyor env list | history ENV`.

conveyor up                  start the registries and the health watcher (and restart
                             dead parts); idempotent; --watch-interval S (0: no watcher)
conveyor down                stop the registries, the front doors, the release pods and
                             the watcher
conveyor platform status     each part with its address and health (exit 3 if one is down)
conveyor env list            each environment: its health (from the watcher), what it
                             serves, since when, from which run
conveyor env history ENV     the environment's deployments, newest first
conveyor env diff ENV        what the next deploy would change (the API server's dry run
                             against what is live, per object; kubernetes/eks drivers)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from conveyor.cli._common import emit_json, json_option, ranged_option
from conveyor.errors import ConveyorError, Unavailable
from conveyor.service import queries
from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.store.records import DeploymentRecord


def _settings() -> Settings:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, Settings):
        return obj
    settings = getattr(obj, "settings", None)
    if isinstance(settings, Settings):
        return settings
    return Settings.from_env()


def _platform() -> Any:
    from conveyor.platform.local import LocalPlatform

    return LocalPlatform(_settings())


def _console() -> Console:
    """The CLI's one console: plain and as wide as the text off a terminal (full ids, URLs)."""
    from conveyor.cli._common import console

    c: Console = console()
    return c


def _fail(exc: ConveyorError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    raise SystemExit(exc.exit_code)


def _cut(text: str, n: int) -> str:
    """Short on a terminal, whole off it (`conveyor env list | cat` keeps full digests)."""
    return text[:n] if sys.stdout.isatty() else text


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _parts_table(parts: list[Any]) -> Table:
    table = Table(show_edge=False)
    for col in ("part", "address", "health", "detail"):
        table.add_column(col)
    for p in parts:
        table.add_row(p.name, p.address, "ok" if p.healthy else "DOWN", p.detail)
    return table


def _server_daemon(settings: Any) -> Any:
    from conveyor.platform.daemon import Daemon

    return Daemon(
        name="server",
        run_dir=settings.state_dir / "run",
        log_dir=settings.state_dir / "logs" / "platform",
        marker=f"conveyor server --home {settings.state_dir}",
    )


def _start_server(settings: Any) -> tuple[bool, str | None]:
    """Start `conveyor server` (API, dashboard and an engine) as a daemon unless it runs.
    Returns (started, the admin token when this first start created the admin)."""
    from conveyor.service.users import ensure_admin_in

    d = _server_daemon(settings)
    if d.pid() is not None:
        return False, None
    token = ensure_admin_in(settings)
    env = {
        **os.environ,
        "CONVEYOR_HOME": str(settings.state_dir),
        "CONVEYOR_DATABASE_URL": settings.database_url,
    }
    d.start(
        [sys.executable, "-m", "conveyor", "server", "--home", str(settings.state_dir)], env=env
    )
    return True, token


@click.command("up")
@ranged_option(
    "--watch-interval",
    30.0,
    click.FloatRange(min=0),
    "seconds between health checks of the deployed environments (0: no watcher)",
)
@click.option("--no-server", is_flag=True, help="do not start the dashboard/API server")
@json_option("print the parts as JSON")
def up(watch_interval: float, no_server: bool, as_json: bool) -> None:
    """Start the local platform: registries test/prod, the dashboard/API server with its engine,
    the health watcher (dead parts are restarted)."""
    from conveyor.platform.doctor import require

    try:
        require()  # a missing tool is named with its fix before anything starts (exit 3)
    except ConveyorError as exc:
        _fail(exc)
    platform = _platform()
    try:
        started = platform.up()
    except ConveyorError as exc:
        _fail(exc)
    token = None
    if not no_server:
        server_started, token = _start_server(platform.settings)
        if server_started:
            started.append(f"server and engine on {platform.settings.server_url}")
    if watch_interval > 0:
        from conveyor.monitoring.watcher import start_daemon

        if start_daemon(platform.settings, watch_interval):
            started.append(f"health watcher (every {watch_interval:g} s)")
    if token and not as_json:
        _console().print(
            f"created user 'admin'; its token, shown once (sign in on "
            f"{platform.settings.server_url}/login):\n  {token}"
        )
    parts = platform.status()
    if as_json:
        click.echo(
            json.dumps({"started": started, "parts": [p.as_dict() for p in parts]}, indent=2)
        )
        return
    console = _console()
    for s in started:
        console.print(f"started {s}")
    if not started:
        console.print("the local platform is already up")
    console.print(_parts_table(parts))


@click.command("down")
@click.option("--keep", is_flag=True, help="stop the release pods but keep them (default: remove)")
@json_option("print what was stopped as JSON")
def down(keep: bool, as_json: bool) -> None:
    """Stop the local platform: registries, front doors; remove the release pods it created
    (--keep: stop them only). Data is kept."""
    platform = _platform()
    try:
        stopped = platform.down(keep=keep)
    except ConveyorError as exc:
        _fail(exc)
    from conveyor.monitoring.watcher import stop_daemon

    if stop_daemon(platform.settings):
        stopped.append("health watcher")
    if _server_daemon(platform.settings).stop():
        stopped.append("server")
    if as_json:
        click.echo(json.dumps({"stopped": stopped}, indent=2))
        return
    for s in stopped:
        click.echo(f"stopped {s}")
    if not stopped:
        click.echo("nothing was running")


@click.group("platform")
def platform_group() -> None:
    """The local platform's parts."""


@platform_group.command("status")
@json_option("print the parts as JSON")
def platform_status(as_json: bool) -> None:
    """Each part of the local platform with its address and health (exit 3 if one is down)."""
    parts = _platform().status()
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in parts], indent=2))
    else:
        _console().print(_parts_table(parts))
    if any(not p.healthy for p in parts):
        raise SystemExit(Unavailable.exit_code)


def _store() -> Any:
    from conveyor.service.commands import open_store

    return open_store(_settings())


@click.group("env")
def env_group() -> None:
    """Deployment environments and their history."""


@env_group.command("list")
@json_option()
def env_list(as_json: bool) -> None:
    """Each environment: the digest it serves, its URL, when and from which execution."""
    try:
        store = _store()
        current = queries.current_deployments(store)
        health = queries.health(store)
    except ConveyorError as exc:
        _fail(exc)
    rows = [_deployment_row(d) for _, d in sorted(current.items())]
    for r in rows:
        h = health.get(r["environment"])
        r["health"] = queries.health_view(h) if h else None
    _print_deployments(
        rows,
        as_json,
        ("environment", "health", "digest", "url", "deployed", "execution", "commit", "by"),
        "no deployment yet",
    )


@env_group.command("history")
@click.argument("environment")
@click.option("--limit", default=50, show_default=True, help="how many deployments")
@json_option()
def env_history(environment: str, limit: int, as_json: bool) -> None:
    """The deployments of ENVIRONMENT, newest first."""
    try:
        found = queries.deployments(_store(), environment, limit)
        rows = [_deployment_row(d) for d in found]
    except ConveyorError as exc:
        _fail(exc)
    _print_deployments(
        rows,
        as_json,
        ("when", "kind", "digest", "previous", "execution", "commit", "by"),
        f"no deployment to '{environment}' yet",
    )


@env_group.command("diff")
@click.argument("environment")
@click.option(
    "--file",
    "pipeline_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="the pipeline file defining ENVIRONMENT (default: the stored pipeline that deploys it)",
)
@click.option(
    "--manifests",
    default=None,
    help="manifests file or directory, from the current directory (default: the deploy "
    "action's `manifests`, else k8s/)",
)
@click.option(
    "--image",
    default=None,
    help="the image to deploy (default: the image ENVIRONMENT runs now)",
)
@json_option("print the changes as JSON")
def env_diff(
    environment: str,
    pipeline_file: str | None,
    manifests: str | None,
    image: str | None,
    as_json: bool,
) -> None:
    """What the next deploy to ENVIRONMENT would change, from the API server's dry run.

    Per object: created, updated (a unified diff of YAML, live -> release, without status
    and managed fields) or unchanged. Exit 0: no change; 1: changes; 2: the manifests are
    refused; 3: the cluster does not answer.
    """
    from pathlib import Path

    from conveyor.actions.deploy import diff_release
    from conveyor.errors import ActionError, ActionFailed, ConfigError

    env, action_config, current = _environment_for_diff(
        environment, pipeline_file, need_current=image is None
    )
    image = image or (current.image if current else None)
    if not image:
        raise ConfigError(
            f"nothing was deployed to '{environment}' yet: give the image to compare with "
            "--image host/repo@sha256:..."
        )
    notes: list[str] = []
    try:
        diffs = diff_release(
            env,
            Path.cwd(),
            manifests or str(action_config.get("manifests") or "k8s/"),
            str(image),
            container=action_config.get("container"),
            log=notes.append,
        )
    except ActionFailed as exc:
        raise ConfigError(exc.message) from exc
    except ActionError as exc:
        raise Unavailable(exc.message) from exc
    changed = [d for d in diffs if d.change != "unchanged"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "environment": environment,
                    "namespace": env.namespace or env.name,
                    "image": image,
                    "changes": len(changed),
                    "objects": [
                        {"object": d.ref, "where": d.where, "change": d.change, "diff": d.diff}
                        for d in diffs
                    ],
                },
                indent=2,
            )
        )
    else:
        for note in notes:
            click.echo(note, err=True)
        for d in diffs:
            click.echo(f"{d.ref} ({d.where}): {d.change}")
            if d.diff:
                click.echo(d.diff, nl=not d.diff.endswith("\n"))
        click.echo(
            f"{len(changed)} of {len(diffs)} object(s) would change in namespace "
            f"{env.namespace or env.name}"
        )
    raise SystemExit(1 if changed else 0)


def _environment_for_diff(
    name: str, pipeline_file: str | None, need_current: bool
) -> tuple[Any, dict[str, Any], DeploymentRecord | None]:
    """The environment's definition, the config of the action deploying to it, and what
    runs there now. The store is opened only when it is needed (no --file, or no --image)."""
    from conveyor.errors import NotFound
    from conveyor.service.queries import pipeline_of
    from conveyor.spec.pipeline_file import load_pipeline

    current: DeploymentRecord | None = None
    pipeline: Any = None
    if pipeline_file is None or need_current:
        store = _store()
        current = queries.current_deployments(store).get(name)
        if pipeline_file is None:
            mine = [
                r
                for r in queries.pipelines(store)
                if name in (r.definition.get("environments") or {})
            ]
            if current is not None:
                mine.sort(key=lambda r: r.name != current.pipeline)
            if mine:
                pipeline = pipeline_of(mine[0].definition, mine[0].name)
    if pipeline_file is not None:
        pipeline = load_pipeline(pipeline_file)
    if pipeline is None or name not in pipeline.environments:
        where = pipeline_file or "the stored pipelines"
        raise NotFound(f"no environment '{name}' in {where}; give the pipeline file with --file")
    config: dict[str, Any] = {}
    for _, action in pipeline.all_actions():
        if action.environment == name and action.type == "deploy":
            config = dict(action.config)
            break
    return pipeline.environments[name], config, current


def _deployment_row(d: DeploymentRecord) -> dict[str, Any]:
    return {
        "environment": d.environment,
        "kind": d.kind or "deploy",
        "image": d.image,
        "digest": d.digest,
        "url": d.url,
        "previous_digest": (d.details or {}).get("previous_digest"),
        "execution_id": d.execution_id,
        "pipeline": d.pipeline,
        "commit": d.commit,
        "actor": d.actor,
        "at": d.at,
    }


def _health_cell(r: dict[str, Any]) -> str:
    h = r["health"]
    if not h:
        return "-"
    return "ok" if h["healthy"] else f"UNHEALTHY since {_when(h['since'])}: {h['detail']}"


# how each column of `env list` and `env history` shows a `_deployment_row`
_DEPLOYMENT_CELLS: dict[str, Callable[[dict[str, Any]], str]] = {
    "environment": lambda r: str(r["environment"]),
    "health": _health_cell,
    "when": lambda r: _when(r["at"]),
    "deployed": lambda r: _when(r["at"]),
    "kind": lambda r: str(r["kind"]),
    "digest": lambda r: _cut(r["digest"] or "-", 19),
    "previous": lambda r: _cut(r["previous_digest"] or "-", 19),
    "url": lambda r: str(r["url"] or "-"),
    "execution": lambda r: str(r["execution_id"] or "-"),
    "commit": lambda r: _cut(r["commit"] or "-", 10),
    "by": lambda r: str(r["actor"] or "-"),
}


def _print_deployments(
    rows: list[dict[str, Any]], as_json: bool, columns: Sequence[str], empty: str
) -> None:
    """Deployment rows as JSON, or as a table of `columns`, or the `empty` line."""
    if as_json:
        emit_json(rows)
    elif not rows:
        click.echo(empty)
    else:
        _console().print(_deployments_table(rows, columns))


def _deployments_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> Table:
    table = Table(show_edge=False)
    for col in columns:
        table.add_column(col)
    for r in rows:
        table.add_row(*(_DEPLOYMENT_CELLS[col](r) for col in columns))
    return table


def register(cli: click.Group) -> None:
    """Add `up`, `down`, `platform status` and `env list|history|diff` to the `conveyor` group."""
    cli.add_command(up)
    cli.add_command(down)
    cli.add_command(platform_group)
    cli.add_command(env_group)
