"""The local platform with the real docker-registry and podman: up, down, status, configuration."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.adapters.containers import ContainerRuntime
from conveyor.errors import Unavailable
from conveyor.model.pipeline import Environment, Pipeline
from conveyor.platform.daemon import Daemon, free_port
from conveyor.platform.local import LocalPlatform
from conveyor.settings import Settings

pytestmark = pytest.mark.integration


def make_platform(tmp_path: Path) -> LocalPlatform:
    settings = Settings(state_dir=tmp_path / "state", database_url="sqlite://")
    return LocalPlatform(settings, registry_ports={"test": free_port(), "prod": free_port()})


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    p = make_platform(tmp_path)
    yield p
    p.down()


def test_up_starts_both_registries_and_a_second_up_is_a_no_op(platform: LocalPlatform) -> None:
    """`up` starts registries test and prod answering /v2/; a second `up` starts nothing."""
    started = platform.up()
    assert len(started) == 2
    for name in ("test", "prod"):
        resp = httpx.get(f"http://{platform.registry_host(name)}/v2/")
        assert resp.status_code == 200
    assert platform.up() == []
    parts = {p.name: p for p in platform.status()}
    assert parts["registry test"].healthy and parts["registry prod"].healthy
    assert (platform.state_dir / "registry" / "test").is_dir()
    assert (platform.state_dir / "run" / "registry-test.pid").is_file()


def test_a_dead_registry_is_reported_and_restarted_by_up(platform: LocalPlatform) -> None:
    """A registry killed behind Conveyor's back shows as down; the next `up` restarts only it."""
    platform.up()
    reg = platform.registries()[0]
    pid = reg.daemon.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while reg.daemon.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    parts = {p.name: p for p in platform.status()}
    assert not parts[f"registry {reg.name}"].healthy
    assert "conveyor up" in parts[f"registry {reg.name}"].detail
    assert platform.up() == [f"registry {reg.name} on {reg.address}"]
    assert {p.name: p.healthy for p in platform.status()}[f"registry {reg.name}"]


def test_down_stops_the_registries(platform: LocalPlatform) -> None:
    """`down` stops both registries and removes their pid files."""
    platform.up()
    stopped = platform.down()
    assert stopped == ["registry test", "registry prod"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{platform.registry_host('test')}/v2/")
    assert not list((platform.state_dir / "run").glob("*.pid"))


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    """A registry port held by another program fails `up` with a message naming the port."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        settings = Settings(state_dir=tmp_path / "state", database_url="sqlite://")
        p = LocalPlatform(settings, registry_ports={"test": port, "prod": free_port()})
        try:
            with pytest.raises(Unavailable, match=f"port 127.0.0.1:{port} is already taken"):
                p.up()
        finally:
            p.down()


def test_a_daemon_that_exits_at_start_is_unavailable_with_its_log(tmp_path: Path) -> None:
    """A daemon that dies before it is ready fails the wait with the end of its log."""
    daemon = Daemon.of_platform(tmp_path, "dies", "conveyor-test-dies")
    daemon.start([sys.executable, "-c", "print('conveyor-test-dies: bad config'); exit(1)"])
    with pytest.raises(Unavailable, match="'dies' exited right after starting") as err:
        daemon.wait_ready(lambda: False, 10, "daemon 'dies'", "listen")
    assert "bad config" in str(err.value)


def test_a_daemon_never_ready_is_unavailable_after_the_wait(tmp_path: Path) -> None:
    """A daemon that runs but never becomes ready fails the wait, saying what it did not do."""
    daemon = Daemon.of_platform(tmp_path, "sleeps", "conveyor-test-sleeps")
    daemon.start([sys.executable, "-c", "import time; time.sleep(30)  # conveyor-test-sleeps"])
    try:
        with pytest.raises(
            Unavailable, match=r"'sleeps' did not answer within 0s; see .*sleeps\.log"
        ):
            daemon.wait_ready(lambda: False, 0.2, "daemon 'sleeps'", "answer")
    finally:
        assert daemon.stop()


def test_a_missing_registry_binary_names_the_debian_package(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without docker-registry on PATH, `up` says which package to install."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(Unavailable, match="apt-get install -y docker-registry"):
        platform.up()


def test_container_env_makes_podman_use_runc_and_the_insecure_registries(
    platform: LocalPlatform,
) -> None:
    """The written containers.conf/registries.conf are what podman actually uses."""
    env = platform.container_env()
    conf = Path(env["CONTAINERS_CONF"])
    assert conf.parent == platform.state_dir / "containers"
    assert 'runtime = "runc"' in conf.read_text()
    runtime = ContainerRuntime(env)
    info = runtime.run("info", "--format", "{{.Host.OCIRuntime.Name}}").stdout.strip()
    assert info == "runc"
    regs = Path(env["CONTAINERS_REGISTRIES_CONF"]).read_text()
    assert platform.registry_host("test") in regs and "insecure = true" in regs


def test_image_env_gives_the_variables_an_ecr_buildspec_expects(platform: LocalPlatform) -> None:
    """REPOSITORY_URI points at the test environment's registry; each environment gets its own."""
    pipeline = Pipeline(
        name="webapp",
        stages=(),
        environments={
            "test": Environment("test", registry="test"),
            "prod": Environment("prod", registry="prod", repository="shop/webapp"),
        },
    )
    env = platform.image_env(pipeline)
    test_host = platform.registry_host("test")
    assert env["REGISTRY_HOST"] == test_host
    assert env["REPOSITORY_URI"] == f"{test_host}/webapp"
    assert env["IMAGE_REPO_NAME"] == "webapp"
    assert env["REPOSITORY_URI_PROD"] == f"{platform.registry_host('prod')}/shop/webapp"
    assert env["AWS_ACCOUNT_ID"] == "000000000000"
    assert env["CONTAINER_RUNTIME"] == "podman"
