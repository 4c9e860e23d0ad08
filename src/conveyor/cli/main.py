"""`conveyor VERB NOUN`: the core commands (pipelines, executions, repos) and the wiring of the
other areas' commands. Exit codes: 0 ok, 1 the pipeline failed, 2 usage or configuration
error, 3 a component is unavailable.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from conveyor import __version__
from conveyor.cli._common import app as _app
from conveyor.cli._common import console, emit_json, json_option, load_file
from conveyor.cli._common import parse_pairs as parse_pairs  # cli/buildspec.py imports it here
from conveyor.cli._common import reader as _reader
from conveyor.cli._common import user as _user
from conveyor.errors import ConfigError, ConveyorError, Unavailable, ValidationFailed
from conveyor.model.status import ActionStatus, ApprovalStatus, ExecutionStatus
from conveyor.service import commands, queries

# The other areas' commands, imported only when one runs: `conveyor --help` lists them from
# this table without importing anything. A new command is one line here:
#     "NAME": ("conveyor.cli.MODULE:ATTRIBUTE", "the one line `conveyor --help` shows"),
# (a subcommand of an existing group, like `aws rehearse` or `env diff`, needs no line).
COMMANDS: dict[str, tuple[str, str]] = {
    "approve": ("conveyor.cli.server:approve_cmd", "Approve the pending approval of EXECUTION."),
    "audit": ("conveyor.cli.server:audit_cmd", "Every change made through the API, the dashboard or the CLI."),
    "aws": ("conveyor.cli.aws:aws_group", "Run the same pipeline on AWS: synthesize, deploy, operate."),
    "buildspec": ("conveyor.cli.buildspec:buildspec_group", "Check and run CodeBuild buildspec files locally."),
    "demo": ("conveyor.cli.demo:demo", "Run the seed pipeline end to end on the example app."),
    "doctor": ("conveyor.cli.doctor:doctor_cmd", "Check every tool Conveyor and the example need, with the fix."),
    "down": ("conveyor.cli.platform:down", "Stop the local platform: registries, front doors, release pods."),
    "env": ("conveyor.cli.platform:env_group", "Deployment environments and their history."),
    "export": ("conveyor.cli.aws:export_group", "Convert a Conveyor pipeline file into another CI/CD definition."),
    "images": ("conveyor.cli.images:images_group", "Local base images built from Debian packages (web, build)."),
    "import": ("conveyor.cli.aws:import_group", "Convert other CI/CD definitions into a Conveyor pipeline file."),
    "init": ("conveyor.cli.init:init", "Write a pipeline file; with --app, the files your app needs."),
    "metrics": ("conveyor.cli.monitor:metrics", "The four DORA measures of the deployments."),
    "monitor": ("conveyor.cli.monitor:monitor_group", "Continuous monitoring of the deployed environments."),
    "platform": ("conveyor.cli.platform:platform_group", "The local platform's parts."),
    "reject": ("conveyor.cli.server:reject_cmd", "Reject the pending approval of EXECUTION."),
    "rollback": ("conveyor.cli.monitor:rollback", "Roll ENVIRONMENT back to a previous digest (no rebuild)."),
    "server": ("conveyor.cli.server:server_cmd", "Serve the dashboard and REST API (with an engine loop)."),
    "up": ("conveyor.cli.platform:up", "Start the local platform: registries, server, health watcher."),
    "user": ("conveyor.cli.server:user_group", "Users of the dashboard and API, their roles and tokens."),
}  # fmt: skip


class ConveyorGroup(click.Group):
    """The root group: loads the commands of `COMMANDS` on first use (click's lazy group) and
    turns ConveyorError into one clear line (or one per problem) and its exit code; with
    `--json` anywhere on the command line, into `{"error": {"code", "message"}}` on stdout."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str) -> click.Command:
        target = self.lazy[name][0]
        module, _, attr = target.partition(":")
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except Exception as e:  # noqa: BLE001 - one broken area must not take the CLI down
            raise Unavailable(
                f"the '{name}' command failed to load ({type(e).__name__}: {e}); "
                "the other commands work"
            ) from None
        if not isinstance(cmd, click.Command):
            raise TypeError(f"COMMANDS['{name}']: {target} is not a click command")
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`, without importing the lazy ones."""
        names = [
            n for n in self.list_commands(ctx) if n in self.lazy or not self.commands[n].hidden
        ]
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            rows.append((name, cmd.get_short_help_str(limit) if cmd else self.lazy[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["conveyor.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get("conveyor.json"))
        try:
            return super().invoke(ctx)
        except ValidationFailed as e:
            if as_json:
                _json_error(e.code, e.message, problems=[p.__dict__ for p in e.problems])
                ctx.exit(e.exit_code)
            for p in e.problems:
                click.echo(str(p), err=True)
            click.echo(f"{len(e.problems)} problem(s) found", err=True)
            ctx.exit(e.exit_code)
        except ConveyorError as e:
            if as_json:
                _json_error(e.code, e.message)
            else:
                click.echo(f"error: {e.message}", err=True)
            ctx.exit(e.exit_code)
        except click.ClickException as e:
            if not as_json:
                raise
            _json_error("usage" if isinstance(e, click.UsageError) else "error", e.format_message())
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _json_error(code: str, message: str, **extra: Any) -> None:
    """An error as the REST API shows it, on stdout where a `--json` reader looks."""
    emit_json({"error": {"code": code, "message": message, **extra}})


@click.group(cls=ConveyorGroup, lazy=COMMANDS)
@click.version_option(__version__, prog_name="conveyor")
def cli() -> None:
    """Conveyor: one pipeline definition, run on this machine with real components or on AWS."""


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def validate(file: str, as_json: bool) -> None:
    """Check a pipeline file; print every problem as FILE:LINE: message, and warnings (a
    pipeline variable no action reads) as `warning: FILE:LINE: message` (exit 0)."""
    from conveyor.model.validate import warnings as unused_variables
    from conveyor.spec.yamlfile import load

    try:
        pipeline, _ = load_file(file)
    except ValidationFailed as e:
        if as_json:
            emit_json({"valid": False, "problems": [p.__dict__ for p in e.problems]})
            sys.exit(2)
        raise
    _, lines = load(file)
    found = [lines.problem(w.path, w.message) for w in unused_variables(pipeline)]
    n = sum(len(s.actions) for s in pipeline.stages)
    from conveyor.spec.pipeline_file import pipeline_warnings

    warnings = pipeline_warnings(file, pipeline)
    if as_json:
        emit_json(
            {
                "valid": True,
                "name": pipeline.name,
                "stages": len(pipeline.stages),
                "actions": n,
                "warnings": [f"warning: {w}" for w in found] + [str(w) for w in warnings],
            }
        )
        return
    for w in found:
        click.echo(f"warning: {w}", err=True)
    for cw in warnings:
        click.echo(str(cw), err=True)
    click.echo(f"{file}: valid ({pipeline.name}: {len(pipeline.stages)} stages, {n} actions)")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the pipeline file (for editor completion)."""
    from conveyor.spec.pipeline_file import schema as s

    emit_json(s())


@cli.group("pipeline")
def pipeline_group() -> None:
    """Pipelines known to this state dir (their triggers start executions on push)."""


@pipeline_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def pipeline_apply(file: str, as_json: bool) -> None:
    """Create or update a pipeline from FILE without running it."""

    app = _app()
    pipeline, doc = load_file(file, app.registry)
    commands.apply_pipeline(app.store, pipeline, doc, str(Path(file).resolve()), _user())
    if as_json:
        emit_json({"name": pipeline.name, "stages": [s.name for s in pipeline.stages]})
    else:
        click.echo(
            f"pipeline {pipeline.name}: saved ({len(pipeline.stages)} stages, "
            f"{len(pipeline.triggers)} trigger(s))"
        )
        from conveyor.adapters.git import repos_dir
        from conveyor.cli.init import next_after_apply

        repos = [p.name[:-4] for p in repos_dir(app.settings.state_dir).glob("*.git")]
        click.echo("\n".join(next_after_apply(doc, repos)))


@pipeline_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def pipeline_list(as_json: bool) -> None:
    """List pipelines."""
    app = _reader()
    rows = [
        {"name": r.name, "source": r.source_path, "updatedAt": r.updated_at}
        for r in queries.pipelines(app.store)
    ]
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['name']}\t{r['source'] or ''}")


_CACHE: Any = None


def describe(app: Any, ex_id: str) -> dict[str, Any]:
    """An execution as the API shows it (stages, actions, reports with their failed cases),
    with what it waits for."""
    global _CACHE
    from conveyor.service.queries import PipelineCache, describe

    if _CACHE is None:
        _CACHE = PipelineCache()
    return describe(app.store, _CACHE, ex_id)


def waiting_text(w: dict[str, Any]) -> str:
    if w["type"] != "approval":
        return str(w["message"])
    digest = f" of image {w['digest']}" if w["digest"] else ""
    return f"approval {w['stage']}/{w['action']}{digest} (expires {w['expires']})"


def follow(
    app: Any,
    ex_id: str,
    *,
    as_json: bool,
    quiet: bool = False,
    approver: Any = None,
) -> int:
    """Drive (or watch) an execution to its end; returns the exit code."""
    from conveyor.model.status import TERMINAL_EXECUTION
    from conveyor.service.queries import rollback_of

    terminal = {s.value for s in TERMINAL_EXECUTION}
    stop = threading.Event()
    engine = None
    thread = None
    if not queries.live_engines(app.store, app.settings.lease_seconds):
        engine = app.engine()
        thread = threading.Thread(target=engine.run, args=(stop,), daemon=True, name="engine")
        thread.start()
    view = LiveView(app, ex_id, as_json or quiet)
    announced: set[str] = set()
    try:
        while True:
            # read pending requests before the status: a request handled in between has
            # already moved the status on, so "terminal and nothing pending" is never stale
            pending = queries.pending_requests(app.store, ex_id)
            desc = describe(app, ex_id)
            view.update(desc)
            for a in queries.approvals(app.store, ex_id):
                if a.status == ApprovalStatus.PENDING and a.attempt_id not in announced:
                    announced.add(a.attempt_id)
                    if not as_json and approver is None:
                        view.note(approval_hint(app, ex_id))
                    if approver is not None:
                        view.note(approver.on_approval(a), force=True)
            if approver is not None:
                said = approver.on_tick()
                if said:
                    view.note(said, force=True)
            if desc["status"] in terminal and not pending:
                rollback = rollback_of(app.store, ex_id)
                if rollback and rollback.status not in terminal:
                    if rollback.id not in announced:
                        announced.add(rollback.id)
                        view.note(f"rollback execution {rollback.id} started after {ex_id} failed")
                    time.sleep(0.25)
                    continue
                break
            time.sleep(0.25)
    except KeyboardInterrupt:
        view.note(
            f"interrupted: abandoning execution {ex_id} (Ctrl-C again to leave it to recovery)"
        )
        commands.ask(app.store, ex_id, "abandon", {"reason": "Ctrl-C in `conveyor run`"}, _user())
        deadline = time.time() + 15
        while time.time() < deadline:
            if queries.execution(app.store, ex_id).status in terminal:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        if thread:
            thread.join(10)
        if engine:
            engine.shutdown(wait=False)
        view.close()
    desc = describe(app, ex_id)
    if as_json:
        emit_json(desc)
    else:
        view.summary(desc)
    return 0 if desc["status"] == ExecutionStatus.SUCCEEDED else 1


def approval_hint(app: Any, ex_id: str) -> str:
    return (
        f"waiting for approval: open {app.settings.server_url}/executions/{ex_id}/approval "
        f'(with `conveyor server` running) or run `conveyor approve {ex_id} --comment "..."` '
        f'/ `conveyor reject {ex_id} --comment "..."`'
    )


FAILED_EXECUTION = (
    ExecutionStatus.FAILED,
    ExecutionStatus.STOPPED,
)  # `status EXECUTION` exits 1 for these

STATUS_STYLE = {
    ActionStatus.SUCCEEDED: "green",
    ActionStatus.FAILED: "red",
    ActionStatus.IN_PROGRESS: "cyan",
    ExecutionStatus.STOPPING: "yellow",
    ExecutionStatus.STOPPED: "yellow",
    ActionStatus.ABANDONED: "yellow",
    ExecutionStatus.SUPERSEDED: "magenta",
    None: "dim",
}


class LiveView:
    """Stages and actions as they run: a rich live table on a TTY, plain lines otherwise."""

    def __init__(self, app: Any, ex_id: str, silent: bool) -> None:
        self.silent = silent
        self.console = console()
        self.tty = self.console.is_terminal and not os.environ.get("NO_COLOR")
        self.live: Any = None
        self.seen: dict[str, tuple[Any, ...]] = {}
        self.ex_id = ex_id
        if not silent:
            self.console.print(f"execution {ex_id}")
        if not silent and self.tty:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def table(self, desc: dict[str, Any]) -> Any:
        from rich.table import Table

        t = Table(
            title=f"{desc['pipeline']} #{desc['seq']} {desc['id']}: {desc['status']}",
            show_lines=False,
        )
        for col in ("stage", "action", "status", "time", "message"):
            t.add_column(col)
        for s in desc["stages"]:
            for i, a in enumerate(s["actions"]):
                st = a["status"] or "—"
                dur = a["duration_seconds"]
                t.add_row(
                    s["name"] if i == 0 else "",
                    a["name"],
                    f"[{STATUS_STYLE.get(a['status'], 'white')}]{st}[/]",
                    f"{dur:.1f}s" if dur is not None else "",
                    (a["message"] or "")[:80],
                )
        if desc.get("waiting"):
            t.caption = f"waiting: {waiting_text(desc['waiting'])}"
        return t

    def update(self, desc: dict[str, Any]) -> None:
        if self.silent:
            return
        if self.live:
            self.live.update(self.table(desc))
            return
        for s in desc["stages"]:
            for a in s["actions"]:
                key = f"{s['name']}/{a['name']}"
                sig = (a["status"], a["attempt"])
                if a["status"] and self.seen.get(key) != sig:
                    self.seen[key] = sig
                    extra = (
                        f" ({a['duration_seconds']:.1f}s)"
                        if a["duration_seconds"] is not None
                        else ""
                    )
                    msg = (
                        f": {a['reason']}: {a['message']}"
                        if a["status"] in (ActionStatus.FAILED, ActionStatus.ABANDONED)
                        else ""
                    )
                    click.echo(f"{key}: {a['status']}{extra}{msg}")
        w = desc.get("waiting")
        if w and self.seen.get("__waiting") != (w,):
            self.seen["__waiting"] = (w,)
            click.echo(f"waiting: {waiting_text(w)}")

    def note(self, text: str | None, force: bool = False) -> None:
        """Print above the live table (`force`: even when the table itself is silent)."""
        if not text or (self.silent and not force):
            return
        if self.live:
            self.live.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=self.silent)  # a silent view keeps stdout for the JSON

    def close(self) -> None:
        if self.live:
            self.live.stop()
            self.live = None

    def summary(self, desc: dict[str, Any]) -> None:
        if self.silent:
            return
        dur = desc["duration_seconds"]
        line = f"execution {desc['id']} {desc['status']}" + (f" in {dur:.1f}s" if dur else "")
        if desc["message"]:
            line += f": {desc['message']}"
        click.echo(line)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--var", "variables", multiple=True, help="NAME=VALUE, overrides a pipeline variable")
@json_option("print the final execution as JSON")
@click.option(
    "--detach",
    is_flag=True,
    help="start it and return (a running engine, or one started in the background, drives it)",
)
@click.option(
    "--no-reuse", is_flag=True, help="run every action for real (no reuse of earlier builds)"
)
def run(file: str, variables: tuple[str, ...], as_json: bool, detach: bool, no_reuse: bool) -> None:
    """Start an execution of the pipeline in FILE and follow it to its end."""
    if detach and _run_detached_light(file, variables, as_json):
        return
    app = _app()
    pipeline, doc = load_file(file, app.registry)
    commands.save_pipeline(app.store, pipeline, doc, str(Path(file).resolve()))
    eng = app.engine(install_hooks=not detach)
    ex_id = eng.start(
        pipeline.name,
        variables=parse_pairs(variables, "--var"),
        actor=_user(),
        trigger={"type": "StartPipelineExecution", "by": _user(), "file": str(file)}
        | ({"reuse": False} if no_reuse else {}),
    )
    eng.shutdown(wait=False)
    if detach:
        background_engine(app)  # unless one runs (`conveyor up`, `conveyor server`)
        emit_json({"executionId": ex_id}) if as_json else click.echo(ex_id)
        return
    sys.exit(follow(app, ex_id, as_json=as_json))


def _run_detached_light(file: str, variables: tuple[str, ...], as_json: bool) -> bool:
    """`run --detach` on a SQLite state dir at the current schema: the file checked as
    always, the rows written through the stdlib writer (no SQLAlchemy, no engine import);
    False when the state dir needs the full path (a new or older database, PostgreSQL)."""
    from conveyor.service.commands import start_detached
    from conveyor.settings import Settings

    settings = Settings.from_env()
    pipeline, doc = load_file(file)
    started = start_detached(
        settings,
        pipeline,
        doc,
        str(Path(file).resolve()),
        variables=parse_pairs(variables, "--var"),
        actor=_user(),
        trigger={"type": "StartPipelineExecution", "by": _user(), "file": str(file)},
    )
    if started is None:
        return False
    ex_id, writer = started
    try:
        background_engine(SimpleNamespace(settings=settings, store=writer))
    finally:
        writer.close()
    emit_json({"executionId": ex_id}) if as_json else click.echo(ex_id)
    return True


@cli.command()
@click.argument("execution", required=False)
@click.option("--json", "as_json", is_flag=True)
def status(execution: str | None, as_json: bool) -> None:
    """Show an execution, or every pipeline's latest execution and the platform's parts.

    Exit code with EXECUTION: 0, or 1 when the execution Failed or was Stopped (scripts can
    test it: `conveyor status ID || alert`).
    """
    app = _reader()
    if execution:
        desc = describe(app, execution)
        if as_json:
            emit_json(desc)
        else:
            console().print(LiveView(app, desc["id"], True).table(desc))
            if desc["waiting"]:
                click.echo(f"waiting: {waiting_text(desc['waiting'])}")
        if desc["status"] in FAILED_EXECUTION:
            sys.exit(1)
        return
    from conveyor.service.queries import latest_per_pipeline

    latest = latest_per_pipeline(app.store)
    from conveyor.bootstrap import platform_for

    parts = []
    platform = platform_for(app.settings)
    if platform is not None and hasattr(platform, "status"):
        try:
            parts = [p if isinstance(p, dict) else p.__dict__ for p in platform.status()]
        except ConveyorError as e:
            parts = [{"name": "platform", "healthy": False, "detail": e.message}]
    parts.append(_server_part(app.settings))
    engines = queries.live_engines(app.store, app.settings.lease_seconds)
    if as_json:
        emit_json(
            {
                "pipelines": latest,
                "parts": parts,
                "engines": [e.as_row() for e in engines],
                "stateDir": str(app.settings.state_dir),
            }
        )
        return
    from rich.table import Table

    c = console()
    t = Table(title="pipelines")
    for col in ("pipeline", "latest", "status", "started", "message"):
        t.add_column(col)
    for row in latest:
        ex = row["latest"]
        t.add_row(
            row["pipeline"],
            ex["id"] if ex else "—",
            ex["status"] if ex else "never run",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ex["created_at"])) if ex else "",
            (ex["message"] or ex.get("waiting") or "")[:60] if ex else "",
        )
    c.print(t)
    if parts:
        pt = Table(title="local platform")
        for col in ("part", "address", "health", "detail"):
            pt.add_column(col)
        for p in parts:
            pt.add_row(
                str(p.get("name")),
                str(p.get("address") or ""),
                "[green]up[/]" if p.get("healthy") else "[red]down[/]",
                str(p.get("detail") or ""),
            )
        c.print(pt)
    c.print(f"engines running: {len(engines)}; state dir: {app.settings.state_dir}")


def _server_part(settings: Any) -> dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection(settings.server_host, settings.server_port, timeout=0.5)
    try:
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        detail = "dashboard and API" if ok else "answers, but not healthy"
    except (OSError, http.client.HTTPException):
        ok, detail = False, "not running (`conveyor up` or `conveyor server` starts it)"
    finally:
        conn.close()
    return {"name": "server", "address": settings.server_url, "healthy": ok, "detail": detail}


@cli.command()
@click.option("--pipeline", help="only this pipeline")
@click.option("--status", "status_", help="only executions with this status")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def history(pipeline: str | None, status_: str | None, limit: int, as_json: bool) -> None:
    """List executions, newest first."""
    app = _reader()
    rows = queries.executions(app.store, pipeline=pipeline, status=status_, limit=limit, light=True)
    from conveyor.service.queries import execution_summary

    out = [execution_summary(r) for r in rows]
    if as_json:
        emit_json(out)
        return
    from rich.table import Table

    t = Table()
    for col in ("execution", "pipeline", "#", "kind", "status", "started", "duration", "message"):
        t.add_column(col)
    for r in out:
        t.add_row(
            r["id"],
            r["pipeline"],
            str(r["seq"]),
            r["kind"],
            f"[{STATUS_STYLE.get(r['status'], 'white')}]{r['status']}[/]",
            time.strftime("%m-%d %H:%M:%S", time.localtime(r["created_at"])),
            f"{r['duration_seconds']:.1f}s" if r["duration_seconds"] else "",
            (r["message"] or "")[:70],
        )
    console().print(t)


@cli.command()
@click.argument("execution")
@click.argument("action", required=False)
@click.option("--follow", "-f", "follow_", is_flag=True, help="keep printing as the action writes")
@click.option("--json", "as_json", is_flag=True)
def logs(execution: str, action: str | None, follow_: bool, as_json: bool) -> None:
    """Print the logs of an execution's actions (ACTION: a name or Stage/Action)."""
    from conveyor.model.status import TERMINAL_EXECUTION
    from conveyor.service.queries import follow_log as tail

    app = _reader()
    ex = queries.execution(app.store, execution)
    attempts = queries.attempts(app.store, ex.id)

    def ran(rows: list[Any]) -> list[Any]:
        return [a for a in rows if action in (a.action, f"{a.stage}/{a.action}")]

    # --follow on an action of the pipeline that has not started yet (a detached run): wait
    declared = {
        n
        for st in (ex.definition or {}).get("stages", [])
        for a in st.get("actions", [])
        for n in (a.get("name"), f"{st.get('name')}/{a.get('name')}")
    }
    terminal = {s.value for s in TERMINAL_EXECUTION}
    while action in declared and follow_ and not ran(attempts) and ex.status not in terminal:
        time.sleep(0.2)
        ex = queries.execution(app.store, ex.id)
        attempts = queries.attempts(app.store, ex.id)
    if action:
        chosen = ran(attempts)
        if not chosen:
            names = sorted({a.action for a in attempts})
            raise ConfigError(
                f"execution {ex.id} has no action '{action}' that ran (ran: {', '.join(names) or 'none'})"
            )
        chosen = [chosen[-1]]
    else:
        chosen = attempts
    if as_json:
        emit_json(
            [
                {
                    "stage": a.stage,
                    "action": a.action,
                    "attempt": a.attempt,
                    "status": a.status,
                    "log": Path(a.log_path).read_text(errors="replace")
                    if a.log_path and Path(a.log_path).exists()
                    else "",
                }
                for a in chosen
            ]
        )
        return
    for a in chosen:
        if len(chosen) > 1:
            click.echo(f"==> {a.stage}/{a.action} (attempt {a.attempt}, {a.status}) <==")
        if not a.log_path:
            continue
        path = Path(a.log_path)
        if follow_:

            def done(att_id: str = a.id) -> bool:
                return all(
                    x.status != ActionStatus.IN_PROGRESS
                    for x in queries.attempts(app.store, ex.id)
                    if x.id == att_id
                )

            for line in tail(path, done):
                click.echo(line, nl=False)
        elif path.exists():
            click.echo(path.read_text(errors="replace"), nl=False)


def _request(
    kind: str,
    execution: str,
    payload: dict[str, Any],
    as_json: bool,
    wait: bool = True,
    quiet: bool = False,
) -> None:

    app = _app()
    req, ex_id = commands.request_change(app.store, execution, kind, payload, _user())
    if wait and not queries.live_engines(app.store, app.settings.lease_seconds):
        eng = app.engine()
        eng.step()
        eng.shutdown(wait=False)
    outcome = None
    for _ in range(100 if wait else 0):
        r = queries.change_request(app.store, req)
        if r.handled_at:
            outcome = r.outcome
            break
        time.sleep(0.1)
    if quiet:
        return
    refused = bool(outcome and outcome.startswith("refused"))
    if as_json:
        result = {"request": req, "execution": ex_id, "kind": kind, "outcome": outcome}
        if refused:
            result["error"] = {"code": "conflict", "message": f"{kind} {ex_id}: {outcome}"}
        emit_json(result)
    else:
        click.echo(f"{kind} {ex_id}: {outcome or 'requested'}")
    if refused:
        sys.exit(2)


@cli.command()
@click.argument("execution")
@click.option("--abandon", is_flag=True, help="stop in-flight actions too (else they finish)")
@click.option("--reason", default="", help="why (recorded)")
@click.option("--json", "as_json", is_flag=True)
def stop(execution: str, abandon: bool, reason: str, as_json: bool) -> None:
    """Stop an execution: in-flight actions finish (or are abandoned), nothing new starts."""
    _request("abandon" if abandon else "stop", execution, {"reason": reason}, as_json)


@cli.command()
@click.argument("execution")
@click.option("--failed-only", is_flag=True, help="re-run only the failed actions of the stage")
@click.option("--stage", help="the stage to retry (default: the failed one)")
@click.option("--json", "as_json", is_flag=True)
@click.option("--detach", is_flag=True, help="do not follow the execution")
def retry(
    execution: str, failed_only: bool, stage: str | None, as_json: bool, detach: bool
) -> None:
    """Retry the failed stage of an execution and follow it."""
    payload: dict[str, Any] = {"failed_only": failed_only}
    if stage:
        payload["stage"] = stage
    # the engine that follows (this process's, or a running one) acts on the request
    _request("retry", execution, payload, as_json, wait=detach, quiet=not detach)
    if not detach:
        app = _app()
        sys.exit(follow(app, queries.execution(app.store, execution).id, as_json=as_json))


@cli.group()
def transitions() -> None:
    """Disable or enable the transition into a stage (a release freeze)."""


@transitions.command("disable")
@click.argument("stage")
@click.option("--pipeline", help="the pipeline (default: the only one)")
@click.option("--reason", required=True, help="shown to everyone while it is disabled")
@click.option("--json", "as_json", is_flag=True)
def disable(stage: str, pipeline: str | None, reason: str, as_json: bool) -> None:
    _set_transition(stage, pipeline, False, reason, as_json)


@transitions.command("enable")
@click.argument("stage")
@click.option("--pipeline")
@click.option("--reason", default="")
@click.option("--json", "as_json", is_flag=True)
def enable(stage: str, pipeline: str | None, reason: str, as_json: bool) -> None:
    _set_transition(stage, pipeline, True, reason, as_json)


@transitions.command("list")
@click.option("--pipeline")
@click.option("--json", "as_json", is_flag=True)
def list_transitions(pipeline: str | None, as_json: bool) -> None:
    from conveyor.service.queries import one_pipeline

    app = _reader()
    name = one_pipeline(app.store, pipeline)
    rows = queries.transitions(app.store, name)
    if as_json:
        emit_json([r.as_row() for r in rows])
    else:
        for r in rows:
            click.echo(f"{r.stage}: {'enabled' if r.enabled else 'DISABLED'} {r.reason or ''}")


def _set_transition(
    stage: str, pipeline: str | None, enabled: bool, reason: str, as_json: bool
) -> None:
    from conveyor.service.queries import PipelineCache, one_pipeline

    app = _app()
    name = one_pipeline(app.store, pipeline)
    commands.set_transition(app.store, PipelineCache(), name, stage, enabled, reason, _user())
    if as_json:
        emit_json({"pipeline": name, "stage": stage, "enabled": enabled, "reason": reason})
    else:
        click.echo(
            f"transition into {name}/{stage}: {'enabled' if enabled else 'disabled'}"
            + (f" ({reason})" if reason else "")
        )


# ---- repositories and triggers --------------------------------------------------------------------
@cli.group()
def repo() -> None:
    """Git repositories in the state dir whose pushes start pipelines."""


@repo.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def repo_create(name: str, as_json: bool) -> None:
    """Create a bare repo NAME whose post-receive hook starts matching pipelines."""
    from conveyor.adapters import git

    app = _app()
    path = git.create_bare(
        app.settings.state_dir, name, git.post_receive_hook(app.settings.state_dir, name)
    )
    if as_json:
        emit_json({"name": name, "path": str(path), "url": f"file://{path}"})
    else:
        click.echo(f"{path}\n  git remote add conveyor {path} && git push conveyor main")
        from conveyor.cli.init import next_after_create

        hint = next_after_create(name, [r.definition for r in queries.pipelines(app.store)])
        if hint:
            click.echo(hint)


@repo.command("list")
@click.option("--json", "as_json", is_flag=True)
def repo_list(as_json: bool) -> None:
    from conveyor.adapters import git

    app = _app()
    d = git.repos_dir(app.settings.state_dir)
    names = sorted(p.name[:-4] for p in d.glob("*.git")) if d.exists() else []
    emit_json(names) if as_json else click.echo("\n".join(names) or "no repositories")


@cli.command(hidden=True)
@click.option("--repository", required=True)
@click.option("--ref", required=True)
@click.option("--old", default="")
@click.option("--new", required=True)
@click.option("--no-engine", is_flag=True, help="only create the executions")
def trigger(repository: str, ref: str, old: str, new: str, no_engine: bool) -> None:
    """Called by a repo's post-receive hook: start the pipelines whose triggers match the push."""
    from conveyor.service.commands import start_matching

    app = _app()
    started = start_matching(app, repository=repository, ref=ref, old=old, new=new)
    for ex_id, pipeline in started:
        click.echo(f"conveyor: started {pipeline} execution {ex_id}")
    no_engine = no_engine or bool(os.environ.get("CONVEYOR_TRIGGER_NO_ENGINE"))
    if started and not no_engine:
        log = background_engine(app)
        if log:
            click.echo(f"conveyor: engine started in the background (log: {log})")


def background_engine(app: Any) -> Path | None:
    """Start `conveyor engine --until-idle` detached unless an engine runs; returns its log."""
    import subprocess

    if queries.live_engines(app.store, app.settings.lease_seconds):
        return None
    log: Path = app.settings.state_dir / "logs" / "engine.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        subprocess.Popen(
            [sys.executable, "-m", "conveyor", "engine", "--until-idle"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **os.environ,
                "CONVEYOR_HOME": str(app.settings.state_dir),
                "CONVEYOR_DATABASE_URL": app.settings.database_url,
            },
        )
    return log


@cli.command()
@click.option("--until-idle", is_flag=True, help="exit when no execution is in progress")
@click.option("--poll", type=float, default=None, help="seconds between polls of remote sources")
def engine(until_idle: bool, poll: float | None) -> None:
    """Run the engine: drive executions, resume after crashes, poll remote sources."""
    from conveyor.service.commands import run_engine

    app = _app()

    def idle(eng: Any) -> bool:
        return until_idle and not queries.active_executions(app.store) and not eng.inflight

    run_engine(app, threading.Event(), until=idle, poll=poll)


def main() -> None:
    cli(prog_name="conveyor")
