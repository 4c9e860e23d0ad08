"""`conveyor doctor`: every external tool Conveyor and the example use, ok / missing / wrong
version, with the exact command that fixes it. Exit 3 when a needed tool is missing."""

from __future__ import annotations

import json
import sys

import click

from conveyor.cli._common import json_option
from conveyor.errors import Unavailable


@click.command("doctor")
@json_option("print the checks as JSON")
def doctor_cmd(as_json: bool) -> None:
    """Check the tools Conveyor and the example need, and say how to fix what is missing."""
    from conveyor.platform.doctor import as_json as checks_json
    from conveyor.platform.doctor import blocking, diagnose, summary

    checks = diagnose()
    if as_json:
        click.echo(json.dumps(checks_json(checks), indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            note = "" if c.needed else "  [tests only]"
            line = f"{c.status:<13} {c.name:<{width}}  {c.found}{note}"
            if not c.ok:
                line += f"\n{'':<13} {'':<{width}}  {c.purpose}; fix: {c.fix}"
            click.echo(line)
    if blocking(checks):
        if not as_json:
            click.echo(f"doctor: {summary(checks)}", err=True)
        sys.exit(Unavailable.exit_code)
    if not as_json:
        click.echo("doctor: every needed tool is there")


def register(cli: click.Group) -> None:
    cli.add_command(doctor_cmd)
