"""Builds inside a podman container (`environment.image`): real podman, a small image made
offline with `podman import` (busybox-static and the host's podman client), own storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conveyor.buildspec.result import BuildResult
from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.spec import parse_buildspec
from conveyor.cli.buildspec import register
from conveyor.errors import Unavailable

pytestmark = pytest.mark.integration

IMAGE = "localhost/conveyor-test/buildenv:1"
CONF = '[containers]\ndefault_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]\n'
CONF += '[engine]\nruntime = "runc"\n'


def make_root_tar(dest: Path) -> None:
    """A root with busybox-static as /bin/*, the host's podman and its libraries, /root."""
    busybox = shutil.which("busybox")
    podman = shutil.which("podman")
    assert busybox and podman
    libs = subprocess.run(["ldd", podman], capture_output=True, text=True, check=True).stdout
    with tarfile.open(dest, "w") as tar:
        tar.add(busybox, "bin/busybox")
        for applet in ("sh", "ls", "cat", "echo", "mkdir", "test", "printf", "env", "id"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        tar.add(podman, "usr/bin/podman")
        for word in libs.split():
            if word.startswith("/") and os.path.exists(word):
                tar.add(os.path.realpath(word), word.lstrip("/"))
        for d in ("root", "tmp", "etc/buildenv"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        marker = dest.parent / "marker"
        marker.write_text("inside\n")
        tar.add(marker, "etc/buildenv/marker")


@pytest.fixture(scope="module")
def podman_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private podman storage holding IMAGE (set through the environment for the module)."""
    if shutil.which("podman") is None or shutil.which("busybox") is None:
        pytest.skip("podman and busybox-static are needed (apt-get install podman busybox-static)")
    store = tmp_path_factory.mktemp("podman")
    (store / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{store}/run"\ngraphroot = "{store}/graph"\n'
    )
    (store / "containers.conf").write_text(CONF)
    saved = {k: os.environ.get(k) for k in ("CONTAINERS_STORAGE_CONF", "CONTAINERS_CONF")}
    os.environ["CONTAINERS_STORAGE_CONF"] = str(store / "storage.conf")
    os.environ["CONTAINERS_CONF"] = str(store / "containers.conf")
    make_root_tar(store / "root.tar")
    subprocess.run(["podman", "import", "-q", str(store / "root.tar"), IMAGE], check=True)
    yield store
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def build(tmp_path: Path, text: str, **kw: object) -> tuple[BuildResult, str]:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    result = run_buildspec(
        parse_buildspec(text, "buildspec.yml"),
        {"app": src},
        None,
        tmp_path / "work",
        lines.append,
        **kw,  # type: ignore[arg-type]  # the keyword arguments each test picks
    )
    return result, "".join(lines)


def test_phases_run_in_the_image_and_results_come_out(podman_store: Path, tmp_path: Path) -> None:
    """Every phase runs in the image; variables, artifacts and reports come back out."""
    result, log = build(
        tmp_path,
        """
version: 0.2
env:
  exported-variables: [WHERE, IMAGE_SEEN]
phases:
  install:
    commands:
      - export WHERE=$(cat /etc/buildenv/marker)
  build:
    commands:
      - export IMAGE_SEEN=$CODEBUILD_BUILD_IMAGE
      - cd $CODEBUILD_SRC_DIR && mkdir -p out r && echo made > out/app.txt
      - printf '<testsuite name="s" tests="1"><testcase name="t"/></testsuite>' > r/j.xml
artifacts:
  files: ['out/**/*']
reports:
  unit:
    files: [r/j.xml]
""",
        image=IMAGE,
        state_dir=tmp_path / "state",
    )
    assert result.succeeded, log
    assert result.exported == {"WHERE": "inside", "IMAGE_SEEN": IMAGE}
    assert result.artifacts[0].files == ["out/app.txt"]
    assert (result.reports[0].total, result.reports[0].passed) == (1, 1)


def test_podman_inside_builds_into_the_hosts_store(podman_store: Path, tmp_path: Path) -> None:
    """`podman build` inside the build container goes to the host's podman (its socket)."""
    result, log = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    commands:
      - printf 'FROM localhost/conveyor-test/buildenv:1\\nRUN echo built > /built\\n' > Containerfile
      - podman build -q -t localhost/conveyor-test/inner:1 .
