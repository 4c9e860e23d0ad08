"""`conveyor init --app` on an app nobody here wrote: the Angular CLI 17 creates it (Karma
unit tests) offline from the npm registry, init writes its files and a pytest + Selenium suite's
buildspec, and the pipeline init wrote takes it through Build (Karma on Debian's chromium, with
a JUnit report), the deploy to test and the Selenium suite, with no file edited in between.

The serving image is `FROM ${BASE}`, default localhost/conveyor/web: Conveyor's nginx image,
which `conveyor up` builds from Debian's packages when it is missing (cached by recipe).
Needs node/npm (npm packages from ~/.npm, or the npm registry), podman, mmdebstrap,
docker-registry, skopeo, git, chromium and chromium-driver. Takes about 4 minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.platform.containers_conf import write_containers_config
from conveyor.platform.daemon import free_port

pytestmark = pytest.mark.integration

TOOLS = ("node", "npx", "npm", "podman", "mmdebstrap", "docker-registry", "git", "skopeo")
missing = [t for t in TOOLS if shutil.which(t) is None] + [
    p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).exists()
]
if missing:
    pytest.skip(f"init --app end to end needs: {', '.join(missing)}", allow_module_level=True)

GIT_ID = {
    "GIT_AUTHOR_NAME": "Init Test",
    "GIT_AUTHOR_EMAIL": "init@conveyor.local",
    "GIT_COMMITTER_NAME": "Init Test",
    "GIT_COMMITTER_EMAIL": "init@conveyor.local",
}

SELENIUM_SUITE = '''\
"""The generated Angular app, seen by a browser, and the /healthz the serving image answers."""

import json
import os
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE_URL = os.environ["BASE_URL"].rstrip("/")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def test_the_app_greets_its_user():
    driver = browser()
    try:
        driver.get(BASE_URL + "/")
        WebDriverWait(driver, 15).until(
            lambda d: "Hello, demo" in d.find_element(By.TAG_NAME, "h1").text
        )
    finally:
        driver.quit()


def test_healthz_reports_the_commit_that_was_built():
    with urllib.request.urlopen(BASE_URL + "/healthz", timeout=10) as r:
        health = json.load(r)
    assert health["status"] == "ok"
    assert health["commit"] == os.environ["EXPECTED_COMMIT"]
'''


def sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    res = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert res.returncode == 0, (
        f"{' '.join(cmd)}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    return res.stdout + res.stderr


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A private state dir, registries and environments on free ports."""
    home = tmp_path / "home"
    podman_env = write_containers_config(tmp_path / "containers", [])
    env = {
        **os.environ,
        **GIT_ID,
        "CONVEYOR_HOME": str(home),
        "CONVEYOR_REGISTRY_TEST_PORT": str(free_port()),
        "CONVEYOR_REGISTRY_PROD_PORT": str(free_port()),
        "CONVEYOR_SERVER_PORT": str(free_port()),
        "NO_COLOR": "1",
        "NG_CLI_ANALYTICS": "false",
    }
    env.pop("CONVEYOR_DATABASE_URL", None)
    env.pop("BASE_IMAGE", None)
    podman_env = {**env, **podman_env}
    started: list[str] = []
    try:
        yield {"env": env, "tmp": tmp_path, "home": home, "started": started}
    finally:
        # the execution waits at its approval, so the background engine `git push` started
        # would wait with it (`engine --until-idle`): abandon it, and that engine exits
        for ex_id in started:
            subprocess.run(
                [sys.executable, "-m", "conveyor", "stop", ex_id, "--abandon",
                 "--reason", "test teardown"],
                env=env, capture_output=True, timeout=120,
            )  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "conveyor", "down"], env=env, capture_output=True, timeout=120
        )
        built = subprocess.run(
            ["podman", "images", "-q", "--filter",
             f"reference=127.0.0.1:{env['CONVEYOR_REGISTRY_TEST_PORT']}/*"],
            env=podman_env, capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        subprocess.run(["podman", "rmi", "-f", *built], env=podman_env, capture_output=True)


def conveyor(world: dict[str, Any], *args: str, cwd: Path | None = None) -> str:
    return sh([sys.executable, "-m", "conveyor", *args], cwd or world["tmp"], world["env"])


def commit_all(repo: Path, env: dict[str, str], message: str) -> str:
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "-m", message], repo, env)
    return sh(["git", "rev-parse", "HEAD"], repo, env).strip()


