"""The Node that set-up brings into .tools/node (when the machine's is too old) is the one the
build action's commands run: `.tools/node/bin` comes first on their PATH."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from conveyor.actions.base import ActionContext
from conveyor.actions.build import Build
from conveyor.adapters.tools import tool_path
from conveyor.bootstrap import build_services
from conveyor.model.pipeline import Action, Pipeline, Stage
from conveyor.settings import Settings

pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="needs node")


def tools_with_node(tmp_path: Path) -> Path:
    """A project tools dir whose node/bin/node is this machine's real node."""
    bin_dir = tmp_path / "tools" / "node" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "node").symlink_to(str(shutil.which("node")))
    return tmp_path / "tools"


def test_tool_path_puts_project_node_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a .tools/node, PATH starts with its bin dir; without one, PATH is unchanged."""
    monkeypatch.setenv("CONVEYOR_TOOLS", str(tools_with_node(tmp_path)))
    assert tool_path("/usr/bin:/bin").split(":")[0] == str(tmp_path / "tools" / "node" / "bin")
    monkeypatch.setenv("CONVEYOR_TOOLS", str(tmp_path / "none"))
    assert tool_path("/usr/bin:/bin") == "/usr/bin:/bin"


def test_build_action_runs_the_project_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buildspec's `node` is .tools/node/bin/node when set-up put one there."""
    monkeypatch.setenv("CONVEYOR_TOOLS", str(tools_with_node(tmp_path)))
    src = tmp_path / "src"
    src.mkdir()
    (src / "buildspec.yml").write_text(
        "version: 0.2\nphases:\n  build:\n    commands:\n"
        "      - command -v node > where.txt\n      - node --version >> where.txt\n"
        "artifacts:\n  files: [where.txt]\n"
    )
    config: dict[str, object] = {"buildspec": "buildspec.yml"}
    action = Action(name="B", type="build", inputs=("src",), outputs=("out",), config=config)
    pipeline = Pipeline(name="p", stages=(Stage(name="Build", actions=(action,)),))
    out = tmp_path / "out"
    out.mkdir()
    settings = Settings(state_dir=tmp_path / "state", database_url="sqlite://", secrets_file=None)

    class Log:
        def write(self, text: str) -> None: ...

        def mask(self, secret: str) -> None: ...

    ctx = ActionContext(
        execution_id="e1",
        pipeline=pipeline,
        stage="Build",
        action=action,
        attempt=1,
        config=config,
        inputs={"src": src},
        outputs={"out": out},
        workdir=tmp_path / "attempt",
        log=Log(),
        cancel=threading.Event(),
        deadline=None,
        state_dir=tmp_path / "state",
        services=build_services(settings),
    )
    Build().run(ctx)
    where = (out / "where.txt").read_text().splitlines()
    assert where[0] == str(tmp_path / "tools" / "node" / "bin" / "node")
    assert where[1].startswith("v")