""",
        image=IMAGE,
        state_dir=tmp_path / "state",
    )
    assert result.succeeded, log
    exists = subprocess.run(["podman", "image", "exists", "localhost/conveyor-test/inner:1"])
    assert exists.returncode == 0


def test_absolute_cache_paths_persist_between_container_builds(
    podman_store: Path, tmp_path: Path
) -> None:
    """An absolute cache path (/root/.cache) is mounted from the cache dir: the next build sees it."""
    text = """
version: 0.2
env:
  exported-variables: [SEEN]
phases:
  build:
    commands:
      - export SEEN=$(cat /root/.cache/n 2>/dev/null || echo none)
      - mkdir -p /root/.cache && echo one > /root/.cache/n
cache:
  paths: ['/root/.cache/**/*']
"""
    kw = {"image": IMAGE, "state_dir": tmp_path / "state", "cache_dir": tmp_path / "cache"}
    first, log = build(tmp_path / "a", text, **kw)
    second, log2 = build(tmp_path / "b", text, **kw)
    assert first.exported == {"SEEN": "none"}, log
    assert second.exported == {"SEEN": "one"}, log2


def test_a_container_that_cannot_start_quotes_podman(
    podman_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build container podman cannot start is Unavailable with podman's own `Error:` line."""
    bad = tmp_path / "bad.conf"
    bad.write_text(CONF.replace("nofile=1000:1000", "nofile=999999999:999999999"))
    monkeypatch.setenv("CONTAINERS_CONF", str(bad))
    with pytest.raises(Unavailable) as info:
        build(
            tmp_path,
            "version: 0.2\nphases:\n  build:\n    commands: [echo hi]\n",
            image=IMAGE,
            state_dir=tmp_path / "state",
        )
    assert f"the build container (image {IMAGE}) did not start: podman said: Error: " in str(
        info.value
    )


def test_image_host_runs_on_this_machine(podman_store: Path, tmp_path: Path) -> None:
    """`image: host` keeps the host run: the host's files, CODEBUILD_BUILD_IMAGE=host."""
    result, log = build(
        tmp_path,
        """
version: 0.2
env:
  exported-variables: [IMAGE_SEEN]
phases:
  build:
    commands:
      - test ! -e /etc/buildenv/marker
      - export IMAGE_SEEN=$CODEBUILD_BUILD_IMAGE
""",
        image="host",
    )
    assert result.succeeded, log
    assert result.exported == {"IMAGE_SEEN": "host"}


def test_cli_host_and_image_contradict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`buildspec run --host --image X` is a usage error (exit 2) naming both flags."""
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))

    @click.group()
    def root() -> None:
        """Test root."""

    register(root)
    spec = tmp_path / "b.yml"
    spec.write_text("version: 0.2\nphases:\n  build:\n    commands: [echo]\n")
    out = CliRunner().invoke(
        root,
        ["buildspec", "run", str(spec), "--source", str(tmp_path), "--host", "--image", IMAGE],
    )
    assert out.exit_code == 2
    assert "--host and --image" in out.output


def test_push_digestfile_holds_the_registrys_digest(podman_store: Path, tmp_path: Path) -> None:
    """`podman push --digestfile` inside the container writes the digest the registry serves."""
    import httpx

    from conveyor.platform.registry_server import RegistryServer
    from tests.integration.live_server import free_port

    registry = RegistryServer("t", "127.0.0.1", free_port(), tmp_path / "reg")
    registry.start()
    try:
        ref = f"{registry.address}/app:1"
        result, log = build(
            tmp_path,
            f"""
version: 0.2
env:
  exported-variables: [DIGEST]
phases:
  build:
    commands:
      - printf 'FROM {IMAGE}\\nRUN echo pushed > /pushed\\n' > Containerfile
      - podman build -q -t {ref} .
      - podman push -q --tls-verify=false --digestfile image.digest {ref}
      - export DIGEST=$(cat image.digest)
""",
            image=IMAGE,
            state_dir=tmp_path / "state",
        )
        assert result.succeeded, log
        accept = ", ".join(
            f"application/vnd.{t}+json"
            for t in ("oci.image.manifest.v1", "docker.distribution.manifest.v2")
        )
        head = httpx.head(
            f"http://{registry.address}/v2/app/manifests/1", headers={"Accept": accept}
        )
        assert result.exported["DIGEST"] == head.headers["Docker-Content-Digest"]
    finally:
        registry.stop()
