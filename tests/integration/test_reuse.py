"""Reuse by input digest (issue 18.1) with real git, a real registry, podman and the store:
the same commit twice builds once; a damaged earlier output or a failure is never reused."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters.containers import ContainerRuntime
from conveyor.bootstrap import build
from conveyor.engine import reuse
from conveyor.model.pipeline import Environment
from conveyor.platform.daemon import free_port
from conveyor.platform.environment import PodmanEnvironment
from conveyor.platform.local import LocalPlatform
from conveyor.service import evidence
from conveyor.store.artifacts import ArtifactStore
from conveyor.store.records import AttemptRecord
from tests.conftest import drive, run_pipeline
from tests.integration.conftest import platform_settings
from tests.integration.testimages import BUSYBOX, write_manifests

pytestmark = pytest.mark.integration

BUILDSPEC = """\
version: 0.2
phases:
  build:
    commands:
      - mkdir -p reports
      - >-
        printf '<testsuite name="unit" tests="2" failures="0"><testcase classname="app" name="a"/><testcase classname="app" name="b"/></testsuite>' > reports/unit.xml
      - cp {busybox} busybox
      - podman build --timestamp 0 -t "$REPOSITORY_URI:latest" .
      - podman push "$REPOSITORY_URI:latest"
reports:
  unit:
    files: [unit.xml]
    base-directory: reports
    file-format: JUNITXML
artifacts:
  files: ["k8s/**/*"]
"""

CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
STOPSIGNAL SIGKILL
EXPOSE 8080
CMD ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""

PIPELINE = """\
name: reuse
environments:
  test: {{registry: test, repository: reuseapp}}
  {env}: {{registry: test, port: {port}, settings: {{drainSeconds: 1}}}}
stages:
  - name: Source
    actions:
      - {{name: App, type: source.git, outputs: [app_src], namespace: SourceApp,
          config: {{repository: "{repo}", branch: main}}}}
      - {{name: Tests, type: source.git, outputs: [tests_src],
          config: {{repository: "{tests}", branch: main}}}}
  - name: Build
    actions:
      - name: Build
        type: build
        inputs: [app_src]
        outputs: [bundle]
        namespace: Build
        config: {{publishes: {{environment: test, repository: reuseapp, tag: latest}}}}
  - name: Deploy
    actions:
      - {{name: DeployTest, type: deploy, environment: {env}, inputs: [bundle],
          config: {{manifests: k8s/, image: "#{{Build.ImageURI}}", timeout: 60}}}}
      - {{name: E2E, type: shell, runOrder: 2, inputs: [tests_src],
          config: {{commands: ["cat check.txt"]}}}}
  - name: Gate
    actions:
      - {{name: Approve, type: approval, config: {{digest: "#{{Build.ImageDigest}}"}}}}
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = platform_settings(tmp_path)
    platform = LocalPlatform(settings)
    platform.up()
    repo = tmp_path / "app"
    (repo / "www").mkdir(parents=True)
    (repo / "www" / "index.html").write_text("v1\n")
    (repo / "www" / "healthz").write_text("ok\n")
    (repo / "Containerfile").write_text(CONTAINERFILE)
    (repo / "buildspec.yml").write_text(BUILDSPEC.format(busybox=BUSYBOX))
    write_manifests(repo, "reuseapp:latest", replicas=1)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v1")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "check.txt").write_text("one check\n")
    git(tests, "init", "-q", "-b", "main")
    git(tests, "add", ".")
    git(tests, "commit", "-q", "-m", "tests v1")
    env, port = f"ru{secrets.token_hex(3)}", free_port()
    app = build(settings)
    text = PIPELINE.format(env=env, port=port, repo=repo, tests=tests)
    yield {
        "app": app,
        "text": text,
        "platform": platform,
        "settings": settings,
        "env": env,
        "tests": tests,
    }
    app.store.close()
    PodmanEnvironment(platform, Environment(env, port=port)).remove()
    host = platform.registry_host("test")
    ContainerRuntime(platform.container_env()).run(
        "rmi", "-f", "--ignore", f"{host}/reuseapp:latest", check=False
    )
    platform.down()


def _start_until_gate(w: dict[str, Any], tmp: Path, **trigger: Any) -> str:
    """Start an execution and drive it until its approval waits."""
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    app = w["app"]
    path = tmp / "pipeline.yaml"
    path.write_text(w["text"])
    p = load_pipeline(path, app.registry.catalogue())
    app.store.save_pipeline(p.name, load(path)[0], str(path))
    eng = app.engine()
    ex = eng.start(p.name, trigger={"type": "test", **trigger})

    def at_gate(a: Any) -> bool:
        row = a.store.execution(ex)
        if row.status not in ("InProgress", "Stopping"):
            raise AssertionError(f"execution {ex} ended: {row.status}: {row.message}")
        return any(r.status == "Pending" for r in a.store.approval_records(ex))

    drive(app, eng, at_gate, timeout=240)
    return ex


def _build(app: Any, ex: str) -> AttemptRecord:
    return next(a for a in app.store.attempts_for(ex) if a.action == "Build")


