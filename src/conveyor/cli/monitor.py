"""`conveyor rollback | metrics | monitor watch`.

conveyor rollback ENV [--to EXECUTION|DIGEST]   redeploy the previous good version of ENV
                                                 (or the one named) as a rollback execution
conveyor metrics [--days N] [--environment E]    the four DORA measures (--json: with series)
conveyor metrics --prometheus                    what GET /metrics serves
conveyor monitor watch [--interval S] [--once]   the health watcher (`conveyor up` runs it)
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading

import click

from conveyor.cli._common import app as _app
from conveyor.cli._common import json_option, ranged_option
from conveyor.cli._common import user as _user


@click.command("rollback")
@click.argument("environment")
@click.option(
    "--to",
    "to",
    default=None,
    metavar="EXECUTION|DIGEST",
    help="the execution (id or prefix) or image digest to restore; default: the last "
    "good deployment before the current one",
)
@click.option("--reason", default="", help="why (recorded in the trigger and the alert)")
@click.option("--detach", is_flag=True, help="start the rollback and return (an engine runs it)")
@json_option("print the rollback execution as JSON")
def rollback(environment: str, to: str | None, reason: str, detach: bool, as_json: bool) -> None:
    """Roll ENVIRONMENT back: redeploy a previous digest with its own manifests (no rebuild)."""
    from conveyor.cli._common import emit_json
    from conveyor.cli.main import follow
    from conveyor.service import commands

    app = _app()
    plan = commands.plan_rollback(app.store, environment, to=to)
    if not as_json:
        click.echo(f"rolling back {plan.describe()}")
    ex_id = commands.roll_back(
        app.store,
        plan,
        reason=reason or f"manual rollback by {_user()}",
        actor=_user(),
    )
    if detach:
        emit_json({"executionId": ex_id}) if as_json else click.echo(ex_id)
        return
    code = follow(app, ex_id, as_json=as_json)
    app.notifier.flush()
    sys.exit(code)


@click.command("metrics")
@ranged_option("--days", 30, click.IntRange(1, 3650), "the window, in days up to today")
@click.option(
    "--environment",
    default="prod",
    show_default=True,
    help="the environment whose deployments count",
)
@click.option("--prometheus", is_flag=True, help="print the Prometheus text of /metrics instead")
@json_option("print the measures with their series")
def metrics(days: int, environment: str, prometheus: bool, as_json: bool) -> None:
    """The four DORA measures: deployment frequency, lead time, change failure rate, restore."""
    app = _app()
    if prometheus:
        from conveyor.monitoring.metrics import render_metrics

        click.echo(render_metrics(app.store).decode(), nl=False)
        return
    from conveyor.monitoring.dora import dora

    m = dora(app.store, days=days, environment=environment)
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    from rich.table import Table

    freq, lead = m["deploymentFrequency"], m["leadTimeForChanges"]
    cfr, ttr = m["changeFailureRate"], m["timeToRestore"]
    table = Table(title=f"DORA measures of '{environment}', last {days} days", show_edge=False)
    for col in ("measure", "value", f"per {m['bucket']}"):
        table.add_column(col)
    table.add_row(
        "deployment frequency",
        f"{freq['deployments']} deployments ({freq['perDay']:g}/day, {freq['perWeek']:g}/week)",
        _spark([p["value"] for p in freq["series"]]),
    )
    table.add_row(
        "lead time for changes",
        f"median {_duration(lead['medianSeconds'])} over {lead['count']} deployments",
        _spark([p["value"] for p in lead["series"]]),
    )
    table.add_row(
        "change failure rate",
        "-"
        if cfr["rate"] is None
        else f"{cfr['rate']:.0%} ({cfr['failed']} of {cfr['deployments']})",
        _spark([p["value"] for p in cfr["series"]]),
    )
    table.add_row(
        "time to restore",
        f"median {_duration(ttr['medianSeconds'])} ({ttr['restored']} restored, "
        f"{ttr['open']} open)",
        _spark([p["value"] for p in ttr["series"]]),
    )
    from conveyor.cli._common import console

    console().print(table)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _spark(values: list[float | None]) -> str:
    """A one-line chart (last 30 points); a gap where there is no value."""
    values = values[-30:]
    present = [v for v in values if v is not None]
    if not present:
        return ""
    top = max(present) or 1.0
    bars = "▁▂▃▄▅▆▇█"
    return "".join(" " if v is None else bars[min(7, int(v / top * 7))] for v in values)


@click.group("monitor")
def monitor_group() -> None:
    """Continuous monitoring of the deployed environments."""


@monitor_group.command("watch")
@ranged_option(
    "--interval", 30.0, click.FloatRange(min=0.1), "seconds between two rounds of health checks"
)
@click.option("--once", is_flag=True, help="check every environment once, print, and exit")
@click.option("--home", default=None, hidden=True, help="the state dir (set by `conveyor up`)")
@click.option("--webhook", default=None, help="alert webhook for pipelines without one")
@json_option("with --once: print the readings as JSON")
def watch(
    interval: float, once: bool, home: str | None, webhook: str | None, as_json: bool
) -> None:
    """Check each deployed environment's health; alert when it turns unhealthy or recovers."""
    from conveyor.bootstrap import build
    from conveyor.monitoring.watcher import Watcher
    from conveyor.settings import Settings

    app = build(Settings.from_env(home) if home else None)
    watcher = Watcher(app, interval, webhook=webhook)
    if once:
        readings = watcher.check_once()
        if as_json:
            click.echo(json.dumps([r.as_dict() for r in readings], indent=2))
        else:
            for r in readings:
                click.echo(
                    f"{r.environment}: {'healthy' if r.healthy else 'UNHEALTHY'} "
                    f"({r.url}: {r.detail})"
                )
            if not readings:
                click.echo("no environment is deployed yet")
        sys.exit(0 if all(r.healthy for r in readings) else 1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.getLogger("conveyor.watcher").info(
        "watching every deployed environment of %s every %g s", app.settings.state_dir, interval
    )
    with contextlib.suppress(KeyboardInterrupt):
        watcher.run(stop)


def register(cli: click.Group) -> None:
    """Add `rollback`, `metrics` and `monitor watch` to the `conveyor` group."""
    cli.add_command(rollback)
    cli.add_command(metrics)
    cli.add_command(monitor_group)
