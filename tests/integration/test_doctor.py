"""`conveyor doctor` against the machine's real tools, with one tool taken off the lookup (a PATH
of links to everything but that tool, and no podman helper directories): it is named with its
package, and `conveyor demo` / `conveyor up` stop with the same message before anything starts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli.main import cli
from conveyor.errors import Unavailable
from conveyor.platform import doctor

pytestmark = pytest.mark.skipif(
    not (shutil.which("podman") and shutil.which("chromedriver")),
    reason="needs the machine's tools (make test installs them)",
)


def path_without(tmp_path: Path, *names: str) -> str:
    """A PATH directory linking every program of this machine's PATH except `names`."""
    target = tmp_path / "bin"
    target.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not Path(d).is_dir():
            continue
        for entry in os.scandir(d):
            link = target / entry.name
            if entry.name in names or link.exists() or link.is_symlink():
                continue
            link.symlink_to(entry.path)
    return str(target)


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_missing_catatonit_is_named_with_its_package(tmp_path: Path) -> None:
    """Without podman's pause binary, doctor says catatonit is missing and how to install it."""
    checks = doctor.Doctor(path=path_without(tmp_path, "catatonit"), helper_dirs=()).run()
    pause = by_name(checks)["catatonit"]
    assert pause.status == doctor.MISSING
    assert pause.fix.endswith("apt-get install -y catatonit")
    assert by_name(checks)["podman"].ok
    with pytest.raises(Unavailable, match="catatonit is missing.*apt-get install -y catatonit"):
        doctor.require(lambda: checks)


def test_missing_chromedriver_is_named_with_its_package(tmp_path: Path) -> None:
    """Without chromedriver, doctor names the chromium-driver package."""
    checks = doctor.Doctor(path=path_without(tmp_path, "chromedriver")).run()
    driver = by_name(checks)["chromedriver"]
    assert driver.status == doctor.MISSING
    assert driver.fix.endswith("apt-get install -y chromium-driver")


def test_node_older_than_engines_is_a_wrong_version(tmp_path: Path) -> None:
    """A node below the example's engines is 'wrong version', with the set-up command as fix."""
    (tmp_path / "webapp").mkdir()
    (tmp_path / "webapp" / "package.json").write_text('{"engines": {"node": ">=99.1"}}')
    node = by_name(doctor.Doctor(examples=tmp_path).node())["node"]
    assert node.status == doctor.WRONG
    assert ">=99.1" in node.found and "make setup" in node.fix


def test_postgresql_never_blocks(tmp_path: Path) -> None:
    """PostgreSQL is reported as tests-only and is never among the blocking checks."""
    checks = doctor.Doctor(path=path_without(tmp_path)).run()
    assert by_name(checks)["postgresql"].needed is False
    assert all(c.name != "postgresql" for c in doctor.blocking(checks))


@pytest.fixture
def no_catatonit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", path_without(tmp_path, "catatonit"))
    monkeypatch.setattr(doctor, "PODMAN_HELPER_DIRS", ())
    home = tmp_path / "home"
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    return home


def test_doctor_command_exits_3_naming_the_package(no_catatonit: Path) -> None:
    """`conveyor doctor` prints the missing tool with its fix and exits 3; --json says the same."""
    res = CliRunner().invoke(cli, ["doctor"])
    assert res.exit_code == 3
    assert "missing" in res.output and "apt-get install -y catatonit" in res.output
    res = CliRunner().invoke(cli, ["doctor", "--json"])
    assert res.exit_code == 3
    data = json.loads(res.stdout)
    assert data["ok"] is False
    assert [c["name"] for c in data["checks"] if c["needed"] and not c["ok"]] == ["catatonit"]


@pytest.mark.parametrize("command", [["demo", "--approve"], ["up", "--no-server"]])
def test_demo_and_up_stop_before_anything_starts(no_catatonit: Path, command: list[str]) -> None:
    """`conveyor demo` and `up` exit 3 with doctor's message; no state, no stage, no registry."""
    res = CliRunner().invoke(cli, command)
    assert res.exit_code == 3, res.output
    assert "catatonit is missing" in res.output
    assert "apt-get install -y catatonit" in res.output
    assert "Build" not in res.output
    assert not no_catatonit.exists()  # nothing was started: not even the state dir
