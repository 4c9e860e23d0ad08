"""The external tools Conveyor and the example use, checked before anything starts.

`diagnose()` looks at each tool (found on PATH, its version, what it needs) and returns one
`Check` per tool: ok, missing or wrong version, with the exact command that fixes it.
`conveyor doctor` prints them; `conveyor up` and `conveyor demo` call `require()` first, so a
missing tool is named with its package before any stage starts (exit 3), never mid-pipeline.

Tools used only by the tests (PostgreSQL) are reported but never block.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from conveyor.adapters.tools import tool_path
from conveyor.errors import Unavailable

OK = "ok"
MISSING = "missing"
WRONG = "wrong version"

# Where podman 4 looks for its helpers (containers.conf `helper_binaries_dir`), before $PATH.
PODMAN_HELPER_DIRS: tuple[str, ...] = (
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
)
NODE_FIX = "make setup   (brings a Node that satisfies the example's engines into .tools/node)"


@dataclass(frozen=True)
class Check:
    """One tool: its status, what was found, the command that fixes it, and who needs it."""

    name: str
    status: str
    found: str
    fix: str
    purpose: str
    needed: bool = True

    @property
    def ok(self) -> bool:
        return self.status == OK


def _apt(package: str) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y {package}"


def _version(text: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g or 0) for g in m.groups()) if m else ()


def _show(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


class Doctor:
    """Runs the checks against a PATH (default: this process's, with the project tools first)."""

    def __init__(
        self,
        path: str | None = None,
        helper_dirs: Sequence[str] | None = None,
        examples: Path | None = None,
        containers_conf: str | None = None,
    ) -> None:
        self.path = tool_path(path)
        self.helper_dirs = tuple(PODMAN_HELPER_DIRS if helper_dirs is None else helper_dirs)
        self.examples = examples
        self.containers_conf = containers_conf

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.path)

    def output(self, argv: Sequence[str]) -> str:
        """stdout+stderr of a version command ('' when it cannot run)."""
        try:
            res = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env={**os.environ, "PATH": self.path},
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return (res.stdout or "") + (res.stderr or "")

    # -- the checks ----------------------------------------------------------------------

    def binary(
        self, name: str, package: str, purpose: str, version_arg: str = "--version"
    ) -> Check:
        found = self.which(name)
        if not found:
            return Check(name, MISSING, "not on PATH", _apt(package), purpose)
        version = _version(self.output([found, version_arg]))
        return Check(name, OK, f"{_show(version) or '?'} ({found})", _apt(package), purpose)

    def pause_binary(self) -> Check:
        purpose = "podman's pause binary (`podman kube play` runs pods with it)"
        for d in self.helper_dirs:
            candidate = Path(d) / "catatonit"
            if os.access(candidate, os.X_OK):
                return Check("catatonit", OK, str(candidate), _apt("catatonit"), purpose)
        found = self.which("catatonit")
        if found:
            return Check("catatonit", OK, found, _apt("catatonit"), purpose)
        return Check("catatonit", MISSING, "not found", _apt("catatonit"), purpose)

    def conveyor_containers_conf(self) -> Check:
        """Conveyor's containers.conf (runtime runc, lower ulimits) is what podman will read."""
        from conveyor.platform.containers_conf import CONTAINERS_CONF

        purpose = "Conveyor's containers.conf: runtime runc, ulimits below the host's limits"
        override = self.containers_conf
        if override is None:
            override = os.environ.get("CONTAINERS_CONF")
        fix = "unset CONTAINERS_CONF (Conveyor passes its own to podman)"
        if override:
            try:
                text = Path(override).read_text()
            except OSError:
                return Check("containers.conf", MISSING, f"{override} unreadable", fix, purpose)
            if 'runtime = "runc"' not in text:
                return Check(
                    "containers.conf", WRONG, f"{override} does not set runtime runc", fix, purpose
                )
            return Check("containers.conf", OK, override, fix, purpose)
        first = CONTAINERS_CONF.splitlines()[0]
        return Check("containers.conf", OK, f"Conveyor's own ({first[2:30]}...)", fix, purpose)

    def busybox_static(self) -> Check:
        purpose = "a static busybox: the test images and the `build` image run it"
        fix = _apt("busybox-static")
        found = self.which("busybox")
        if not found:
            return Check("busybox-static", MISSING, "no busybox on PATH", fix, purpose)
        try:
            head = Path(found).resolve().read_bytes()[:4096]
        except OSError:
            return Check("busybox-static", MISSING, f"{found} unreadable", fix, purpose)
        if b"/lib64/ld-linux" in head or b"ld-linux-x86-64" in head:
            return Check("busybox-static", WRONG, f"{found} is dynamically linked", fix, purpose)
        return Check("busybox-static", OK, found, fix, purpose)

    def browser(self) -> list[Check]:
        purpose_c = "headless browser of the Selenium tests"
        purpose_d = "drives chromium for Selenium; its major must equal chromium's"
        chromium = self.which("chromium")
        driver = self.which("chromedriver")
        out: list[Check] = []
        c_ver = _version(self.output([chromium, "--version"])) if chromium else ()
        d_ver = _version(self.output([driver, "--version"])) if driver else ()
        if not chromium:
            out.append(Check("chromium", MISSING, "not on PATH", _apt("chromium"), purpose_c))
        else:
            out.append(Check("chromium", OK, _show(c_ver) or "?", _apt("chromium"), purpose_c))
        fix_d = _apt("chromium-driver")
        if not driver:
            out.append(Check("chromedriver", MISSING, "not on PATH", fix_d, purpose_d))
        elif c_ver and d_ver and c_ver[0] != d_ver[0]:
            out.append(
                Check(
                    "chromedriver",
                    WRONG,
                    f"{_show(d_ver)} for chromium {_show(c_ver)}",
                    "apt-get install -y --only-upgrade chromium chromium-driver",
                    purpose_d,
                )
            )
        else:
            out.append(Check("chromedriver", OK, _show(d_ver) or "?", fix_d, purpose_d))
        return out

    def engines(self) -> tuple[tuple[int, ...], str]:
        examples = self.examples or _examples()
        if examples is None:
            return (), "no example app"
        try:
            spec = str(
                json.loads((examples / "webapp" / "package.json").read_text())["engines"]["node"]
            )
        except (OSError, ValueError, KeyError, TypeError):
            return (), "no engines"
        return _version(spec + ".0"), spec

    def node(self) -> list[Check]:
        minimum, spec = self.engines()
        purpose = f"builds the example app (engines: node {spec})"
        node = self.which("node")
        out: list[Check] = []
        if not node:
            out.append(Check("node", MISSING, "not on PATH", NODE_FIX, purpose))
        else:
            got = _version(self.output([node, "--version"]))
            if minimum and got < minimum:
                found = f"{_show(got)} ({node}), engines want {spec}"
                out.append(Check("node", WRONG, found, NODE_FIX, purpose))
            else:
                out.append(Check("node", OK, f"{_show(got)} ({node})", NODE_FIX, purpose))
        npm = self.which("npm")
        npm_purpose = "installs the example's packages (npm ci)"
        if not npm:
            out.append(Check("npm", MISSING, "not on PATH", NODE_FIX, npm_purpose))
        else:
            got = _version(self.output([npm, "--version"]))
            out.append(
                Check(
                    "npm", OK if got else WRONG, _show(got) or "does not run", NODE_FIX, npm_purpose
                )
            )
        return out

    def images(self) -> list[Check]:
        """Conveyor's local base images (`conveyor images build NAME`): present or missing.
        Never blocking: `conveyor up` builds a missing one."""
        from conveyor.images.recipe import RECIPES

        podman = self.which("podman")
        checks = []
        for recipe in RECIPES.values():
            name, tag = f"image {recipe.name}", recipe.tag()
            fix = f"conveyor images build {recipe.name}"
            purpose = f"base image: {recipe.description}"
            present = False
            if podman is not None:
                argv = [podman, "image", "exists", tag]
                present = subprocess.run(argv, capture_output=True, check=False).returncode == 0
            status = OK if present else MISSING
            checks.append(Check(name, status, tag if present else f"no {tag}", fix, purpose, False))
        return checks

    def postgres(self) -> Check:
        purpose = "the store tests against PostgreSQL (tests only; not needed to run)"
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            return Check("postgresql", MISSING, "no initdb", _apt("postgresql"), purpose, False)
        return Check("postgresql", OK, str(bins[-1].parent), _apt("postgresql"), purpose, False)

    def run(self) -> list[Check]:
        checks = [
            self.binary("git", "git", "sources: clones, pushes, triggers"),
            self.binary("podman", "podman", "builds images and runs the environments"),
            self.pause_binary(),
            self.binary("runc", "runc", "the OCI runtime podman uses here (crun fails)"),
            self.conveyor_containers_conf(),
            self.binary("buildah", "buildah", "podman build's engine"),
            self.binary("skopeo", "skopeo", "copies images by digest between registries"),
            self.binary(
                "docker-registry", "docker-registry", "the test and prod registries", "--version"
            ),
            self.binary("mmdebstrap", "mmdebstrap", "builds the base images from Debian packages"),
            self.busybox_static(),
            *self.browser(),
            *self.node(),
            self.binary("prometheus", "prometheus", "PromQL checks of the monitor"),
            self.postgres(),
            *self.images(),
        ]
        return checks


