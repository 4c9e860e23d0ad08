"""Monitoring and rollback with real components: git, the prod registry, podman pods behind the
front door, the engine, the deploy and monitor actions, a webhook receiver.

v1 is healthy. v2 answers /healthz long enough to pass its readiness probe, then deletes it
(a release that breaks a few seconds after it went live). The monitor of the prod stage
finds the breach during its bake, the execution fails, Conveyor starts a rollback
execution that redeploys v1's digest with v1's manifests, and the front door serves v1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from conveyor.actions.monitor import Monitor
from conveyor.adapters.containers import ContainerRuntime
from conveyor.bootstrap import App, build
from conveyor.errors import ActionError
from conveyor.model.pipeline import Action, Environment
from conveyor.monitoring.dora import dora
from conveyor.monitoring.metrics import render_metrics
from conveyor.monitoring.watcher import Watcher
from conveyor.platform.daemon import free_port
from conveyor.platform.environment import PodmanEnvironment
from conveyor.platform.local import LocalPlatform
from conveyor.settings import Settings
from conveyor.store.records import ExecutionRecord
from tests.conftest import drive
from tests.integration.conftest import platform_settings
from tests.integration.testimages import BUSYBOX, action_context, pipeline_with, write_manifests

pytestmark = pytest.mark.integration

# v2: httpd in the background, /healthz removed 6 s after start (after the readiness probe)
CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
STOPSIGNAL SIGKILL
EXPOSE 8080
CMD {cmd}
"""
SERVE = '["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]'
SICKEN = '["sh", "-c", "httpd -p 8080 -h /www && sleep 6 && rm /www/healthz && exec sleep 1000000"]'

PIPELINE = """\
name: shop
variables:
  - {{name: IMAGE, defaultValue: none}}
  - {{name: BAKE, defaultValue: 2s}}
environments:
  {env}: {{registry: prod, port: {port}, settings: {{drainSeconds: 1}}}}
stages:
  - name: Source
    actions:
      - name: App
        type: source.git
        outputs: [app_src]
        config: {{repository: "{repo}", branch: main}}
  - name: Prod
    actions:
      - name: DeployToProd
        type: deploy
        environment: {env}
        inputs: [app_src]
        config: {{image: "#{{variables.IMAGE}}", timeout: 60}}
      - name: Bake
        type: monitor
        runOrder: 2
        environment: {env}
        timeout: 120
        config:
          bake: "#{{variables.BAKE}}"
          interval: 0.5
          timeout: 2
          probes: [{{path: /healthz, minAvailability: 0.99, maxLatencyMs: 1500}}]
settings:
  notifications: {{webhook: "{hook}"}}
"""


class Hook:
    """A webhook receiver on loopback that keeps every JSON body it gets."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - answers probes too
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, environment: str | None = None) -> list[str]:
        return [
            b["conveyor"]["event"]
            for b in self.bodies
            if environment is None or b["conveyor"].get("environment") == environment
        ]

    def wait_for(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def build_image(runtime: ContainerRuntime, work: Path, ref: str, version: str, cmd: str) -> None:
    ctx = work / f"ctx-{version}"
    (ctx / "www").mkdir(parents=True)
    shutil.copy(BUSYBOX, ctx / "busybox")
    (ctx / "www" / "index.html").write_text(f"{version}\n")
    (ctx / "www" / "healthz").write_text(f"{version}\n")
    (ctx / "Containerfile").write_text(CONTAINERFILE.format(cmd=cmd))
    runtime.build(ctx, ref, "-f", str(ctx / "Containerfile"))
    runtime.push(ref)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Registries, v1/v2/v3 in the prod registry, a git repo with the manifests, a webhook."""
    tmp = tmp_path_factory.mktemp("rollback")
    settings = platform_settings(tmp)
    platform = LocalPlatform(settings)
    platform.up()
    runtime = ContainerRuntime(platform.container_env())
    host = platform.registry_host("prod")
    images = {}
    for version, cmd in (("v1", SERVE), ("v2", SICKEN), ("v3", SERVE)):
        ref = f"{host}/shop:{version}"
        build_image(runtime, tmp, ref, version, cmd)
        images[version] = f"{host}/shop@{platform.resolve_digest(ref)}"
    repo = tmp / "shop-src"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_manifests(repo, "shop:latest", replicas=1)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v1")
    hook = Hook()
    yield {
        "settings": settings,
        "platform": platform,
        "images": images,
        "repo": repo,
        "hook": hook,
        "ports": {k: settings.extra[f"registry_{k}_port"] for k in ("test", "prod")},
    }
    hook.close()
    platform.down()


