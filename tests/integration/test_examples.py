"""The example application and its end-to-end suite, built and run for real.

examples/webapp's buildspec runs through `conveyor buildspec run` (npm ci, unit tests with
a JUnit report, ng build, podman build, push to a docker-registry on a free loopback
port); the pushed image then serves the app from a container on a free loopback port, and
examples/webapp-e2e's buildspec runs the Selenium suite against it in headless Chromium.
A deliberately broken build shows what a failing end-to-end test leaves behind.
Needs node/npm, podman, mmdebstrap (the `web` base image), docker-registry, chromium and chromium-driver
(npm packages come from ~/.npm, or from the npm registry on a cold cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.platform.containers_conf import write_containers_config
from conveyor.platform.daemon import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WEBAPP = REPO / "examples" / "webapp"
E2E = REPO / "examples" / "webapp-e2e"
APP_VERSION = "9.9.9-it"
TOOLS = {
    "node": "nodejs (Node 20.19+)",
    "npm": "npm",
    "podman": "podman",
    "mmdebstrap": "mmdebstrap",
    "docker-registry": "docker-registry",
    "git": "git",
}
missing = [f"{tool} ({pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
if missing:
    pytest.skip(f"the example app needs: {', '.join(missing)}", allow_module_level=True)

BROWSER_MISSING = [
    p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).exists()
]
needs_browser = pytest.mark.skipif(
    bool(BROWSER_MISSING),
    reason=f"no {' or '.join(BROWSER_MISSING)}: apt-get install chromium chromium-driver",
)


def copy_worktree(src: Path, dest: Path) -> None:
    """Copy the files git would commit from `src` (tracked and new, not ignored)."""
    names = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=src,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        if (src / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name)


def junit_counts(path: Path) -> dict[str, Any]:
    """Test cases, failures (with messages) and errors in a JUnit XML file."""
    root = ET.parse(path).getroot()
    cases = list(root.iter("testcase"))
    failures = [c.find("failure") for c in cases if c.find("failure") is not None]
    return {
        "tests": len(cases),
        "failures": len(failures),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "messages": [f.get("message", "") for f in failures if f is not None],
    }


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET (an HTTP error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get_content_type(), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read().decode("utf-8", "replace")


def conveyor_buildspec(
    spec: Path, source: Path, workdir: Path, env: dict[str, str], process_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        "-m",
        "conveyor",
        "buildspec",
        "run",
        str(spec),
        "--source",
        str(source),
        "--workdir",
        str(workdir),
        "--json",
    ]
    for name, value in env.items():
        args += ["--env", f"{name}={value}"]
    return subprocess.run(
        args, capture_output=True, text=True, env=process_env, timeout=900, check=False
    )


@dataclass
class AppBuild:
    result: subprocess.CompletedProcess[str]
    summary: dict[str, Any]
    workdir: Path
    image: str
    commit: str
    registry: str


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry on a free loopback port, storage in a temp dir."""
    root = tmp_path_factory.mktemp("registry")
    host = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: {host}}}\n"
    )
    log = (root / "log").open("w")
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=log
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail(f"docker-registry did not answer on {host}: {(root / 'log').read_text()}")
        yield host
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def process_env(tmp_path_factory: pytest.TempPathFactory, registry: str) -> dict[str, str]:
    """The environment Conveyor gives builds: podman's config (runc, ulimits, the insecure
    loopback registry), a private state dir, no Angular analytics prompt."""
    state = tmp_path_factory.mktemp("conveyor-state")
    env = dict(os.environ)
    env.update(write_containers_config(state / "containers", [registry]))
    env.update({"CONVEYOR_HOME": str(state), "NG_CLI_ANALYTICS": "false"})
    return env


