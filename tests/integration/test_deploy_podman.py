"""`deploy` with the podman driver: real registry, real pods, the front door switching releases."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.actions.base import ActionResult
from conveyor.actions.deploy import Deploy
from conveyor.adapters.containers import ContainerRuntime
from conveyor.errors import ActionFailed, Unavailable
from conveyor.model.pipeline import Action, Environment
from conveyor.platform.daemon import free_port
from conveyor.platform.environment import PodmanEnvironment
from conveyor.platform.frontdoor import FrontDoor
from conveyor.platform.local import LocalPlatform
from tests.integration.testimages import (
    action_context,
    build_image,
    pipeline_with,
    remove_images,
    started_platform,
    write_manifests,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    yield from started_platform(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module")
def images(
    platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """v1, v2 and `broken` (no /healthz) in the test registry, as digest references."""
    runtime = ContainerRuntime(platform.container_env())
    work = tmp_path_factory.mktemp("images")
    host = platform.registry_host("test")
    out = {}
    for version in ("v1", "v2", "broken"):
        build_image(runtime, work, f"{host}/webapp:{version}", version, healthy=version != "broken")
        out[version] = f"{host}/webapp@{platform.resolve_digest(f'{host}/webapp:{version}')}"
    yield out
    remove_images(runtime, [f"{host}/webapp:{v}" for v in out] + list(out.values()))


@pytest.fixture
def environment(platform: LocalPlatform) -> Iterator[Environment]:
    """A fresh environment (own name, network and port); its pods and front door removed after."""
    env = Environment(
        f"it{secrets.token_hex(3)}",
        registry="test",
        port=free_port(),
        settings={"drainSeconds": 10},
    )
    yield env
    PodmanEnvironment(platform, env).remove()


def deploy(
    platform: LocalPlatform,
    env: Environment,
    tmp_path: Path,
    image: str | None,
    *,
    timeout: int = 30,
    manifests: Path | None = None,
) -> ActionResult:
    src = tmp_path / f"src-{secrets.token_hex(2)}"
    if manifests is None:
        write_manifests(src, "webapp:latest")
    else:
        src = manifests
    action = Action("DeployToEnv", "deploy", environment=env.name, inputs=("app_src",))
    ctx = action_context(
        platform,
        pipeline_with({env.name: env}, action),
        action,
        {"timeout": timeout, **({"image": image} if image else {})},
        tmp_path / secrets.token_hex(2),
        inputs={"app_src": src},
    )
    return Deploy().run(ctx)


def served(url: str, path: str = "index.html") -> str:
    return httpx.get(url + path, timeout=5).text.strip()


def test_deploy_v1_then_v2_switches_the_front_door(
    platform: LocalPlatform, images: dict[str, str], environment: Environment, tmp_path: Path
) -> None:
    """The URL serves v1, then v2; the v1 pod is gone and v1 is recorded as the previous digest."""
    first = deploy(platform, environment, tmp_path, images["v1"])
    url = first.variables["URL"]
    assert url == f"http://127.0.0.1:{environment.port}/"
    assert served(url) == "v1"
    second = deploy(platform, environment, tmp_path, images["v2"])
    assert served(url) == "v2"
    dep = second.details["deployment"]
    assert dep["digest"] == images["v2"].split("@")[1]
    assert dep["previous_digest"] == images["v1"].split("@")[1]
    runtime = ContainerRuntime(platform.container_env())
    pods = [p.name for p in runtime.pods(f"conveyor.environment={environment.name}")]
    assert pods == dep["pods"]


def test_no_request_fails_while_a_deploy_switches_releases(
    platform: LocalPlatform, images: dict[str, str], environment: Environment, tmp_path: Path
) -> None:
    """A client requesting the URL in a loop during a v1 -> v2 deploy sees v1, then v2, no error."""
    url = deploy(platform, environment, tmp_path, images["v1"]).variables["URL"]
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []

    def client() -> None:
        for _ in range(20_000):  # bounded; stops when the deploy is over
            if stop.is_set():
                break
            try:
                resp = httpx.get(url + "index.html", timeout=5)
                if resp.status_code != 200:
                    failures.append(f"HTTP {resp.status_code}: {resp.text[:80]}")
                else:
                    seen.append(resp.text.strip())
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=client)
    thread.start()
    try:
        while len(seen) < 20 and not failures and thread.is_alive():
            stop.wait(0.01)
        deploy(platform, environment, tmp_path, images["v2"])
        count = len(seen)
        while len(seen) < count + 20 and thread.is_alive():
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert seen[0] == "v1" and seen[-1] == "v2"
    assert set(seen) == {"v1", "v2"}


def test_a_release_that_never_gets_ready_leaves_the_previous_one_serving(
    platform: LocalPlatform, images: dict[str, str], environment: Environment, tmp_path: Path
) -> None:
    """A never-ready release is removed, v1 keeps serving, the error quotes the probe."""
    url = deploy(platform, environment, tmp_path, images["v1"]).variables["URL"]
    with pytest.raises(ActionFailed) as info:
        deploy(platform, environment, tmp_path, images["broken"], timeout=3)
    assert "did not become ready within 3s" in info.value.message
    assert "HTTP 404" in info.value.message
    assert "keeps serving" in info.value.message
    assert served(url) == "v1"
    runtime = ContainerRuntime(platform.container_env())
    pods = runtime.pods(f"conveyor.environment={environment.name}")
    assert len(pods) == 1 and images["v1"].split(":")[-1][:8] in pods[0].name


def test_a_switch_the_front_door_never_confirms_leaves_the_previous_release_serving(
    platform: LocalPlatform,
    images: dict[str, str],
    environment: Environment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The switch to v2 is written but not acknowledged: the door goes back to v1, v1 serves."""
    first = deploy(platform, environment, tmp_path, images["v1"])
    url = first.variables["URL"]
    real = FrontDoor.switch
    asked: list[str | None] = []

    def unconfirmed(door: FrontDoor, upstream: str | None, release: str | None) -> None:
        asked.append(upstream)
        if len(asked) == 1:  # the config is written (the door applies it), the wait times out
            generation = int(door.read_config().get("generation", 0)) + 1
            door._write_config({"generation": generation, "upstream": upstream, "release": release})  # noqa: SLF001 - a door that applies but never confirms
            raise Unavailable(f"the front door did not apply the switch to {upstream}")
        real(door, upstream, release)

    monkeypatch.setattr(FrontDoor, "switch", unconfirmed)
    with pytest.raises(Unavailable):
        deploy(platform, environment, tmp_path, images["v2"])
    assert asked[1] == first.details["deployment"]["upstream"]
    assert served(url) == "v1"
    runtime = ContainerRuntime(platform.container_env())
    pods = [p.name for p in runtime.pods(f"conveyor.environment={environment.name}")]
    assert pods == first.details["deployment"]["pods"]


