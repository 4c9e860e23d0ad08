"""The CLI starts light: its entry imports no heavy layer, and `--help` lists every command
from the lazy table without importing the command modules (issue 19)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from conveyor.cli.main import COMMANDS, cli

HEAVY = ("sqlalchemy", "alembic", "fastapi", "boto3", "botocore", "kubernetes", "httpx")


def _loaded_after(code: str) -> set[str]:
    """The top-level packages in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_cli_entry_imports_no_store_server_aws_or_kubernetes() -> None:
    """Importing the `conveyor` entry point loads none of SQLAlchemy, FastAPI, boto3, kubernetes."""
    loaded = _loaded_after("import conveyor; from conveyor.cli import main")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert not {m for m in loaded if m.startswith(("conveyor.store", "conveyor.server"))}


def test_help_imports_no_command_module() -> None:
    """`conveyor --help` lists the lazy commands without importing their modules."""
    loaded = _loaded_after(
        "from conveyor.cli.main import cli\n"
        "try:\n    cli(['--help'], prog_name='conveyor')\nexcept SystemExit:\n    pass"
    )
    lazy_modules = {target.split(":")[0] for target, _ in COMMANDS.values()}
    assert not lazy_modules & loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_help_lists_every_command() -> None:
    """`conveyor --help` names every command of the table and every core command."""
    result = CliRunner().invoke(cli, ["--help"], prog_name="conveyor")
    assert result.exit_code == 0, result.output
    listed = {
        line.split()[0]
        for line in result.output.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    }
    core = {n for n, c in cli.commands.items() if not c.hidden}
    assert set(COMMANDS) | core <= listed


def test_every_table_entry_is_a_command_of_that_name() -> None:
    """Each `COMMANDS` line points at a click command whose name is the line's name."""
    for name, (target, short_help) in COMMANDS.items():
        module, _, attr = target.partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command), target
        assert cmd.name == name, f"{target} is named {cmd.name!r}, listed as {name!r}"
        assert short_help and len(short_help) <= 70, name


def test_area_register_functions_add_only_listed_commands() -> None:
    """A command an area's `register()` adds also has its line in `COMMANDS` (else it is lost)."""
    modules = {target.split(":")[0] for target, _ in COMMANDS.values()}
    for module in sorted(modules):
        register = getattr(importlib.import_module(module), "register", None)
        if register is None:
            continue
        group = click.Group("probe")
        register(group)
        missing = set(group.commands) - set(COMMANDS)
        assert not missing, f"{module}.register() adds {missing}: add a line to COMMANDS"


def test_a_lazy_command_runs_through_the_table() -> None:
    """A lazily loaded command runs: `conveyor buildspec --help` shows its subcommands."""
    result = CliRunner().invoke(cli, ["buildspec", "--help"], prog_name="conveyor")
    assert result.exit_code == 0, result.output
    assert "validate" in result.output and "run" in result.output


def test_validating_a_pipeline_loads_only_the_action_types_it_names(tmp_path: Path) -> None:
    """Checking a shell-only pipeline imports the shell action, not the build or deploy ones."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\nstages:\n  - name: A\n    actions:\n"
        '      - {name: a, type: shell, config: {commands: ["true"]}}\n'
    )
    loaded = _loaded_after(
        "from conveyor.actions.registry import ActionRegistry\n"
        "from conveyor.spec.pipeline_file import load_pipeline\n"
        f"load_pipeline({str(f)!r}, ActionRegistry().catalogue())"
    )
    assert "conveyor.actions.shell" in loaded
    assert not loaded & {"conveyor.actions.build", "conveyor.actions.deploy", "httpx"}


def test_the_service_layer_imports_lazily() -> None:
    """Importing the service's commands, queries and users loads no SQLAlchemy, pydantic,
    FastAPI, engine or store module: the CLI's light paths import them."""
    loaded = _loaded_after(
        "import conveyor.service.commands, conveyor.service.queries, conveyor.service.users"
    )
    assert not {m for m in loaded if m.split(".")[0] in (*HEAVY, "pydantic")}
    assert not {m for m in loaded if m.startswith(("conveyor.engine", "conveyor.store"))}