def _examples() -> Path | None:
    env = os.environ.get("CONVEYOR_EXAMPLES")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "examples" / "webapp" / "package.json").exists():
            return parent / "examples"
    return None


def diagnose(doctor: Doctor | None = None) -> list[Check]:
    return (doctor or Doctor()).run()


def blocking(checks: Sequence[Check]) -> list[Check]:
    """The checks that stop Conveyor: needed and not ok."""
    return [c for c in checks if c.needed and not c.ok]


def summary(checks: Sequence[Check]) -> str:
    """One line naming every needed tool that is missing or wrong, with its fix."""
    bad = blocking(checks)
    parts = [f"{c.name} is {c.status} ({c.found}): {c.fix}" for c in bad]
    return f"{len(bad)} tool(s) missing or wrong: " + "; ".join(parts)


def require(checks_of: Callable[[], list[Check]] = diagnose) -> None:
    """Raise Unavailable (exit 3) naming each missing tool and its fix; nothing when all is ok."""
    checks = checks_of()
    if blocking(checks):
        raise Unavailable(summary(checks) + " (details: `conveyor doctor`)")


def as_json(checks: Sequence[Check]) -> dict[str, object]:
    return {
        "ok": not blocking(checks),
        "checks": [{**asdict(c), "ok": c.ok} for c in checks],
    }