@pytest.fixture
def scene(world: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh prod-like environment (own name, port, network) and an app on the world's state."""
    env = f"it{secrets.token_hex(3)}"
    port = free_port()
    app = build(world["settings"])
    text = PIPELINE.format(env=env, port=port, repo=world["repo"], hook=world["hook"].url)
    world["hook"].bodies.clear()
    yield {
        "app": app,
        "env": env,
        "url": f"http://127.0.0.1:{port}/",
        "text": text,
        "tmp": tmp_path,
        **world,
    }
    PodmanEnvironment(world["platform"], Environment(env, port=port)).remove()
    app.store.close()


def save(app: App, text: str, tmp: Path) -> str:
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    path = tmp / "pipeline.yaml"
    path.write_text(text)
    p = load_pipeline(path, app.registry.catalogue())
    app.store.save_pipeline(p.name, load(path)[0], str(path))
    return p.name


def run(app: App, text: str, tmp: Path, until: Any = None, **variables: str) -> str:
    """Start an execution with an in-process engine; drive it until it (or `until`) is done."""
    name = save(app, text, tmp)
    eng = app.engine()
    ex = eng.start(name, variables=variables)
    done = until or (lambda a: a.store.execution(ex).status not in ("InProgress", "Stopping"))
    drive(app, eng, done, timeout=180)
    return ex


def rollbacks(app: App) -> list[ExecutionRecord]:
    return [e for e in app.store.list_executions("shop", limit=100) if e.kind == "rollback"]


def served(url: str) -> str:
    return httpx.get(url + "index.html", timeout=5).text.strip()


def test_a_release_that_turns_unhealthy_is_rolled_back_with_the_history_complete(
    scene: dict[str, Any],
) -> None:
    """v2 breaks after going live: the monitor fails, a rollback execution restores v1."""
    app, env, images, tmp = scene["app"], scene["env"], scene["images"], scene["tmp"]
    ex1 = run(app, scene["text"], tmp, IMAGE=images["v1"], BAKE="2s")
    assert app.store.execution(ex1).status == "Succeeded"
    assert served(scene["url"]) == "v1"
    v1_commit = app.store.execution(ex1).revisions["App"]["CommitId"]

    (scene["repo"] / "VERSION").write_text("2\n")
    git(scene["repo"], "add", ".")
    git(scene["repo"], "commit", "-q", "-m", "v2")

    def rolled_back(a: App) -> bool:
        rbs = rollbacks(a)
        return bool(rbs) and rbs[0].status not in ("InProgress", "Stopping")

    ex2 = run(app, scene["text"], tmp, until=rolled_back, IMAGE=images["v2"], BAKE="40s")

    failed = app.store.execution(ex2)
    assert failed.status == "Failed"
    bake = next(a for a in app.store.attempts_for(ex2) if a.action == "Bake")
    assert (bake.status, bake.reason) == ("Failed", "ActionFailed")
    assert "availability" in bake.message and "< 0.99" in bake.message
    assert "HTTP 404" in bake.message
    assert bake.details["monitor"]["verdict"] == "breach"
    assert bake.details["monitor"]["rounds"] < bake.details["monitor"]["plannedRounds"]

    (rb,) = rollbacks(app)
    assert rb.status == "Succeeded"
    assert rb.trigger["type"] == "Rollback"
    assert (rb.trigger["of"], rb.trigger["to"]) == (ex2, ex1)
    assert rb.revisions["App"]["CommitId"] == v1_commit
    (att,) = app.store.attempts_for(rb.id)
    assert (att.stage, att.action, att.type) == ("Prod", "DeployToProd", "deploy.rollback")

    assert served(scene["url"]) == "v1"
    history = list(reversed(app.store.deployment_records(env)))
    assert [(d.kind, d.digest, d.execution_id) for d in history] == [
        ("deploy", images["v1"].split("@")[1], ex1),
        ("deploy", images["v2"].split("@")[1], ex2),
        ("rollback", images["v1"].split("@")[1], rb.id),
    ]
    assert history[2].commit == v1_commit
    assert history[2].image == images["v1"]

    scene["hook"].wait_for(2)  # alerts are sent in the background
    events = scene["hook"].events()
    assert events == ["rollback-started", "rollback-finished"]
    finished = scene["hook"].bodies[1]
    assert finished["conveyor"]["status"] == "Succeeded"
    assert env in finished["text"] and "rolled back" in finished["text"]

    m = dora(app.store, days=1, environment=env)
    assert m["deploymentFrequency"]["deployments"] == 2
    assert m["changeFailureRate"]["rate"] == 0.5
    assert (m["timeToRestore"]["restored"], m["timeToRestore"]["open"]) == (1, 0)
    assert m["leadTimeForChanges"]["count"] == 2

    text = render_metrics(app.store).decode()
    assert f'conveyor_rollbacks_total{{environment="{env}"}} 1.0' in text
    assert f'conveyor_deployments_total{{environment="{env}",kind="deploy"}} 2.0' in text
    assert 'conveyor_executions{kind="rollback",pipeline="shop",status="Succeeded"}' in text


def test_manual_rollback_to_the_previous_version_and_to_a_named_digest(
    scene: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conveyor rollback ENV` restores v1 after v3; `--to DIGEST` brings v3 back."""
    from conveyor.cli.main import cli

    app, env, images, tmp = scene["app"], scene["env"], scene["images"], scene["tmp"]
    ex1 = run(app, scene["text"], tmp, IMAGE=images["v1"], BAKE="1s")
    ex3 = run(app, scene["text"], tmp, IMAGE=images["v3"], BAKE="1s")
    assert [app.store.execution(e).status for e in (ex1, ex3)] == ["Succeeded"] * 2
    assert served(scene["url"]) == "v3"
    settings = scene["settings"]
    monkeypatch.setenv("CONVEYOR_HOME", str(settings.state_dir))
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", settings.database_url)
    for name, port in scene["ports"].items():
        monkeypatch.setenv(f"CONVEYOR_REGISTRY_{name.upper()}_PORT", str(port))
    runner = CliRunner()

    res = runner.invoke(cli, ["rollback", env, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["kind"] == "rollback" and out["status"] == "Succeeded"
    assert out["trigger"]["to"] == ex1 and out["trigger"]["automatic"] is False
    assert served(scene["url"]) == "v1"

    v3_digest = images["v3"].split("@")[1]
    res = runner.invoke(cli, ["rollback", env, "--to", v3_digest[:19], "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["trigger"]["to"] == ex3
    assert served(scene["url"]) == "v3"
    kinds = [(d.kind, d.digest) for d in reversed(app.store.deployment_records(env))]
    assert kinds[-2:] == [("rollback", images["v1"].split("@")[1]), ("rollback", v3_digest)]

    res = runner.invoke(cli, ["rollback", env, "--to", "sha256:" + "0" * 20])
    assert res.exit_code == 2
    assert "neither an execution nor a digest deployed to" in res.output


def test_the_watcher_alerts_once_when_prod_turns_unhealthy_and_once_when_it_recovers(
    scene: dict[str, Any],
) -> None:
    """Stopping the serving pod flips the health to unhealthy (one alert), restarting it back."""
    app, env, tmp = scene["app"], scene["env"], scene["tmp"]
    run(app, scene["text"], tmp, IMAGE=scene["images"]["v1"], BAKE="1s")
    watcher = Watcher(app, interval=1, timeout=2)

    def reading() -> Any:
        return next(r for r in watcher.check_once() if r.environment == env)

    assert reading().healthy
    assert scene["hook"].events(env) == []
    runtime = ContainerRuntime(scene["platform"].container_env())
    pod = app.store.current_deployment_records()[env].details["pods"][0]
    runtime.stop_pod(pod)
    down = reading()
    assert not down.healthy and down.changed and down.alerted
    assert not reading().changed  # still down: no second alert
    assert app.store.health_records()[env].healthy is False
    runtime.start_pod(pod)
    deadline = time.monotonic() + 30
    up = reading()
    while not up.healthy and time.monotonic() < deadline:
        time.sleep(0.5)
        up = reading()
    assert up.healthy and up.changed
    assert scene["hook"].events(env) == ["environment-unhealthy", "environment-recovered"]
    assert (
        f'conveyor_environment_healthy{{environment="{env}"}} 1.0'
        in render_metrics(app.store).decode()
    )


def test_an_unreachable_monitoring_url_is_a_tool_error_naming_the_url(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """A probe URL nothing listens on fails as ToolError (no rollback), naming the URL."""
    port = free_port()
    env = Environment("nowhere", url=f"http://127.0.0.1:{port}/")
    action = Action("Bake", "monitor", environment="nowhere")
    ctx = action_context(
        world["platform"],
        pipeline_with({"nowhere": env}, action),
        action,
        {"bake": "2s", "interval": 0.5},
        tmp_path,
    )
    with pytest.raises(ActionError) as info:
        Monitor().run(ctx)
    assert type(info.value) is ActionError
    assert (
        f"GET http://127.0.0.1:{port}/healthz does not answer (ConnectError" in info.value.message
    )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus server scraping itself (Debian's `prometheus` package)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed: apt-get install -y prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs: [{job_name: self, static_configs: "
        f"[{{targets: ['127.0.0.1:{port}']}}]}}]\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = httpx.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=2).json()
                if body["data"]["result"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _run_monitor(world: dict[str, Any], tmp: Path, prometheus: str, query: dict[str, Any]) -> Any:
    hook = world["hook"]  # it answers GET with 200: the probed URL
    env = Environment("metrics", url=hook.url.rsplit("/", 1)[0] + "/")
    action = Action("Bake", "monitor", environment="metrics")
    cfg = {
        "bake": "1s",
        "interval": 0.5,
        "probes": [{"url": hook.url}],
        "prometheus": {"url": prometheus, "queries": [query]},
    }
    ctx = action_context(
        world["platform"], pipeline_with({"metrics": env}, action), action, cfg, tmp
    )
    return Monitor().run(ctx)


def test_promql_thresholds_pass_fail_and_a_bad_query_is_named(
    world: dict[str, Any], prometheus: str, tmp_path: Path
) -> None:
    """`up` >= 1 passes; `up` <= 0 breaches with the value; a syntax error names the query."""
    ok = _run_monitor(world, tmp_path / "a", prometheus, {"name": "up", "query": "up", "min": 1})
    assert ok.succeeded
    assert ok.details["monitor"]["queries"][0]["values"][0]["value"] == 1.0
    bad = _run_monitor(world, tmp_path / "b", prometheus, {"name": "up", "query": "up", "max": 0})
    assert not bad.succeeded and bad.reason == "ActionFailed"
    assert "query 'up' {" in bad.message and "} 1 > 0" in bad.message
    with pytest.raises(ActionError, match=r"PromQL query 'sum\(up' failed on .*bad_data"):
        _run_monitor(
            world, tmp_path / "c", prometheus, {"name": "broken", "query": "sum(up", "max": 1}
        )


def test_up_starts_the_watcher_daemon_env_list_shows_health_and_down_stops_it(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up --watch-interval` starts a watcher that records health; `env list`; `down` stops it."""
    from conveyor.cli.main import cli
    from conveyor.monitoring.watcher import daemon
    from conveyor.store.db import Store

    home = tmp_path / "home"
    settings = Settings.from_env(home)
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    monkeypatch.delenv("CONVEYOR_DATABASE_URL", raising=False)
    for name in ("test", "prod"):
        monkeypatch.setenv(f"CONVEYOR_REGISTRY_{name.upper()}_PORT", str(free_port()))
    store = Store(settings.database_url)
    hook = world["hook"]  # answers GET /healthz with 200: a healthy "environment"
    store.record_deployment(
        environment="web",
        pipeline="shop",
        execution_id="e1",
        kind="deploy",
        image="x@sha256:1",
        digest="sha256:1",
        url=hook.url.rsplit("/", 1)[0],
        actor="test",
    )
    runner = CliRunner()
    try:
        res = runner.invoke(cli, ["up", "--watch-interval", "0.5", "--json"])
        assert res.exit_code == 0, res.output
        assert "health watcher (every 0.5 s)" in json.loads(res.stdout)["started"]
        assert daemon(settings).pid() is not None
        deadline = time.monotonic() + 30
        while "web" not in store.health_records() and time.monotonic() < deadline:
            time.sleep(0.2)
        res = runner.invoke(cli, ["env", "list", "--json"])
        (row,) = json.loads(res.stdout)
        assert row["environment"] == "web" and row["health"]["healthy"] is True
        assert row["health"]["detail"].startswith("HTTP 200")
    finally:
        res = runner.invoke(cli, ["down", "--json"])
        store.close()
    assert "health watcher" in json.loads(res.stdout)["stopped"]
    assert daemon(settings).pid() is None


def test_conveyor_run_that_fails_its_monitor_still_finishes_the_rollback(
    scene: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conveyor run` exits 1 when the monitor fails; the rollback it started still completes."""
    from conveyor.cli.main import cli

    app, env, images, tmp = scene["app"], scene["env"], scene["images"], scene["tmp"]
    ex1 = run(app, scene["text"], tmp, IMAGE=images["v1"], BAKE="1s")
    settings = scene["settings"]
    monkeypatch.setenv("CONVEYOR_HOME", str(settings.state_dir))
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", settings.database_url)
    for name, port in scene["ports"].items():
        monkeypatch.setenv(f"CONVEYOR_REGISTRY_{name.upper()}_PORT", str(port))
    res = CliRunner().invoke(
        cli,
        [
            "run",
            str(tmp / "pipeline.yaml"),
            "--var",
            f"IMAGE={images['v2']}",
            "--var",
            "BAKE=40s",
            "--json",
        ],
    )
    assert res.exit_code == 1, res.output
    ex2 = json.loads(res.stdout)["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rbs = [r for r in rollbacks(app) if r.trigger["of"] == ex2]
        if rbs and rbs[0].status not in ("InProgress", "Stopping"):
            break
        time.sleep(0.2)
    (rb,) = [r for r in rollbacks(app) if r.trigger["of"] == ex2]
    assert rb.status == "Succeeded", rb.message
    assert rb.trigger["to"] == ex1
    assert served(scene["url"]) == "v1"
    assert [d.kind for d in app.store.deployment_records(env)][:1] == ["rollback"]
