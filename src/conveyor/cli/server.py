"""`conveyor server`, `conveyor approve|reject`, `conveyor user add|list|disable`, `conveyor audit`.

The CLI runs as the local OS user with admin rights (recorded as `local:<login>` in the audit
log): whoever can read the state dir can change the database anyway. `--as USER` decides as a
named user instead (their role and `selfApproval` apply, the audit log names them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from conveyor.cli._common import app as _app
from conveyor.service import queries, users
from conveyor.service.users import ROLES


def _ts(v: float | None) -> str:
    return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if v else "-"


@click.command("server")
@click.option("--host", default=None, help="address to listen on (default 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (default 8700)")
@click.option("--no-engine", is_flag=True, help="serve only; another process runs the engine")
@click.option("--home", default=None, help="the state dir (default: $CONVEYOR_HOME or .conveyor)")
def server_cmd(host: str | None, port: int | None, no_engine: bool, home: str | None) -> None:
    """Serve the dashboard and REST API (with an engine loop) until Ctrl-C."""
    import os

    from conveyor.server.app import serve

    if home:
        os.environ["CONVEYOR_HOME"] = home

    app = _app()
    h = host or app.settings.server_host
    p = port or app.settings.server_port
    click.echo(
        f"Conveyor on http://{h}:{p}/  (API: /api/v1, OpenAPI: /api/v1/openapi.json)"
        + ("" if not no_engine else "; engine not started here"),
        err=True,
    )
    serve(app.settings, h, p, run_engine=not no_engine, announce=lambda m: click.echo(m, err=True))


def _decide(
    execution: str,
    comment: str,
    as_user: str | None,
    approve: bool,
    digest: str | None,
    as_json: bool,
) -> None:
    from conveyor.service.commands import decide_approval
    from conveyor.service.queries import PipelineCache

    app = _app()
    user = users.named(app.store, as_user) if as_user else users.local_user()
    row = decide_approval(
        app.store,
        PipelineCache(),
        execution,
        user,
        approve=approve,
        comment=comment,
        digest=digest,
        require_digest=False,
    )
    if as_json:
        click.echo(
            json.dumps(
                queries.pick(
                    row, "execution_id attempt_id status digest decided_by comment decided_at"
                ),
                indent=2,
            )
        )
        return
    bound = f" (image {row.digest})" if row.digest else ""
    click.echo(f"{row.status.lower()} execution {row.execution_id}{bound} as {row.decided_by}")


@click.command("approve")
@click.argument("execution")
@click.option("--comment", "-m", default="", help="why (recorded with your name)")
@click.option("--as", "as_user", default=None, metavar="USER", help="decide as this Conveyor user")
@click.option(
    "--digest", default=None, help="refuse unless the approval is bound to this image digest"
)
@click.option("--json", "as_json", is_flag=True)
def approve_cmd(
    execution: str, comment: str, as_user: str | None, digest: str | None, as_json: bool
) -> None:
    """Approve the pending approval of EXECUTION."""
    _decide(execution, comment, as_user, True, digest, as_json)


@click.command("reject")
@click.argument("execution")
@click.option("--comment", "-m", default="", help="why (recorded with your name)")
@click.option("--as", "as_user", default=None, metavar="USER", help="decide as this Conveyor user")
@click.option("--json", "as_json", is_flag=True)
def reject_cmd(execution: str, comment: str, as_user: str | None, as_json: bool) -> None:
    """Reject the pending approval of EXECUTION (its approval action fails: Rejected)."""
    _decide(execution, comment, as_user, False, None, as_json)


@click.group("user")
def user_group() -> None:
    """Users of the dashboard and API, their roles and tokens."""


@user_group.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--email", default=None, help="their commit email (for selfApproval: false)")
@click.option("--replace", is_flag=True, help="give an existing user a new token (and this role)")
def user_add(name: str, role: str, email: str | None, replace: bool) -> None:
    """Create a user and print their API token (shown this once)."""
    from conveyor.service.commands import add_user

    token = add_user(
        _app().store, name, role, email, replace=replace, actor=users.local_user().name
    )
    click.echo(f"user '{name}' ({role}); token, shown once:", err=True)
    click.echo(token)


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def user_list(as_json: bool) -> None:
    """List users and roles (never their tokens)."""
    _print_rows(
        users.user_list(_app().store),
        as_json,
        "no users yet (the first `conveyor server` / `conveyor up` creates an admin)",
        lambda r: (
            f"{r['name']:<20} {r['role']:<9} {r['email'] or '-':<30} "
            f"since {_ts(r['created_at'])}" + (" (disabled)" if r["disabled"] else "")
        ),
    )


@user_group.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable a user: their token and sessions stop working."""
    users.disable(_app().store, name, users.local_user().name)
    click.echo(f"user '{name}' disabled")


@click.command("audit")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100000))
def audit_cmd(as_json: bool, limit: int) -> None:
    """Every change made through the API, the dashboard or these commands: who, what, when."""

    def line(r: dict[str, Any]) -> str:
        detail = json.dumps(r["detail"], separators=(",", ":")) if r["detail"] else ""
        return f"{_ts(r['at'])}  {r['actor']:<18} {r['action']:<20} {r['target'] or '-'}  {detail}"

    rows = [r.as_row() for r in queries.audit_log(_app().store, limit)]
    _print_rows(rows, as_json, "the audit log is empty", line)


def _print_rows(
    rows: list[dict[str, Any]], as_json: bool, empty: str, line: Callable[[dict[str, Any]], str]
) -> None:
    """Rows as JSON, else one line each (or `empty` when there are none)."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo(empty)
    for r in rows:
        click.echo(line(r))


def register(cli: click.Group) -> None:
    for cmd in (server_cmd, approve_cmd, reject_cmd, user_group, audit_cmd):
        cli.add_command(cmd)
