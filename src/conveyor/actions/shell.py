"""`shell`: run commands on the host (bash, in the primary input's directory).

    - name: Lint
      type: shell
      inputs: [app_src]
      config: {commands: ["npm run lint"], env: {CI: "true"}}

Exported variables: lines of the form `::set-output NAME=VALUE` become output variables.

A `#{ns.var}` in a command is data, never code: it is rewritten to a quoted reference to an
environment variable (`"${CONVEYOR_VAR_NS_VAR}"`) that holds the value.
"""

from __future__ import annotations

import os
import re
import shutil

from pydantic import Field

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.adapters.process import require, run
from conveyor.errors import ActionFailed
from conveyor.model.variables import command_as_data

SET_OUTPUT = re.compile(r"^::set-output ([A-Za-z0-9_]+)=(.*)$")


class ShellConfig(ActionConfig):
    commands: list[str] = Field(min_length=1)
    env: dict[str, str] = {}
    shell: str = "bash"


class Shell(BaseAction):
    type_name = "shell"
    Config = ShellConfig

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = ShellConfig.model_validate(dict(ctx.config))
        sh = require(cfg.shell, cfg.shell)
        cwd = next(iter(ctx.inputs.values()), None) or ctx.workdir / "src"
        cwd.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(cfg.env)
        env["CONVEYOR_EXECUTION_ID"] = ctx.execution_id
        for name, d in ctx.outputs.items():
            env[f"CONVEYOR_OUTPUT_{name.upper()}"] = str(d)
        commands = list(cfg.commands)
        raw = ctx.action.config.get("commands")
        if isinstance(raw, list | tuple) and len(raw) == len(commands):
            # the engine resolved `#{...}` into the text; start again from the raw commands
            # and pass each value in the environment instead
            commands = []
            for text in raw:
                command, values = command_as_data(str(text), ctx.variables)
                commands.append(command)
                env.update(values)
        script = "set -e\n" + "\n".join(commands) + "\n"
        outputs: dict[str, str] = {}

        def out(line: str) -> None:
            ctx.log.write(line)
            m = SET_OUTPUT.match(line.rstrip("\n"))
            if m:
                outputs[m.group(1)] = m.group(2)

        res = run(
            [sh, "-c", script],
            cwd=cwd,
            env=env,
            on_output=out,
            cancel=ctx.cancel,
            deadline=ctx.deadline,
            on_pid=ctx.on_pid,
            keep_output=False,
        )
        if res.returncode != 0:
            raise ActionFailed(f"command exited with status {res.returncode}")
        # the primary output gets the working tree when nothing else filled it
        for d in ctx.outputs.values():
            if not any(d.iterdir()):
                shutil.copytree(cwd, d, dirs_exist_ok=True, symlinks=True)
            break
        return ActionResult(variables=outputs)