@pytest.fixture(scope="module")
def app_build(
    tmp_path_factory: pytest.TempPathFactory, registry: str, process_env: dict[str, str]
) -> Iterator[AppBuild]:
    """examples/webapp as a fresh git repo, built by its buildspec through Conveyor."""
    root = tmp_path_factory.mktemp("webapp")
    source = root / "source"
    copy_worktree(WEBAPP, source)
    git = ["git", "-c", "user.name=it", "-c", "user.email=it@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=source, check=True)
    subprocess.run([*git, "add", "-A"], cwd=source, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "example"], cwd=source, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
    ).stdout.strip()
    tag = f"it-{commit[:12]}-{uuid.uuid4().hex[:6]}"
    base = subprocess.run(  # the Containerfile's BASE (cached after the first build)
        [sys.executable, "-m", "conveyor", "images", "build", "web"],
        env=process_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert base.returncode == 0, base.stderr[-3000:]
    result = conveyor_buildspec(
        source / "buildspec.yml",
        source,
        root / "work",
        {
            "REPOSITORY_URI": f"{registry}/webapp",
            "REGISTRY_HOST": registry,
            "IMAGE_TAG": tag,
            "CONTAINER_RUNTIME": "podman",
            "APP_VERSION": APP_VERSION,
            **{k: process_env[k] for k in ("CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF")},
        },
        process_env,
    )
    summary = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    image = f"{registry}/webapp:{tag}"
    try:
        yield AppBuild(result, summary, root / "work", image, commit, registry)
    finally:  # every name of the pushed image is under this test's own registry port
        ids = subprocess.run(
            ["podman", "images", "-q", "--filter", f"reference={registry}/webapp"],
            env=process_env,
            capture_output=True,
            text=True,
            check=False,
        )
        for image_id in sorted(set(ids.stdout.split())):
            subprocess.run(
                ["podman", "rmi", "-f", image_id], env=process_env, capture_output=True, check=False
            )


def start_container(image: str, env: dict[str, str]) -> tuple[str, str]:
    """Run `image` on a free loopback port; return its name and base URL once /healthz answers."""
    name = f"conveyor-it-webapp-{uuid.uuid4().hex[:8]}"
    port = free_port()
    subprocess.run(
        [
            "podman",
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{port}:8080",
            "-e",
            "APP_ENV=it",
            image,
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if get(base + "/healthz")[0] == 200:
                return name, base
        except OSError:
            pass
        time.sleep(0.05)
    logs = subprocess.run(["podman", "logs", name], env=env, capture_output=True, text=True).stdout
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], env=env, capture_output=True)
    pytest.fail(f"container {name} of {image} never answered /healthz; logs:\n{logs}")


@pytest.fixture(scope="module")
def served(app_build: AppBuild, process_env: dict[str, str]) -> Iterator[str]:
    """The pushed image running in a container; yields its base URL."""
    if app_build.result.returncode != 0:
        pytest.fail(f"the app build failed:\n{app_build.result.stderr[-4000:]}")
    name, base = start_container(app_build.image, process_env)
    try:
        yield base
    finally:
        subprocess.run(
            ["podman", "rm", "-f", "-t", "0", name],
            env=process_env,
            capture_output=True,
            check=False,
        )


def test_buildspec_tests_builds_and_pushes_the_image(app_build: AppBuild) -> None:
    """The webapp buildspec succeeds: unit tests pass in JUnit, the image is in the registry, the
    manifests are the artifact."""
    assert app_build.result.returncode == 0, app_build.result.stderr[-4000:]
    assert app_build.summary.get("succeeded") is True
    reports = list(app_build.workdir.rglob("unit-junit.xml"))
    assert reports, f"no unit-junit.xml under {app_build.workdir}"
    counts = junit_counts(reports[0])
    assert counts["tests"] > 0
    assert (counts["failures"], counts["errors"]) == (0, 0), counts["messages"]
    tags = json.loads(get(f"http://{app_build.registry}/v2/webapp/tags/list")[2])["tags"]
    assert app_build.image.rsplit(":", 1)[1] in tags
    files = {f for a in app_build.summary["artifacts"] for f in a["files"]}
    assert {"k8s/deployment.yaml", "k8s/service.yaml", "k8s/configmap.yaml"} <= files


def test_image_serves_the_app_deep_links_and_healthz(served: str, app_build: AppBuild) -> None:
    """/, a deep link and /healthz answer 200; /healthz carries the build's version and commit;
    a missing asset is a real 404."""
    status, ctype, index = get(served + "/")
    assert (status, ctype) == (200, "text/html")
    assert "<app-root>" in index
    for path in ("/tasks", "/tasks/2", "/tasks/new", "/about"):
        status, ctype, body = get(served + path)
        assert (status, ctype, body) == (200, "text/html", index), path
    status, ctype, body = get(served + "/healthz")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == {"status": "ok", "version": APP_VERSION, "commit": app_build.commit}
    assert json.loads(get(served + "/config.json")[2])["environment"] == "it"
    assert get(served + "/main-MISSING.js")[0] == 404


@needs_browser
def test_e2e_suite_passes_against_the_container(
    served: str, app_build: AppBuild, process_env: dict[str, str], tmp_path: Path
) -> None:
    """The Selenium suite's buildspec passes against the container, with JUnit, HTML and page
    screenshots as artifacts."""
    source = tmp_path / "e2e"
    copy_worktree(E2E, source)
    result = conveyor_buildspec(
        source / "buildspec.yml",
        source,
        tmp_path / "work",
        {
            "BASE_URL": served,
            "EXPECTED_VERSION": APP_VERSION,
            "EXPECTED_COMMIT": app_build.commit,
            "EXPECTED_ENVIRONMENT": "it",
            "PYTHON": sys.executable,
        },
        process_env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout)
    (report,) = [r for r in summary["reports"] if r["name"] == "e2e"]
    assert report["total"] > 0 and report["failed"] == 0 and report["errors"] == 0, report
    files = {f for a in summary["artifacts"] for f in a["files"]}
    assert {
        "reports/e2e-junit.xml",
        "reports/e2e-report.html",
        "reports/screenshots/page-task-list.png",
    } <= files
    counts = junit_counts(next((tmp_path / "work").rglob("e2e-junit.xml")))
    assert counts["tests"] == report["total"] and counts["failures"] == 0


@needs_browser
def test_broken_feature_fails_e2e_with_a_screenshot(
    app_build: AppBuild, process_env: dict[str, str], tmp_path: Path
) -> None:
    """A build whose filter only reacts on blur passes the unit tests but fails the e2e filter
    tests; each failure names its screenshot, and the reports carry the message."""
    assert app_build.result.returncode == 0, "needs the app build"
    src = next(
        p.parent for p in app_build.workdir.rglob("angular.json") if "node_modules" not in p.parts
    )
    broken = tmp_path / "broken"
    shutil.copytree(
        src,
        broken,
        symlinks=True,
        ignore=shutil.ignore_patterns("node_modules", "dist", ".angular", ".git"),
    )
    (broken / "node_modules").symlink_to(src / "node_modules")
    page = broken / "src/app/tasks/task-list-page.ts"
    page.write_text(page.read_text().replace('(input)="query.set', '(change)="query.set'))
    env = {**process_env, "APP_VERSION": "0.0.1-broken"}
    for cmd in (
        ["npx", "ng", "build", "--no-progress"],
        ["node", "scripts/build-info.mjs"],
        [
            "podman",
            "build",
            "--timestamp",
            "0",
            "-q",
            "-t",
            f"localhost/webapp-it-broken:{tmp_path.name}",
            ".",
        ],
    ):
        done = subprocess.run(cmd, cwd=broken, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{cmd}: {done.stderr[-3000:]}"
    image = f"localhost/webapp-it-broken:{tmp_path.name}"
    name, base = start_container(image, process_env)
    reports = tmp_path / "reports"
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/test_filter.py",
                f"--junitxml={reports / 'e2e-junit.xml'}",
                f"--html={reports / 'e2e-report.html'}",
                "--self-contained-html",
            ],
            cwd=E2E,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={
                **process_env,
                "BASE_URL": base,
                "REPORTS_DIR": str(reports),
                "E2E_TIMEOUT": "3",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
        )
    finally:
        subprocess.run(
            ["podman", "rm", "-f", "-t", "0", name], env=process_env, capture_output=True
        )
        subprocess.run(["podman", "rmi", "-f", image], env=process_env, capture_output=True)
    assert run.returncode == 1, run.stdout[-3000:]
    counts = junit_counts(reports / "e2e-junit.xml")
    assert counts["failures"] >= 1
    shots = sorted((reports / "screenshots").glob("FAILED-*.png"))
    assert len(shots) == counts["failures"]
    for message in counts["messages"]:
        assert "the task list should show" in message or "No task matches" in message, message
        shot = message.rsplit("[screenshot: ", 1)[1].rstrip("]")
        assert Path(shot).is_file() and Path(shot).stat().st_size > 0
    html = (reports / "e2e-report.html").read_text()
    assert "the task list should show 1 row(s) but shows 3" in html