def test_the_same_commit_twice_builds_once_deploys_the_same_digest_and_keeps_evidence(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """Unchanged app: builds once (same digest, reports kept), even if only tests changed."""
    app = world["app"]
    first = _start_until_gate(world, tmp_path)
    second = _start_until_gate(world, tmp_path)
    b1, b2 = _build(app, first), _build(app, second)
    assert b1.message.startswith("build succeeded"), b1.message
    assert "reused" not in b1.details
    assert b2.status == "Succeeded"
    assert b2.message == f"reused from execution {first}, attempt {b1.id}"
    assert b2.details["reused_from"] == {
        "execution": first,
        "attempt": b1.id,
        "number": 1,
    }
    assert b2.input_digest == b1.input_digest and b2.input_digest.startswith("sha256:")
    assert "podman" not in Path(b2.log_path).read_text()  # nothing was built again
    assert b2.variables["ImageDigest"] == b1.variables["ImageDigest"]
    deployed = [d.digest for d in app.store.deployment_records(world["env"])]
    assert deployed == [b1.variables["ImageDigest"]] * 2
    # the approval of run 2 shows the unit tests the reused build ran
    from conveyor.engine.engine import pipeline_of

    ex2 = app.store.execution(second)
    gate = next(r for r in app.store.approval_records(second) if r.status == "Pending")
    ev = evidence.gather(
        app.store,
        ArtifactStore(world["settings"].state_dir / "artifacts"),
        world["settings"],
        pipeline_of(ex2.definition),
        ex2,
        gate,
    )
    assert ev["tests"]["unit"]["total"] == 2 and ev["tests"]["unit"]["passed"] == 2
    assert gate.digest == b1.variables["ImageDigest"]
    # the API and `--json` name the attempt reused
    from conveyor.service.queries import PipelineCache, execution_detail

    detail = execution_detail(app.store, PipelineCache(), ex2)
    build_view = detail["stages"][1]["actions"][0]
    assert build_view["reused_from"]["execution"] == first
    # a change to the tests repository alone: the app is not rebuilt, the new tests run
    (world["tests"] / "check.txt").write_text("two checks\n")
    git(world["tests"], "commit", "-q", "-am", "tests v2")
    third = _start_until_gate(world, tmp_path)
    assert _build(app, third).details["reused_from"]["execution"] == first
    e2e = next(a for a in app.store.attempts_for(third) if a.action == "E2E")
    assert "two checks" in Path(e2e.log_path).read_text()
    # --no-reuse: a real build again
    fourth = _start_until_gate(world, tmp_path, reuse=False)
    b4 = _build(app, fourth)
    assert b4.message.startswith("build succeeded") and "reused_from" not in b4.details


SHELL = """\
name: cached
stages:
  - name: Build
    actions:
      - name: Make
        type: shell
        reuse: true
        outputs: [out]
        namespace: M
        config: {{commands: ["echo made > made.txt", "echo ::set-output N=1", "{last}"]}}
"""


def test_a_damaged_earlier_output_is_not_reused_and_a_failure_never_is(
    app: Any, tmp_path: Path
) -> None:
    """A corrupted reused artifact is discarded with a warning; a failed attempt is never reused."""
    failed = run_pipeline(app, SHELL.format(last="false"), tmp_path)
    assert app.store.execution(failed).status == "Failed"
    again = run_pipeline(app, SHELL.format(last="false"), tmp_path)
    a = app.store.attempts_for(again)[0]
    assert a.status == "Failed" and "reused" not in a.message  # ran (and failed) for real

    first = run_pipeline(app, SHELL.format(last="true"), tmp_path)
    second = run_pipeline(app, SHELL.format(last="true"), tmp_path)
    a1, a2 = app.store.attempts_for(first)[0], app.store.attempts_for(second)[0]
    assert a2.message.startswith(f"reused from execution {first}")
    assert a2.artifacts == a1.artifacts and a2.variables == {"N": "1"}

    # damage the stored output: the next run warns and makes it again
    store = ArtifactStore(app.settings.state_dir / "artifacts")
    entry = store.manifest(a1.artifacts["out"])[0]
    blob = store.blobs / str(entry["blob"])[:2] / str(entry["blob"])
    blob.chmod(0o644)
    blob.write_text("tampered\n")
    third = run_pipeline(app, SHELL.format(last="true"), tmp_path)
    a3 = app.store.attempts_for(third)[0]
    assert a3.status == "Succeeded" and "reused" not in a3.message
    log = Path(a3.log_path).read_text()
    assert f"warning: not reusing {a1.id}" in log and "corrupted made.txt" in log
    assert a3.artifacts == a1.artifacts  # the same content, made again...
    assert reuse.verify_artifact(store, a3.artifacts["out"]) is None  # ...and whole again


def test_conveyor_run_json_names_the_reused_attempt_and_no_reuse_runs_it_again(
    tmp_path: Path,
) -> None:
    """`run --json` shows reused_from on a reused action; `run --no-reuse` runs it for real."""
    import json
    import os
    import sys

    f = tmp_path / "p.yaml"
    f.write_text(SHELL.format(last="true"))
    env = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}

    def run(*extra: str) -> dict[str, Any]:
        res = subprocess.run(
            [sys.executable, "-m", "conveyor", "run", str(f), "--json", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        out: dict[str, Any] = json.loads(res.stdout)
        return out["stages"][0]["actions"][0]

    first = run()
    assert first["reused_from"] is None
    second = run()
    assert second["reused_from"]["number"] == 1 and second["message"].startswith("reused from")
    third = run("--no-reuse")
    assert third["reused_from"] is None and not third["message"].startswith("reused")


def test_the_dashboard_links_a_reused_action_to_the_execution_it_came_from(
    app: Any, tmp_path: Path
) -> None:
    """The execution page's stage view says "reused from" with a link to the earlier execution."""
    from conveyor.server.pages import templates
    from conveyor.service.queries import PipelineCache, execution_detail

    first = run_pipeline(app, SHELL.format(last="true"), tmp_path)
    second = run_pipeline(app, SHELL.format(last="true"), tmp_path)
    detail = execution_detail(app.store, PipelineCache(), app.store.execution(second))
    html = templates.get_template("_stages.html").render(
        current=detail, stages=detail["stages"], interval=0
    )
    assert f'reused from <a href="/executions/{first}">execution {first}</a>, attempt 1' in html
