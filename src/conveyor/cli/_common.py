"""What the `conveyor` commands share: the app they act on, who they act as, how they print
(JSON, rich tables that stay whole off a terminal) and how they read options and files.

Light on purpose: the entry imports it, so it imports click and the standard library only;
the rest is imported when a command calls for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from conveyor.errors import ConfigError

# Off a terminal (a pipe, a file), tables are as wide as their content: full ids, digests and
# URLs for `grep` and `cut`, never cut to 80 columns with an ellipsis.
PIPE_WIDTH = 100_000

F = TypeVar("F", bound=Callable[..., Any])


def app() -> Any:
    """Settings, store, action types and engine factory (`bootstrap.build`); under a click
    context whose root object is an app or settings (tests, `conveyor up`), from those."""
    from conveyor.bootstrap import build

    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    if obj is not None and hasattr(obj, "store") and hasattr(obj, "settings"):
        return obj
    from conveyor.settings import Settings

    if isinstance(obj, Settings):
        return build(obj)
    return build()


def reader() -> Any:
    """Settings and store only, for the commands that only read (`history`, `status`, `logs`)."""
    from conveyor.bootstrap import build_reader

    return build_reader()


def user() -> str:
    """Who the CLI acts as in the audit log: `local:<login>`."""
    try:
        import getpass

        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local"


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def console() -> Any:
    """A rich console: plain under NO_COLOR or off a terminal, and then as wide as its text."""
    from rich.console import Console

    tty = sys.stdout.isatty()
    plain = bool(os.environ.get("NO_COLOR")) or not tty
    return Console(
        no_color=plain,
        highlight=False,
        force_terminal=None if not plain else False,
        width=None if tty else PIPE_WIDTH,
    )


def parse_pairs(pairs: Sequence[str], flag: str, form: str = "NAME=VALUE") -> dict[str, str]:
    """`NAME=VALUE` options (--var, --env, --parameter, --target-env) as a dict."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"{flag} '{p}': expected {form}")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def load_file(path: str, registry: Any = None) -> tuple[Any, dict[str, Any]]:
    """Load and validate a pipeline file; returns (model, file document)."""
    from conveyor.actions.registry import ActionRegistry
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    registry = registry or ActionRegistry()
    pipeline = load_pipeline(path, registry.catalogue())
    doc, _ = load(path)
    return pipeline, doc


def json_option(help: str = "print as JSON") -> Callable[[F], F]:
    """The `--json` flag every command that prints state takes (as `as_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def ranged_option(
    flag: str, default: float, kind: click.ParamType[Any, Any], help: str
) -> Callable[[F], F]:
    """A numeric option with its default shown and its range checked by click."""
    return click.option(flag, default=default, show_default=True, type=kind, help=help)
