"""Builds a recipe into a local image: mmdebstrap makes the root, `podman import` the image.

    mmdebstrap --variant=V --include=PKGS [hooks] SUITE ROOT.tar MIRRORS...
    podman import --change ... ROOT.tar localhost/conveyor/NAME:<hash>
    podman tag localhost/conveyor/NAME:<hash> localhost/conveyor/NAME:latest

The tag carries the recipe's content hash, so an image already there is not built again.
A failed build leaves whatever was there before (the import is the last step and tags only
on success). The .deb files are kept in a download cache between builds (a directory per
recipe under apt's own archive dir when we are root, else under the state dir), so a rebuild
downloads nothing that did not change.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ActionError, ConfigError, Unavailable
from conveyor.images.node import NodeFromNpm
from conveyor.images.recipe import NODE_MAJOR, Recipe

STEP_MARK = "conveyor-images: step failed:"
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./*+@-]+$")
MMDEBSTRAP_FIX = "apt-get install -y mmdebstrap"


class ImageBuildFailed(ActionError):
    """A recipe that did not build: names the step (exit 1); the previous image stays."""


@dataclass(frozen=True)
class BuildResult:
    name: str
    tag: str
    built: bool  # False: found in the cache
    seconds: float
    size: int | None  # bytes, as podman reports them

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "tag": self.tag,
            "built": self.built,
            "seconds": round(self.seconds, 2),
            "size": self.size,
        }


def default_apt_cache(state_dir: Path) -> Path:
    """Where downloaded .deb files are kept: beside apt's own archives when we can write
    there (so `make test-fresh`, which caches /var/cache/apt/archives, keeps them too), else
    in the state dir. CONVEYOR_IMAGES_APT_CACHE overrides."""
    override = os.environ.get("CONVEYOR_IMAGES_APT_CACHE")
    if override:
        return Path(override)
    apt = Path("/var/cache/apt/archives")
    if apt.is_dir() and os.access(apt, os.W_OK):
        return apt / "conveyor-images"
    return state_dir / "images" / "apt-cache"


def image_exists(tag: str, env: Mapping[str, str], podman: str = "podman") -> bool:
    """`podman image exists TAG` in podman's environment `env` (CONTAINERS_CONF...)."""
    done = subprocess.run(
        [podman, "image", "exists", tag],
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


class ImageBuilder:
    """Builds recipes with mmdebstrap + podman; `env` is podman's (CONTAINERS_CONF...)."""

    def __init__(
        self,
        env: Mapping[str, str],
        work_dir: Path,
        apt_cache: Path,
        which: Callable[[str], str | None] = shutil.which,
        say: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.work_dir = work_dir
        self.apt_cache = apt_cache
        self.which = which
        self.say = say

    # -- queries ------------------------------------------------------------------------------

    def _podman(self) -> str:
        podman = self.which("podman")
        if podman is None:
            raise Unavailable(
                "podman not found: it imports and stores the images; apt-get install -y podman"
            )
        return podman

    def exists(self, tag: str) -> bool:
        return image_exists(tag, self.env, self._podman())

    def size(self, tag: str) -> int | None:
        done = subprocess.run(
            [self._podman(), "image", "inspect", "--format", "{{.Size}}", tag],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            return int(done.stdout.strip())
        except ValueError:
            return None

    # -- build --------------------------------------------------------------------------------

    def build(self, recipe: Recipe, force: bool = False) -> BuildResult:
        """The image of `recipe`: from the cache when its tag exists (unless `force`), else
        built; a failure raises ImageBuildFailed naming the step and leaves the old image."""
        started = time.monotonic()
        tag = recipe.tag()
        if not force and self.exists(tag):
            self._tag_latest(recipe, tag)
            return BuildResult(recipe.name, tag, False, time.monotonic() - started, self.size(tag))
        if recipe.variant == "extract" and (recipe.files or recipe.steps or recipe.cleanup):
            raise ConfigError(
                f"image recipe '{recipe.name}': mmdebstrap runs no hooks in the 'extract' "
                "variant, so its files, steps and cleanup would be skipped; use 'essential'"
            )
        mmdebstrap = self.which("mmdebstrap")
        if mmdebstrap is None:
            raise Unavailable(
                f"mmdebstrap not found: it builds the '{recipe.name}' image's root from Debian "
                f"packages; install the Debian package mmdebstrap ({MMDEBSTRAP_FIX})"
            )
        podman = self._podman()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.apt_cache.joinpath(recipe.name).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"image-{recipe.name}-", dir=self.work_dir) as tmp:
            tarball = Path(tmp) / "root.tar"
            extra = self._node(recipe, Path(tmp))
            argv = [mmdebstrap, *self.mmdebstrap_args(recipe, tarball, extra)]
            self.say(f"{recipe.name}: mmdebstrap {recipe.suite} ({len(recipe.packages)} packages)")
            self._run("mmdebstrap", argv, recipe)
            self.say(f"{recipe.name}: podman import -> {tag}")
            changes = [a for c in recipe.config for a in ("--change", c)]
            self._run(
                "podman import",
                [podman, "import", "--quiet", *changes, str(tarball), tag],
                recipe,
            )
        self._tag_latest(recipe, tag)
        return BuildResult(recipe.name, tag, True, time.monotonic() - started, self.size(tag))

    def _tag_latest(self, recipe: Recipe, tag: str) -> None:
        subprocess.run(
            [self._podman(), "tag", tag, recipe.latest],
            env=self.env,
            capture_output=True,
            check=False,
        )

    def _node(self, recipe: Recipe, tmp: Path) -> Path | None:
        """Node (the example's major) from the npm registry, for recipes that want it."""
        if recipe.name != "build":
            return None
        self.say(f"{recipe.name}: Node {NODE_MAJOR} from the npm registry (cached)")
        try:
            return NodeFromNpm(self.apt_cache.parent / "conveyor-node").ensure(NODE_MAJOR)
        except OSError as e:
            raise ImageBuildFailed(
                f"image '{recipe.name}': step 'node from the npm registry' failed: {e}"
            ) from e

    def mmdebstrap_args(self, recipe: Recipe, output: Path, node: Path | None = None) -> list[str]:
        """mmdebstrap's arguments for `recipe` (everything after the program name)."""
        q = shlex.quote
        # one cache per recipe: the restore copies every file in it when the build root is on
        # another file system than the cache (no hard links), so `web` must not carry the
        # `build` image's chromium along (measured: a warm rebuild of web was slower than a
        # cold one with a shared cache)
        cache = q(str(self.apt_cache / recipe.name))
        args = [
            "--quiet",
            f"--variant={recipe.variant}",
            "--skip=essential/unlink",
            "--aptopt=Acquire::Retries 3",
        ]
        if recipe.packages:
            args.append("--include=" + ",".join(recipe.packages))
        args += [f"--dpkgopt={o}" for o in recipe.dpkg_options]
        # the download cache: in before apt runs (hard links when it can), new files back out
        # at the end
        args.append(
            "--setup-hook="
            + _step(
                "restore the download cache",
                'mkdir -p "$1/var/cache/apt/archives" && '
                f'for f in {cache}/*.deb; do [ -e "$f" ] || continue; '
                'ln "$f" "$1/var/cache/apt/archives/" 2>/dev/null || '
                'cp "$f" "$1/var/cache/apt/archives/" || exit 1; done',
            )
        )
        for item in recipe.files:
            src = recipe.source(item)
            if not _SAFE_PATH.match(item.dest):
                raise ConfigError(f"image recipe '{recipe.name}': bad destination {item.dest!r}")
            args.append(
                "--customize-hook="
                + _step(
                    f"copy {item.source} to {item.dest}",
                    f'install -D -m {item.mode:o} {q(str(src))} "$1"{q(item.dest)}',
                )
            )
        if node is not None:
            args.append(
                "--customize-hook="
                + _step(
                    f"install Node {NODE_MAJOR}",
                    f'cp -a {q(str(node))}/. "$1/usr/local/"',
                )
            )
        for command in recipe.steps:
            args.append(
                "--customize-hook=" + _step(command, f'chroot "$1" /bin/sh -c {q(command)}')
            )
        args.append(
            "--customize-hook="
            + _step(
                "save the download cache",
                f'cp -n "$1"/var/cache/apt/archives/*.deb {cache}/ 2>/dev/null; '
                'rm -f "$1"/var/cache/apt/archives/*.deb; true',
            )
        )
        for path in recipe.cleanup:
            if not _SAFE_PATH.match(path) or ".." in path:
                raise ConfigError(f"image recipe '{recipe.name}': bad cleanup path {path!r}")
        if recipe.cleanup:
            paths = " ".join("./" + p.lstrip("/") for p in recipe.cleanup)
            args.append(
                "--customize-hook=" + _step("cleanup", f'cd "$1" && rm -rf -- {paths}; true')
            )
        args += [recipe.suite, str(output)]
        args += list(recipe.mirrors)
        return args

    def _run(self, what: str, argv: Sequence[str], recipe: Recipe) -> None:
        try:
            done = subprocess.run(
                list(argv),
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
                timeout=3600,
            )
        except subprocess.TimeoutExpired as e:
            raise ImageBuildFailed(
                f"image '{recipe.name}': {what} did not finish in {e.timeout:g} s; "
                "the previous image is unchanged"
            ) from e
        if done.returncode == 0:
            return
        output = (done.stderr or "") + (done.stdout or "")
        raise ImageBuildFailed(
            f"image '{recipe.name}': {failed_step(what, output)}; the previous image is unchanged"
        )


def _step(label: str, command: str) -> str:
    """A hook command that, when it fails, says which step it was."""
    return f"{{ {command} ; }} || {{ echo {shlex.quote(f'{STEP_MARK} {label}')} >&2; exit 1; }}"


def failed_step(what: str, output: str) -> str:
    """One line naming what failed: the recipe step, else mmdebstrap's or podman's own line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    marked = [line for line in lines if line.startswith(STEP_MARK)]
    if marked:
        step = marked[-1][len(STEP_MARK) :].strip()
        before = [
            line
            for line in lines[: lines.index(marked[-1])]
            if not line.startswith(("I:", "W:", "E: "))
        ]
        detail = f" ({before[-1]})" if before else ""
        return f"step '{step}' failed{detail}"
    errors = [line for line in lines if line.startswith(("E:", "Error:", "error:"))]
    last = errors[0] if errors else (lines[-1] if lines else "no output")
    return f"{what} failed: {last}"
