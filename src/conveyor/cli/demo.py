"""`conveyor demo`: the seed pipeline end to end on the example app, on the local platform.

1. starts the local platform (registries test/prod);
2. creates the two git repositories (webapp, webapp-e2e) in the state dir and pushes the
   examples into them — the push to `webapp` is what starts the pipeline (its trigger);
3. follows the execution: Source (both repos) -> Build -> DeployToEKS (test) -> Selenium ->
   approval -> promotion by digest + deploy to prod;
4. prints the stages with durations, the digest in each environment and the URLs.

`--break-e2e` then pushes a commit that breaks the task filter: the pipeline stops at the
Selenium stage with the failing tests and their screenshots, and prod keeps its digest.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from conveyor.cli._common import json_option
from conveyor.errors import ConfigError, ConveyorError
from conveyor.model.status import ActionStatus, StageStatus
from conveyor.service import commands, queries

if TYPE_CHECKING:
    from conveyor.store.records import ApprovalRecord

IGNORE = shutil.ignore_patterns(
    "node_modules",
    "dist",
    "reports",
    ".angular",
    "__pycache__",
    ".pytest_cache",
    "busybox",
    "test-artifacts",
    "*.pyc",
)
GIT_ID = {
    "GIT_AUTHOR_NAME": "Conveyor Demo",
    "GIT_AUTHOR_EMAIL": "demo@conveyor.local",
    "GIT_COMMITTER_NAME": "Conveyor Demo",
    "GIT_COMMITTER_EMAIL": "demo@conveyor.local",
}
BREAK = ("src/app/tasks/task-list-page.ts", '(input)="query.set', '(change)="query.set')


def examples_dir() -> Path:
    env = os.environ.get("CONVEYOR_EXAMPLES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "examples" / "webapp" / "buildspec.yml").exists():
            return parent / "examples"
    raise ConfigError(
        "the example applications were not found: run `conveyor demo` from a checkout "
        "of Conveyor or set CONVEYOR_EXAMPLES=/path/to/examples"
    )


def _git(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    full = {**os.environ, **GIT_ID, **(env or {})}
    res = subprocess.run(
        ["git", *args], cwd=cwd, env=full, capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise ConfigError(f"git {' '.join(args)} in {cwd} failed: {res.stderr.strip()}")
    return res.stdout + res.stderr


def sync_repo(app: Any, name: str, source: Path, message: str) -> str | None:
    """Mirror `source` into the demo's working copy of repo `name`, commit and push.
    Returns the push's output when something was pushed, None when nothing changed."""
    from conveyor.adapters import git

    bare = git.create_bare(
        app.settings.state_dir, name, git.post_receive_hook(app.settings.state_dir, name)
    )
    work = app.settings.state_dir / "demo" / name
    if not (work / ".git").exists():
        work.mkdir(parents=True, exist_ok=True)
        _git(["init", "-q", "-b", "main"], work)
        _git(["remote", "add", "origin", str(bare)], work)
    for child in work.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    shutil.copytree(source, work, dirs_exist_ok=True, ignore=IGNORE, symlinks=True)
    _git(["add", "-A"], work)
    if not _git(["status", "--porcelain"], work).strip():
        return None
    _git(["commit", "-qm", message], work)
    return _git(
        ["push", "-q", "origin", "HEAD:main"], work, env={"CONVEYOR_TRIGGER_NO_ENGINE": "1"}
    )


def started_execution(push_output: str | None) -> str | None:
    m = re.search(r"started \S+ execution ([0-9a-f]{12})", push_output or "")
    return m.group(1) if m else None


def _auto_approve_default() -> bool:
    return bool(os.environ.get("CI")) or not sys.stdin.isatty()


