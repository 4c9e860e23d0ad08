"""Local base images: `conveyor images build` with real mmdebstrap and podman.

A small recipe (Debian's essential packages and busybox-static: about 20 s) pins the
cache, the rebuild on a recipe change and a failing step; the real `web` recipe is built once
(about 30 s cold, cached afterwards) and an app image FROM it runs on a free loopback port.
Downloads are cached (conveyor.images.builder.default_apt_cache).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from conveyor.errors import Unavailable
from conveyor.images.builder import ImageBuilder, ImageBuildFailed, default_apt_cache
from conveyor.images.recipe import WEB, CopyIn, Recipe
from conveyor.platform import doctor
from conveyor.platform.containers_conf import write_containers_config
from conveyor.platform.daemon import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("podman") and shutil.which("mmdebstrap")),
        reason="needs podman and mmdebstrap (apt-get install -y podman mmdebstrap)",
    ),
]


RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conveyor-state")


@pytest.fixture(scope="module")
def env(state: Path) -> dict[str, str]:
    """podman's environment as Conveyor gives it (runc, lower ulimits)."""
    return write_containers_config(state / "containers", [])


def podman(env: dict[str, str], *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def tiny_recipe(directory: Path, text: str) -> Recipe:
    """A recipe of a few MB, named after its directory (one repository per test)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hello.txt").write_text(text)
    return Recipe(
        name=f"it-tiny-{directory.name}",
        description="test recipe",
        packages=("busybox-static",),
        variant="essential",
        files=(CopyIn("hello.txt", "/hello.txt"),),
        steps=("test -s /hello.txt",),
        config=('CMD ["/bin/busybox", "cat", "/hello.txt"]',),
        files_dir=directory,
    )


@pytest.fixture
def cleanup_repo(env: dict[str, str]) -> Iterator[list[str]]:
    """Repositories to remove after the test (every tag of each)."""
    repos: list[str] = []
    yield repos
    for repo in repos:
        ids = podman(env, "images", "-q", "--filter", f"reference={repo}", check=False)
        for image_id in sorted(set(ids.split())):
            podman(env, "rmi", "-f", image_id, check=False)


def test_build_is_cached_and_rebuilt_when_the_recipe_changes(
    tmp_path: Path, state: Path, env: dict[str, str], cleanup_repo: list[str]
) -> None:
    """The first build imports the image under its recipe hash; the same recipe is found in
    the cache; a changed file gives a new tag, and :latest follows the newest build."""
    builder = ImageBuilder(env, state / "images", default_apt_cache(state))
    recipe = tiny_recipe(tmp_path / RUN, "one\n")
    cleanup_repo.append(recipe.repository)
    first = builder.build(recipe)
    assert first.built and first.tag == recipe.tag()
    assert podman(env, "run", "--rm", first.tag) == "one"
    again = builder.build(recipe)
    assert (again.built, again.tag) == (False, first.tag)
    changed = tiny_recipe(tmp_path / RUN, "two\n")
    second = builder.build(changed)
    assert second.built and second.tag != first.tag
    assert podman(env, "run", "--rm", recipe.latest) == "two"


def test_failing_step_is_named_and_the_previous_image_stays(
    tmp_path: Path, state: Path, env: dict[str, str], cleanup_repo: list[str]
) -> None:
    """A recipe whose step fails names that step; the last good image keeps its tags."""
    builder = ImageBuilder(env, state / "images", default_apt_cache(state))
    good = tiny_recipe(tmp_path / RUN, "good\n")
    cleanup_repo.append(good.repository)
    builder.build(good)
    bad = replace(good, steps=(*good.steps, "echo 'no such thing' >&2; exit 3"))
    with pytest.raises(ImageBuildFailed) as failed:
        builder.build(bad)
    message = failed.value.message
    assert "step 'echo 'no such thing' >&2; exit 3' failed" in message, message
    assert "no such thing" in message and "previous image is unchanged" in message
    assert not builder.exists(bad.tag())
    assert podman(env, "run", "--rm", good.latest) == "good"


def conveyor(
    *args: str, env: dict[str, str], state: Path, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "CONVEYOR_HOME": str(state)}
    if path is not None:
        full["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_unknown_image_lists_the_known_ones(state: Path, env: dict[str, str]) -> None:
    """`conveyor images build nope` is a usage error (exit 2) naming the known images."""
    done = conveyor("images", "build", "nope", env=env, state=state)
    assert done.returncode == 2, done.stderr
    assert "unknown image 'nope' (known: build, web)" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_missing_mmdebstrap_names_the_package(
    tmp_path: Path, state: Path, env: dict[str, str]
) -> None:
    """Without mmdebstrap on PATH, a build that is needed says to install mmdebstrap (exit 3);
    doctor names it with its fix too."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("podman",):
        (bin_dir / tool).symlink_to(str(shutil.which(tool)))
    builder = ImageBuilder(
        env,
        state / "images",
        default_apt_cache(state),
        which=lambda n: shutil.which(n, path=str(bin_dir)),
    )
    recipe = tiny_recipe(tmp_path / RUN, f"never built {uuid.uuid4()}\n")
    with pytest.raises(Unavailable, match=r"mmdebstrap not found.*apt-get install -y mmdebstrap"):
        builder.build(recipe)
    done = conveyor("images", "build", "web", "--force", env=env, state=state, path=str(bin_dir))
    assert done.returncode == 3, done.stderr
    assert "install the Debian package mmdebstrap" in done.stderr, done.stderr
    check = {c.name: c for c in doctor.Doctor(path=str(bin_dir)).run()}["mmdebstrap"]
    assert check.status == doctor.MISSING and check.fix.endswith("apt-get install -y mmdebstrap")


# -- the web image ----------------------------------------------------------------------------

INDEX = "<!doctype html><html><body><app-root></app-root>" + "padding " * 200 + "</body></html>\n"
ASSET = "console.log('main');\n" * 200


@pytest.fixture(scope="module")
def web(state: Path, env: dict[str, str]) -> str:
    """The real `web` image (built once, then cached)."""
    done = conveyor("images", "build", "web", "--json", env=env, state=state)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(done.stdout)["images"]
    assert result["tag"] == WEB.tag()
    # doctor reports it as present, with the command that builds it
    check = {c.name: c for c in doctor.Doctor().run()}["image web"]
    assert check.ok and check.fix == "conveyor images build web" and not check.needed
    return str(result["tag"])


def app_image(
    web: str, ctx: Path, env: dict[str, str], version: str, commit: str, name: str
) -> str:
    """An app image FROM `web` as the example's Containerfile makes it (reproducible build)."""
    (ctx / "dist").mkdir(parents=True, exist_ok=True)
    (ctx / "dist" / "index.html").write_text(INDEX)
    (ctx / "dist" / "main-ABCD2345.js").write_text(ASSET)
    (ctx / "dist" / "favicon.ico").write_bytes(b"\0" * 64)
    (ctx / "Containerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nARG APP_VERSION=dev\nARG VCS_REF=unknown\n"
        'ENV APP_VERSION="${APP_VERSION}" VCS_REF="${VCS_REF}"\nCOPY dist/ /www/\n'
    )
    podman(
        env,
        "build",
        "-q",
        "--no-cache",  # podman 4.3's layer cache ignores --build-arg values
        "--timestamp",
        "0",
        "--build-arg",
        f"BASE={web}",
        "--build-arg",
        f"APP_VERSION={version}",
        "--build-arg",
        f"VCS_REF={commit}",
        "-t",
        name,
        str(ctx),
    )
    return podman(env, "image", "inspect", "--format", "{{.Id}}", name)


@pytest.fixture(scope="module")
def app(
    web: str, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """(name, base URL) of an app container FROM `web` on a free loopback port."""
    ctx = tmp_path_factory.mktemp("app")
    image = f"localhost/conveyor-it-app:{uuid.uuid4().hex[:8]}"
    app_image(web, ctx, env, "1.2.3", "0123abcd", image)
    name = f"conveyor-it-web-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman(env, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", image)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield name, base
    finally:
        podman(env, "rm", "-f", "-t", "0", name, check=False)
        podman(env, "rmi", "-f", image, check=False)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_web_serves_spa_routes_healthz_and_caching_headers(app: tuple[str, str]) -> None:
    """Deep links get index.html (200, no-cache); /healthz is JSON with the build args;
    hashed assets are immutable and gzipped; a missing asset is a 404."""
    _, base = app
    status, headers, body = fetch(base + "/tasks/2")
    assert (status, body.decode()) == (200, INDEX)
    assert headers["cache-control"] == "no-cache" and "etag" not in headers
    status, headers, body = fetch(base + "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "version": "1.2.3", "commit": "0123abcd"}
    assert json.loads(fetch(base + "/healthz.json")[2])["commit"] == "0123abcd"
    status, headers, body = fetch(base + "/main-ABCD2345.js", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert "immutable" in headers["cache-control"]
    assert gzip.decompress(body).decode() == ASSET
    assert fetch(base + "/main-MISSING.js")[0] == 404


def test_web_runs_as_nobody_and_stops_on_term_without_a_kill(
    app: tuple[str, str], env: dict[str, str]
) -> None:
    """nginx runs as uid 65534; `podman stop` (SIGQUIT) and SIGTERM end it by itself (exit
    0), not by podman's SIGKILL after the grace period (exit 137)."""
    name, _ = app
    # read from the host's /proc, not `podman exec` (runc exec cannot chdir into the
    # container inside `make test-fresh`'s chroot; the uid is the same fact either way)
    pid = podman(env, "inspect", "--format", "{{.State.Pid}}", name)
    uids = next(
        line.split()[1:]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    assert uids == ["65534"] * 4  # real, effective, saved, filesystem: never root
    podman(env, "stop", "-t", "30", name)
    assert podman(env, "inspect", "--format", "{{.State.ExitCode}}", name) == "0"
    podman(env, "start", name)
    podman(env, "kill", "--signal", "TERM", name)
    assert podman(env, "wait", name) == "0"


def test_app_image_from_web_is_reproducible(web: str, tmp_path: Path, env: dict[str, str]) -> None:
    """The same files and build args FROM the same web image give the same image id; another
    commit gives another."""
    names = [f"localhost/conveyor-it-repro:{uuid.uuid4().hex[:8]}" for _ in range(3)]
    try:
        one = app_image(web, tmp_path / "a", env, "1.0.0", "aaaa", names[0])
        two = app_image(web, tmp_path / "b", env, "1.0.0", "aaaa", names[1])
        other = app_image(web, tmp_path / "c", env, "1.0.0", "bbbb", names[2])
        assert one == two and other != one
    finally:
        for n in names:
            podman(env, "rmi", "-f", n, check=False)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real local registry (Debian's docker-registry, plain HTTP on loopback): its host."""
    from tests.integration.testimages import started_platform

    for platform in started_platform(tmp_path_factory.mktemp("push")):
        yield platform.registry_host("test")


def test_push_copies_the_recipe_tag_and_is_idempotent(
    web: str, registry: str, state: Path, env: dict[str, str]
) -> None:
    """`conveyor images push web --to HOST/REPO` copies web at its recipe's tag; the registry
    serves that digest; a second push gives the same digest (what `aws rehearse` and an
    operator filling the stack's ECR repository do)."""
    from conveyor.adapters.registry import RegistryClient

    repo = f"{registry}/seed-webapp-base-web"
    done = conveyor("images", "push", "web", "--to", repo, "--json", env=env, state=state)
    assert done.returncode == 0, done.stderr[-3000:]
    pushed = json.loads(done.stdout)
    assert pushed["source"] == web
    assert pushed["destination"] == f"{repo}:{WEB.content_hash()}"
    assert pushed["digest"].startswith("sha256:")
    with RegistryClient() as client:
        assert client.resolve(pushed["destination"]) == pushed["digest"]
    again = conveyor("images", "push", "web", "--to", repo, "--json", env=env, state=state)
    assert again.returncode == 0 and json.loads(again.stdout)["digest"] == pushed["digest"]
    # with a login (what an ECR host gets): skopeo takes the private auth file
    from conveyor.images.push import push_image

    logins: list[str] = []

    def login(host: str) -> str:
        logins.append(host)
        return "AWS:token"

    assert push_image(WEB, repo, env, login=login).digest == pushed["digest"]
    assert logins == [registry]


def test_push_refuses_a_bad_repository_and_a_missing_image(
    tmp_path: Path, registry: str, env: dict[str, str]
) -> None:
    """A repository with a scheme or a tag is a usage error saying the form (exit 2); an image
    not built here names the command that builds it (Unavailable, exit 3), nothing pushed."""
    from conveyor.images.push import push_image

    for bad in ("https://example.com/web", f"{registry}/web:1", "Upper/Case"):
        done = conveyor("images", "push", "web", "--to", bad, env=env, state=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "HOST[:PORT]/PATH without a scheme or tag" in done.stderr
        assert "Traceback" not in done.stderr
    recipe = tiny_recipe(tmp_path / f"never-{RUN}", "")
    with pytest.raises(Unavailable, match=f"conveyor images build {recipe.name}` first"):
        push_image(recipe, f"{registry}/never", env)


def test_build_with_a_missing_base_names_the_command(web: str, env: dict[str, str]) -> None:
    """A build whose `publishes.base` image is not built here fails before podman tries to pull
    it, naming `conveyor images build NAME`."""
    from conveyor.actions.build import _check_base
    from conveyor.errors import ActionError

    _check_base("web", WEB.tag(), env)  # built by the `web` fixture: no error
    missing = f"localhost/conveyor/web:missing{RUN}"
    said = f"{missing} is not built here: run `conveyor images build web`"
    with pytest.raises(ActionError, match=said):
        _check_base("web", missing, env)
