"""An image recipe: what a local base image is made of, and the content hash that names it.

A recipe is data: a Debian suite and mmdebstrap variant, the packages, the files copied in
(bundled beside this module under `recipes/NAME/`), shell steps run in the new root, paths
removed at the end, and the image's configuration (user, entry point, stop signal...). The
image is tagged `localhost/conveyor/NAME:<hash>`, where the hash covers every field and the
bytes of every file: a changed recipe is a new tag, an unchanged one is found in the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
REPOSITORY = "localhost/conveyor"

# Left out of every image: documentation, manual pages and translations (the copyright files
# stay). dpkg never unpacks them, so they cost neither download nor disk.
SLIM_DPKG = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
)
DEBIAN_MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)


@dataclass(frozen=True)
class CopyIn:
    """A file of the recipe (`recipes/NAME/<source>`) placed at `dest` in the image."""

    source: str
    dest: str
    mode: int = 0o644


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    packages: tuple[str, ...]
    suite: str = "bookworm"
    variant: str = "essential"
    mirrors: tuple[str, ...] = DEBIAN_MIRRORS
    files: tuple[CopyIn, ...] = ()
    # shell commands run inside the new root (chroot), in order, after the files are in
    steps: tuple[str, ...] = ()
    # paths (globs) removed from the root at the end
    cleanup: tuple[str, ...] = ()
    dpkg_options: tuple[str, ...] = SLIM_DPKG
    # the image's configuration, as `podman import --change` instructions
    config: tuple[str, ...] = ()
    # the directory the `files` are read from (default: recipes/NAME beside this module)
    files_dir: Path | None = field(default=None, compare=False)

    @property
    def directory(self) -> Path:
        return self.files_dir or RECIPES_DIR / self.name

    def source(self, item: CopyIn) -> Path:
        return self.directory / item.source

    def content_hash(self) -> str:
        """sha256 over every field and every file's bytes, first 12 hex digits: the image tag."""
        digest = hashlib.sha256()
        fields = {
            "name": self.name,
            "suite": self.suite,
            "variant": self.variant,
            "mirrors": self.mirrors,
            "packages": sorted(self.packages),
            "files": [(f.source, f.dest, f.mode) for f in self.files],
            "steps": self.steps,
            "cleanup": self.cleanup,
            "dpkg": self.dpkg_options,
            "config": self.config,
        }
        digest.update(json.dumps(fields, sort_keys=True).encode())
        for item in self.files:
            path = self.source(item)
            try:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError as e:
                raise ConfigError(
                    f"image recipe '{self.name}': file {path} cannot be read ({e.strerror}); "
                    "restore it (git checkout) or remove it from the recipe"
                ) from e
        return digest.hexdigest()[:12]

    @property
    def repository(self) -> str:
        return f"{REPOSITORY}/{self.name}"

    def tag(self) -> str:
        """`localhost/conveyor/NAME:<content hash>`: the image this recipe builds."""
        return f"{self.repository}:{self.content_hash()}"

    @property
    def latest(self) -> str:
        """`localhost/conveyor/NAME:latest`: moved to the newest successful build (the name a
        Containerfile's default `BASE` uses)."""
        return f"{self.repository}:latest"


WEB = Recipe(
    name="web",
    description="nginx-light serving a single-page app from /www on :8080 as uid 65534, "
    "with /healthz from the build's APP_VERSION and VCS_REF",
    packages=("nginx-light",),
    files=(
        CopyIn("nginx.conf", "/etc/nginx/nginx.conf"),
        CopyIn("conveyor-web", "/usr/local/bin/conveyor-web", 0o755),
        CopyIn("index.html", "/www/index.html"),
    ),
    steps=(
        "nginx -t -q -e /dev/stderr -c /etc/nginx/nginx.conf",
        "rm -rf /var/www /etc/nginx/sites-enabled /etc/nginx/sites-available /etc/nginx/conf.d",
        "chmod 1777 /tmp",
    ),
    # nginx needs none of these at run time: perl (pulled in by nginx-common's scripts),
    # dpkg's and debconf's state, logs and caches. The image is not meant to be apt-upgraded:
    # a new package set is a new recipe hash.
    cleanup=(
        "/usr/bin/perl*",
        "/usr/lib/x86_64-linux-gnu/perl*",
        "/usr/share/perl*",
        "/usr/lib/x86_64-linux-gnu/gconv",
        "/usr/lib/locale/*",
        "/usr/share/i18n",
        "/usr/share/zoneinfo",
        "/usr/share/common-licenses",
        "/usr/share/bash-completion",
        "/var/cache/debconf/*",
        "/var/lib/apt/lists/*",
        "/var/log/*",
        "/var/cache/ldconfig/*",
    ),
    # No ENV for APP_VERSION / VCS_REF here: an ENV of the base image would win over an app
    # Containerfile's `ARG` of the same name (`ENV APP_VERSION=${APP_VERSION}` would then read
    # the base's value); conveyor-web defaults them to "dev" and "unknown".
    config=(
        "USER 65534:65534",
        "WORKDIR /www",
        "EXPOSE 8080",
        "STOPSIGNAL SIGQUIT",
        'ENTRYPOINT ["/usr/local/bin/conveyor-web"]',
        "CMD []",
        "LABEL org.opencontainers.image.title=conveyor-web",
    ),
)

# A CodeBuild-like build environment (aws/codebuild/standard, Debian flavoured): Node of the
# example's major comes from the npm registry (Debian 12's nodejs is 18), put in /usr/local by
# a step run on the host before the root is packed (see `builder.NodeFromNpm`).
BUILD = Recipe(
    name="build",
    description="Debian 12 build environment: Node 20 + npm, Python 3 with venv, git, "
    "chromium + chromedriver, busybox-static, podman",
    variant="minbase",
    packages=(
        "ca-certificates",
        "git",
        "python3",
        "python3-venv",
        "python3-pip",
        "chromium",
        "chromium-driver",
        "fonts-liberation",
        "busybox-static",
        "podman",
        "runc",
        "catatonit",
        "curl",
        "make",
        "xz-utils",
        "zip",
        "unzip",
    ),
    steps=(
        "node --version",
        "npm --version",
        "chromium --version",
        "chromedriver --version",
        "mkdir -p /codebuild/output && chmod 1777 /codebuild/output",
    ),
    cleanup=("/var/lib/apt/lists/*", "/var/log/*", "/var/cache/debconf/*-old"),
    config=(
        "WORKDIR /codebuild/output",
        # one variable per ENV: `podman import --change "ENV A=1 B=2"` sets A to "1 B=2"
        "ENV CODEBUILD_ENVIRONMENT=conveyor/build",
        "ENV NG_CLI_ANALYTICS=false",
        "ENV SE_OFFLINE=true",
        "ENV CHROME_BIN=/usr/bin/chromium",
        'CMD ["/bin/bash"]',
        "LABEL org.opencontainers.image.title=conveyor-build",
    ),
)

NODE_MAJOR = 20  # the example's `engines` (>=20.19): see scripts/node_tool.py

RECIPES: Mapping[str, Recipe] = {r.name: r for r in (WEB, BUILD)}


def lookup(name: str, recipes: Mapping[str, Recipe] = RECIPES) -> Recipe:
    """The recipe called `name`; an unknown name is a usage error listing the known ones."""
    try:
        return recipes[name]
    except KeyError:
        known = ", ".join(sorted(recipes))
        raise ConfigError(
            f"unknown image '{name}' (known: {known}); run `conveyor images list`"
        ) from None