@click.command("demo")
@click.option(
    "--approve/--no-approve",
    "approve",
    default=None,
    help="approve the release automatically (default: yes when not in a terminal or under CI;"
    " in a terminal you are asked)",
)
@click.option(
    "--break-e2e",
    is_flag=True,
    help="then push a commit that breaks a feature: the pipeline must stop at the Selenium stage",
)
@json_option("print a JSON summary at the end")
def demo(approve: bool | None, break_e2e: bool, as_json: bool) -> None:
    """Run the seed pipeline end to end on the example app (what `make demo` runs)."""
    from conveyor.cli._common import app as _app
    from conveyor.cli._common import load_file
    from conveyor.cli.main import follow
    from conveyor.platform.doctor import require

    require()  # a missing tool is named with its fix before any stage starts (exit 3)
    approve = _auto_approve_default() if approve is None else approve
    app = _app()
    ex_dir = examples_dir()
    say = (lambda *_: None) if as_json else click.echo
    platform = app.services.platform
    if platform is None:
        raise ConfigError("the local platform is not available")
    for line in platform.up():
        say(f"platform: {line}")
    if not approve:
        # a person decides: serve the dashboard so the approval page (with the evidence) works
        from conveyor.cli.platform import _start_server

        started, token = _start_server(app.settings)
        if started:
            say(
                f"platform: dashboard on {app.settings.server_url} (stop everything with `conveyor down`)"
            )
        if token:
            say(
                f"created user 'admin'; its token, shown once (sign in on {app.settings.server_url}/login):"
                f"\n  {token}"
            )
    pipeline_file = ex_dir / "pipeline.yaml"
    pipeline, doc = load_file(str(pipeline_file), app.registry)
    commands.save_pipeline(app.store, pipeline, doc, str(pipeline_file))
    say(f"pipeline {pipeline.name}: {len(pipeline.stages)} stages from {pipeline_file}")

    summary: dict[str, Any] = {"pipeline": pipeline.name, "runs": []}
    sync_repo(app, "webapp-e2e", ex_dir / "webapp-e2e", "demo: the Selenium suite from examples/")
    out = sync_repo(app, "webapp", ex_dir / "webapp", "demo: the Angular app from examples/")
    ex_id = started_execution(out)
    if ex_id:
        say(f"git push to webapp started execution {ex_id}")
    else:
        eng = app.engine()
        ex_id = eng.start(
            pipeline.name,
            actor="conveyor demo",
            trigger={
                "type": "StartPipelineExecution",
                "by": "conveyor demo",
                "note": "no new commit to push: started by hand",
            },
        )
        eng.shutdown(wait=False)
        say(f"nothing new to push: started execution {ex_id} by hand")
    prod_before = _prod_digest(app)
    code = follow(app, ex_id, as_json=False, quiet=as_json, approver=Approver(app, approve))
    summary["runs"].append(_report(app, ex_id, say))
    ok = code == 0
    if ok:
        ok = _check_serving(app, pipeline, say)
    if break_e2e and ok:
        ok = _break_run(app, pipeline, ex_dir, say, summary, approve)
    elif break_e2e:
        say("skipping --break-e2e: the first run did not succeed")
    summary["ok"] = ok
    summary["prodDigestBefore"] = prod_before
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    sys.exit(0 if ok else 1)


class Approver:
    """The demo's side of the approval: automatic (CI), or typed in the terminal while the live
    view keeps running — the dashboard and `conveyor approve` work at the same time, and the
    first decision wins."""

    def __init__(self, app: Any, auto: bool) -> None:
        self.app = app
        self.auto = auto
        self.pending: ApprovalRecord | None = None

    def decide(self, row: ApprovalRecord, *, approve: bool, by: str, comment: str) -> None:
        """Decide the approval `row` as `by` (the demo's own identity, with the admin role)."""
        from conveyor.service.commands import decide_approval
        from conveyor.service.queries import PipelineCache
        from conveyor.service.users import acting_as

        decide_approval(
            self.app.store,
            PipelineCache(),
            row.execution_id,
            acting_as(by, "admin"),
            approve=approve,
            comment=comment,
            digest=row.digest,
            require_digest=False,
        )

    def on_approval(self, row: ApprovalRecord) -> str:
        if self.auto:
            self.decide(
                row,
                approve=True,
                by="conveyor demo --approve",
                comment="approved automatically by the demo",
            )
            return f"approval: approved automatically (image {row.digest})"
        self.pending = row
        return (
            _evidence_text(self.app, row.execution_id, row)
            + f"\n  decide on {self.app.settings.server_url}/executions/{row.execution_id}/approval"
            + "\n  or type  y + Enter  to approve,  n + Enter  to reject"
        )

    def on_tick(self) -> str | None:
        """Reads a y/n answer when one was typed; never blocks the live view."""
        if self.pending is None or not sys.stdin.isatty():
            return None
        if not select.select([sys.stdin], [], [], 0)[0]:
            return None
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes", "n", "no"):
            return "type y (approve) or n (reject), then Enter"
        yes = answer.startswith("y")
        row, self.pending = self.pending, None
        try:
            self.decide(
                row,
                approve=yes,
                by="local:demo-user",
                comment=f"{'approved' if yes else 'rejected'} at the demo prompt",
            )
        except ConveyorError as e:
            return f"approval: {e.message}"
        return f"approval: {'approved' if yes else 'rejected'}"


def _evidence_text(app: Any, ex_id: str, approval: ApprovalRecord) -> str:
    lines = [f"approval needed for execution {ex_id}: image {approval.digest}"]
    for a in queries.attempts(app.store, ex_id):
        for r in a.reports or []:
            lines.append(
                f"  {a.action}: report {r['name']}: {r['passed']}/{r['total']} passed, "
                f"{r['failed']} failed, {r['skipped']} skipped"
            )
    lines.append(f"  also: `conveyor approve {ex_id} --comment ...` from another terminal")
    return "\n".join(lines)


