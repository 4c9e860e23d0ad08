"""`conveyor init --app` on a Jest-based Angular app nobody here wrote: the Angular CLI 17
creates it, its `test` target is switched to `@angular-builders/jest:run` (Jest, jsdom), init
writes the buildspec and adds jest-junit, and the buildspec's own install, unit-test and build
commands leave the JUnit file its `reports:` section names.

Needs node/npm (packages from ~/.npm, or the npm registry). Takes about 90 seconds with a warm
npm cache. The image build and push are not run (test_init_app covers them for Karma).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

if any(shutil.which(t) is None for t in ("node", "npm", "npx")):
    pytest.skip("init --app with Jest needs node, npm and npx", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
JEST_PACKAGES = (
    "jest@29",
    "jest-environment-jsdom@29",
    "@types/jest@29",
    "@angular-builders/jest@17",
)


def sh(cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        shell=isinstance(cmd, str),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_a_jest_angular_app_gets_a_buildspec_whose_commands_write_the_junit_report(
    tmp_path: Path,
) -> None:
    """Angular 17 + @angular-builders/jest: init --apply; npm ci, the buildspec's `ng test`
    command and `ng build` pass, and reports: names a JUnit file with the app's 3 tests."""
    env = {**os.environ, "NG_CLI_ANALYTICS": "false", "CI": "1"}
    npm = ["--prefer-offline", "--no-audit", "--no-fund"]
    sh(
        [
            "npx", "-y", "@angular/cli@17", "new", "jdemo", "--defaults", "--skip-git",
            "--interactive=false", "--ssr=false", "--style=css", "--skip-install",
        ],
        tmp_path,
        env,
    )  # fmt: skip
    app = tmp_path / "jdemo"
    sh(["npm", "install", "-D", *npm, *JEST_PACKAGES], app, env)
    ng_file = app / "angular.json"
    ng = json.loads(ng_file.read_text())
    ng["projects"]["jdemo"]["architect"]["test"] = {
        "builder": "@angular-builders/jest:run",
        "options": {"tsConfig": "tsconfig.spec.json"},
    }
    ng_file.write_text(json.dumps(ng, indent=2) + "\n")
    spec_ts = app / "tsconfig.spec.json"
    spec_ts.write_text(spec_ts.read_text().replace('"jasmine"', '"jest"'))
    shutil.rmtree(app / "node_modules")  # the buildspec installs from the lock file (npm ci)

    out = sh(
        [sys.executable, "-m", "conveyor", "init", "--app", str(app), "--apply"],
        REPO,
        {**env, "PYTHONPATH": str(REPO / "src")},
    )
    assert "Angular 17 app 'jdemo', unit tests with Jest" in out

    spec = yaml.safe_load((app / "buildspec.yml").read_text())
    variables = {k: str(v) for k, v in spec["env"]["variables"].items()}
    run_env = {**env, **variables}
    install = [c for c in spec["phases"]["install"]["commands"] if c.startswith("npm ci")]
    unit = [c for c in spec["phases"]["pre_build"]["commands"] if "ng test" in c]
    build = [c for c in spec["phases"]["build"]["commands"] if c.startswith("npx ng build")]
    assert unit == ["npx ng test --ci --reporters=default --reporters=jest-junit"]
    for command in install + unit + build:
        sh(command, app, run_env)

    report = spec["reports"]["unit-tests"]
    (name,) = report["files"]
    junit = app / report["base-directory"] / name
    root = ET.parse(junit).getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "3", "0")
    assert (app / "dist" / "jdemo" / "browser" / "index.html").is_file()