def test_the_image_can_come_from_an_image_detail_file(
    platform: LocalPlatform, images: dict[str, str], environment: Environment, tmp_path: Path
) -> None:
    """Without `image`, the input's imageDetail.json (as CodePipeline writes it) names the image."""
    src = tmp_path / "with-detail"
    write_manifests(src, "webapp:latest")
    (src / "imageDetail.json").write_text(json.dumps({"ImageURI": images["v2"]}))
    result = deploy(platform, environment, tmp_path, None, manifests=src)
    assert result.variables["ImageDigest"] == images["v2"].split("@")[1]
    assert served(result.variables["URL"]) == "v2"


def test_an_invalid_manifest_is_reported_with_file_and_line(
    platform: LocalPlatform, images: dict[str, str], environment: Environment, tmp_path: Path
) -> None:
    """A containerPort that is not a number fails before anything runs, naming file and line."""
    src = tmp_path / "bad"
    write_manifests(src, "webapp:latest")
    path = src / "k8s" / "deployment.yaml"
    path.write_text(path.read_text().replace("containerPort: 8080", "containerPort: http"))
    with pytest.raises(
        ActionFailed,
        match=r"k8s/deployment.yaml:18: container 'web': "
        r"'containerPort' must be a port number",
    ):
        deploy(platform, environment, tmp_path, images["v1"], manifests=src)


def test_an_image_missing_from_the_registry_fails_clearly(
    platform: LocalPlatform, environment: Environment, tmp_path: Path
) -> None:
    """Deploying a digest the registry does not have names the image and what to check."""
    ref = f"{platform.registry_host('test')}/webapp@sha256:{'1' * 64}"
    with pytest.raises(ActionFailed, match="not found: .* check that the build pushed it"):
        deploy(platform, environment, tmp_path, ref)


def test_a_taken_environment_port_is_a_clear_error(
    platform: LocalPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    """An environment whose port another program holds fails, naming the port; no pod is started."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = Environment(f"it{secrets.token_hex(3)}", registry="test", port=port)
        try:
            with pytest.raises(Unavailable, match=f"port 127.0.0.1:{port} is already taken"):
                deploy(platform, env, tmp_path, images["v1"])
            runtime = ContainerRuntime(platform.container_env())
            assert runtime.pods(f"conveyor.environment={env.name}") == []
        finally:
            PodmanEnvironment(platform, env).remove()


def test_environments_are_isolated_from_each_other(
    platform: LocalPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    """A pod of one environment cannot reach a pod of another by its IP address."""
    envs = [
        Environment(f"it{secrets.token_hex(3)}", registry="test", port=free_port())
        for _ in range(2)
    ]
    runtime = ContainerRuntime(platform.container_env())
    try:
        deps: list[dict[str, Any]] = [
            deploy(platform, e, tmp_path, images["v1"]).details["deployment"] for e in envs
        ]
        containers = [f"{d['pods'][0]}-web" for d in deps]
        ips = [
            runtime.run(
                "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c
            ).stdout.strip()
            for c in containers
        ]
        same = runtime.exec(
            containers[0], ["timeout", "3", "wget", "-q", "-O-", f"http://{ips[0]}:8080/healthz"]
        )
        assert same.returncode == 0 and same.stdout.strip() == "v1"
        other = runtime.exec(
            containers[0], ["timeout", "3", "wget", "-q", "-O-", f"http://{ips[1]}:8080/healthz"]
        )
        assert other.returncode != 0
    finally:
        for e in envs:
            PodmanEnvironment(platform, e).remove()


def test_down_stops_an_environment_and_up_brings_it_back(
    platform: LocalPlatform, images: dict[str, str], environment: Environment, tmp_path: Path
) -> None:
    """After `down` the URL does not answer; after `up` it serves the same release again."""
    url = deploy(platform, environment, tmp_path, images["v2"]).variables["URL"]
    names = [p.name for p in platform.status()]
    assert f"frontdoor {environment.name}" in names and f"release {environment.name}" in names
    platform.down(keep=True)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    platform.up()
    assert served(url) == "v2"
    parts = {p.name: p for p in platform.status()}
    assert parts[f"frontdoor {environment.name}"].healthy
    assert parts[f"release {environment.name}"].healthy