def _report(app: Any, ex_id: str, say: Any) -> dict[str, Any]:
    from conveyor.cli.main import describe

    desc = describe(app, ex_id)
    say("")
    say(f"{'stage':28} {'status':11} {'seconds':>8}")
    for s in desc["stages"]:
        dur = s["duration_seconds"]
        say(f"{s['name']:28} {s['status'] or '—':11} {dur if dur is None else round(dur, 1)!s:>8}")
        for a in s["actions"]:
            if a["status"] == ActionStatus.FAILED:
                say(f"  {a['name']}: {a['reason']}: {a['message']}")
    envs = queries.current_deployments(app.store)
    for name in sorted(envs):
        d = envs[name]
        say(f"{name:6} {d.digest}  commit {str(d.commit or '')[:12]}  {d.url or ''}")
    return {
        "execution": ex_id,
        "status": desc["status"],
        "message": desc["message"],
        "stages": [
            {
                "name": s["name"],
                "status": s["status"],
                "seconds": s["duration_seconds"],
            }
            for s in desc["stages"]
        ],
        "environments": {
            k: {"digest": v.digest, "url": v.url, "commit": v.commit} for k, v in envs.items()
        },
    }


def _prod_digest(app: Any) -> str | None:
    """The image digest prod serves now (None before its first deployment)."""
    prod = queries.current_deployments(app.store).get("prod")
    return prod.digest if prod else None


def _check_serving(app: Any, pipeline: Any, say: Any) -> bool:
    envs = queries.current_deployments(app.store)
    ok = True
    for name in ("test", "prod"):
        d = envs.get(name)
        if not d or not d.url:
            continue
        url = d.url.rstrip("/")
        try:
            r = httpx.get(url + "/", timeout=5)
            h = httpx.get(url + "/healthz", timeout=5)
            good = r.status_code == 200 and h.status_code == 200
            say(f"{name}: {url}/ -> {r.status_code}, /healthz -> {h.text.strip()[:120]}")
        except httpx.HTTPError as e:
            good = False
            say(f"{name}: {url} does not answer: {e}")
        ok = ok and good
    return ok


def _break_run(
    app: Any, pipeline: Any, ex_dir: Path, say: Any, summary: dict[str, Any], approve: bool
) -> bool:
    from conveyor.cli.main import follow

    say(
        "\n--break-e2e: pushing a commit that breaks the task filter (the unit tests do not see it)"
    )
    prod = _prod_digest(app)
    broken = app.settings.state_dir / "demo" / "webapp-broken-src"
    if broken.exists():
        shutil.rmtree(broken)
    shutil.copytree(ex_dir / "webapp", broken, ignore=IGNORE, symlinks=True)
    target = broken / BREAK[0]
    text = target.read_text()
    if BREAK[1] not in text:
        raise ConfigError(f"cannot break the example: '{BREAK[1]}' is not in {BREAK[0]} any more")
    target.write_text(text.replace(BREAK[1], BREAK[2]))
    out = sync_repo(
        app, "webapp", broken, "demo: filter the list on change instead of input (breaks e2e)"
    )
    ex_id = started_execution(out)
    if not ex_id:
        raise ConfigError("the breaking push did not start the pipeline")
    code = follow(app, ex_id, as_json=False, quiet=False, approver=Approver(app, approve))
    run = _report(app, ex_id, say)
    summary["runs"].append(run)
    failed = [s for s in run["stages"] if s["status"] == StageStatus.FAILED]
    stage_ok = code == 1 and failed and failed[0]["name"] == "RunSeleniumTest"
    for a in queries.attempts(app.store, ex_id):
        for r in a.reports or []:
            for f in r.get("failures", []):
                say(f"  failed test: {f.get('name')}: {str(f.get('message', ''))[:160]}")
        shots = (
            sorted(
                (Path(a.log_path).parent.parent.parent / "work").glob(
                    f"{ex_id}/{a.stage}.{a.action}.{a.attempt}/out/**/screenshots/FAILED-*.png"
                )
            )
            if a.log_path
            else []
        )
        for shot in shots:
            say(f"  screenshot: {shot}")
    now = _prod_digest(app)
    prod_kept = now == prod
    say(f"prod still serves {now}: {'yes' if prod_kept else 'NO'}")
    return bool(stage_ok and prod_kept and _check_serving(app, pipeline, say))


def register(cli: click.Group) -> None:
    cli.add_command(demo)