def wait_for(world: dict[str, Any], ex_id: str, timeout: float = 900) -> dict[str, Any]:
    """The execution once it waits for the approval or has ended."""
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(
            [sys.executable, "-m", "conveyor", "status", ex_id, "--json"],
            env=world["env"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        desc: dict[str, Any] = json.loads(res.stdout)
        if (
            desc["status"] != "InProgress"
            or desc.get("waiting", {})
            and desc["waiting"].get("type") == "approval"
        ):
            return desc
        assert time.monotonic() < deadline, f"execution {ex_id} still {desc['status']}"
        time.sleep(3)


def test_an_angular_cli_app_goes_from_init_to_a_green_build_test_deploy_and_selenium(
    world: dict[str, Any],
) -> None:
    """Angular 17 + Karma app: init --app --tests --apply, commit, push: Build (unit report),
    DeployTest and the Selenium stage succeed on exactly the commit init's files were in."""
    tmp, env = world["tmp"], world["env"]
    started = time.monotonic()
    sh(
        [
            "npx", "-y", "@angular/cli@17", "new", "demo", "--defaults", "--skip-git",
            "--interactive=false", "--ssr=false", "--style=css",
        ],
        tmp,
        env,
        timeout=900,
    )  # fmt: skip
    app = tmp / "demo"
    e2e = tmp / "demo-e2e"
    (e2e / "tests").mkdir(parents=True)
    (e2e / "tests" / "test_app.py").write_text(SELENIUM_SUITE)
    (e2e / "requirements.txt").write_text("selenium\npytest\n")
    (e2e / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    shutil.rmtree(app / "node_modules")  # the Build installs from the lock file (npm ci)
    (app / ".gitignore").write_text("node_modules/\ndist/\n.angular/\nreports/\n")

    out = conveyor(
        world,
        "init", "--app", str(app), "--tests", str(e2e), "--apply",
        "--test-port", str(free_port()), "--prod-port", str(free_port()),
    )  # fmt: skip
    assert "Angular 17 app 'demo', unit tests with Karma" in out
    assert "pytest + Selenium" in out
    lines = out.splitlines()
    nxt = lines[lines.index("next:") + 1 :]
    assert [n.split()[1] for n in nxt] == ["up", "repo", "pipeline"]

    # what init wrote is committed as it is: no hand edit between init and the Build
    app_commit = commit_all(app, env, "init --app")
    commit_all(e2e, env, "init --tests")
    conveyor(world, "validate", str(app / "pipeline.yaml"))
    conveyor(world, "up", "--no-server", "--watch-interval", "0")
    for name, repo in (("demo-e2e", e2e), ("demo", app)):
        created = conveyor(world, "repo", "create", name)
        path = created.splitlines()[0].strip()
        sh(["git", "remote", "add", "conveyor", path], repo, env)
        if name == "demo-e2e":
            assert "next: conveyor pipeline apply" in created
            applied = conveyor(world, "pipeline", "apply", str(app / "pipeline.yaml"))
            assert "next: conveyor repo create demo" in applied
    pushed = sh(["git", "push", "-q", "conveyor", "main"], e2e, env)
    pushed = sh(["git", "push", "-q", "conveyor", "main"], app, env)
    m = re.search(r"started demo execution (\S+)", pushed)
    assert m, pushed
    world["started"].append(m.group(1))
    desc = wait_for(world, m.group(1))
    elapsed = time.monotonic() - started
    stages = {s["name"]: s["status"] for s in desc["stages"]}
    assert stages["Build"] == "Succeeded", json.dumps(desc, indent=1, default=str)[-6000:]
    assert stages["DeployTest"] == "Succeeded", desc["message"]
    assert stages["EndToEndTests"] == "Succeeded", desc["message"]
    assert desc["waiting"]["type"] == "approval"
    # the Build ran on the very commit made right after init: nothing was edited by hand
    assert app_commit in json.dumps(desc["revisions"])
    reports = json.dumps([a.get("reports") for s in desc["stages"] for a in s["actions"]])
    assert "unit-tests" in reports and "e2e" in reports
    print(f"init --app to approval: {elapsed:.0f} s")
