"""Running a build's shell inside a podman container (`environment.image`, `--image`).

Every phase runs in `podman run --rm -i --network host IMAGE sh` (a new container each time
the shell has to start again, e.g. after a command ran `exit`):
- the build's work directory and sources are mounted at the same paths, so
  CODEBUILD_SRC_DIR, artifacts, reports and exported variables mean the same inside and out;
- the same CODEBUILD_* and project variables are set (through podman's environment, so that
  secret values never appear on a command line);
- absolute `cache.paths` (e.g. /root/.npm) are mounted from `<cache dir>/abs/...`, so they
  persist between builds of the same action as the host's own directories do on the host;
- the podman configuration files named by CONTAINERS_CONF / CONTAINERS_REGISTRIES_CONF are
  mounted read-only at the same paths.

Building and pushing images from inside: the host's podman, through its API socket.
Conveyor starts `podman system service --time=0 unix://SOCKET` for the build, mounts the
socket at /run/podman/podman.sock and sets CONTAINER_HOST, which turns the podman client of
the image into a remote client (podman >= 4; `podman-remote` likewise). Chosen over
podman-in-podman because (measured on this machine, podman 4.3.1, 2 cores):
- the service answers in about 0.1 s and adds nothing per command; a `podman build` through
  it runs in the host's storage, with the host's layer cache and the platform's
  registries.conf (the loopback registries), and the image it builds is on the host
  afterwards, exactly as with a host build;
- podman-in-podman needs `--privileged`, a nested storage (vfs here: every base image is
  copied whole into each build) and no layer cache between builds, and a runtime inside the
  image; none of that is needed with the socket.
The socket gives the build the host's podman, which is what a host build has anyway (it
runs as the same user), so no privilege is added. One gap, measured: podman 4.3.1's remote
client ignores `podman push --digestfile FILE` (the file is not written, and the local
RepoDigest differs from the registry's, as push recompresses). So a small `podman` shim,
first on PATH at /opt/conveyor/bin, writes FILE itself: after the push it asks the registry
for the pushed manifest's digest (an HTTP HEAD with `wget`, busybox's or GNU's). Every
other command goes to the image's podman untouched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.adapters import process, tool_errors
from conveyor.buildspec.files import static_prefix
from conveyor.buildspec.shell import CONTAINER_NAME
from conveyor.errors import Unavailable, missing_tool
from conveyor.timing import poll_until

SHIM_DIR = "/opt/conveyor/bin"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PODMAN_SHIM = r"""#!/bin/sh
# Conveyor's podman shim for builds in a container (see conveyor/buildspec/container.py):
# podman's remote client (4.3) ignores `push --digestfile FILE`. This writes FILE itself with
# the digest the registry serves for the pushed reference (an HTTP HEAD of its manifest).
# Every other command goes to the image's own podman unchanged.
self_dir=${0%/*}
real=
saved_ifs=$IFS; IFS=:
for d in $PATH; do
  if [ "$d" != "$self_dir" ] && [ -x "$d/podman" ]; then real="$d/podman"; break; fi
done
IFS=$saved_ifs
[ -n "$real" ] || { echo "podman: not found" >&2; exit 127; }
case " $* " in *" push "*) ;; *) exec "$real" "$@" ;; esac
digestfile= scheme=https ref= n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case "$a" in
    --digestfile) digestfile=$1; shift; n=$((n - 1)); continue ;;
    --digestfile=*) digestfile=${a#--digestfile=}; continue ;;
    --tls-verify=false) scheme=http ;;
    -*|push) ;;
    *) ref=$a ;;
  esac
  set -- "$@" "$a"
done
"$real" "$@" || exit $?
[ -n "$digestfile" ] || exit 0
ref=${ref#docker://}
host=${ref%%/*}
rest=${ref#*/}
case "$host" in 127.0.0.1*|localhost*) scheme=http ;; esac
case "$rest" in
  *@*) echo "${rest#*@}" > "$digestfile"; exit 0 ;;
  *:*) repo=${rest%:*}; tag=${rest##*:} ;;
  *) repo=$rest; tag=latest ;;
esac
if command -v busybox >/dev/null; then get="busybox wget"; else get=wget; fi
accept="application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
digest=$($get -S --spider --header "Accept: $accept" "$scheme://$host/v2/$repo/manifests/$tag" 2>&1 \
  | sed -n 's/^ *[Dd]ocker-[Cc]ontent-[Dd]igest: *\([^ ]*\).*/\1/p' | tr -d '\r' | head -n 1)
[ -n "$digest" ] || { echo "podman (Conveyor's shim): pushed, but cannot read the digest of $ref from $scheme://$host for --digestfile" >&2; exit 1; }
printf '%s\n' "$digest" > "$digestfile"
"""
HOST = "host"  # `environment.image: host`: run on this machine, as without an image
SOCKET_INSIDE = "/run/podman/podman.sock"
_CONFIG_FILES = ("CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF")


def wants_container(image: str | None) -> bool:
    """Whether `image` asks for a container (None, '' and 'host' run on the host)."""
    return bool(image) and image != HOST


@dataclass
class BuildContainer:
    """The `podman run ... IMAGE` prefix of a build's shell, its environment, its service."""

    argv: list[str]
    env: dict[str, str]
    service: subprocess.Popen[bytes] | None = None
    socket_dir: Path | None = None
    inside: dict[str, str] = field(default_factory=dict)  # variables set for the build

    def close(self) -> None:
        """Stop the podman service of the build and remove its socket."""
        if self.service is not None:
            process.kill_group(self.service.pid, signal.SIGTERM)
            try:
                self.service.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill_group(self.service.pid)
                self.service.wait()
            self.service = None
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None


def podman_env(container_env: Mapping[str, str] | None, conf_dir: Path) -> dict[str, str]:
    """The environment podman runs with: the platform's configuration, else a default
    containers.conf (runtime runc, ulimits this machine allows) written to `conf_dir`."""
    penv = dict(os.environ)
    penv.update(container_env or {})
    if "CONTAINERS_CONF" not in penv:
        conf_dir.mkdir(parents=True, exist_ok=True)
        conf = conf_dir / "containers.conf"
        conf.write_text(
            '[containers]\ndefault_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]\n'
            '[engine]\nruntime = "runc"\n',
            encoding="utf-8",
        )
        penv["CONTAINERS_CONF"] = str(conf)
    return penv


def ensure_image(podman: str, image: str, penv: Mapping[str, str]) -> None:
    """The image is here, or pulled from a loopback registry; else Unavailable."""
    exists = process.call([podman, "image", "exists", image], env=penv)
    if exists.returncode == 0:
        return
    if exists.returncode != 1:  # podman itself failed: say what it said
        raise Unavailable(
            tool_errors.describe("podman", f"image {image}: cannot look it up", exists.stderr)
        )
    host = image.split("/", 1)[0]
    if not (host.startswith(("127.0.0.1", "localhost")) and "/" in image):
        raise Unavailable(
            f"image {image} is not available locally (this machine cannot pull from "
            "public registries): build it with `podman build -t " + image + " ...` or "
            "push it to the local registry first"
        )
    pull = process.call([podman, "pull", "--tls-verify=false", image], env=penv)
    if pull.returncode != 0:
        raise Unavailable(
            tool_errors.describe(
                "podman", f"image {image}: cannot pull it from {host}", pull.stderr
            )
        )


def image_path(podman: str, image: str, penv: Mapping[str, str]) -> str:
    """The image's own PATH (its config's Env), or Debian's default."""
    fmt = "{{range .Config.Env}}{{println .}}{{end}}"
    out = process.call([podman, "image", "inspect", "--format", fmt, image], env=penv)
    for line in out.stdout.splitlines():
        if line.startswith("PATH="):
            return line.removeprefix("PATH=")
    return DEFAULT_PATH


def start_service(
    podman: str, penv: Mapping[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """`podman system service` on a fresh unix socket; ready when the socket exists."""
    sock_dir = Path(tempfile.mkdtemp(prefix="conveyor-podman-"))  # short: sun_path is 108 bytes
    sock = sock_dir / "podman.sock"
    argv = [podman, "system", "service", "--time=0", f"unix://{sock}"]
    proc = process.spawn(argv, env=penv, log=log)
    ready = poll_until(
        lambda: sock.is_socket() or proc.poll() is not None,
        bool,
        deadline=time.monotonic() + 15,
        interval=0.02,
    )
    if not ready or not sock.is_socket():
        process.kill_group(proc.pid)
        proc.wait()
        output = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        shutil.rmtree(sock_dir, ignore_errors=True)
        raise Unavailable(
            tool_errors.describe("podman", "the podman service for the build did not start", output)
        )
    return proc, sock_dir


def cache_mounts(paths: Iterable[str], cache_dir: Path | None) -> list[tuple[Path, str]]:
    """(host directory, path inside) for each absolute cache path."""
    out: list[tuple[Path, str]] = []
    if cache_dir is None:
        return out
    for p in paths:
        if not os.path.isabs(p):
            continue
        inside = "/" + static_prefix(p)
        if inside == "/":
            continue
        host = cache_dir / "abs" / inside.strip("/").replace("/", "__")
        host.mkdir(parents=True, exist_ok=True)
        out.append((host, inside))
    return out


def build_container(
    image: str,
    mounts: Iterable[Path],
    src: Path,
    build_env: Mapping[str, str],
    container_env: Mapping[str, str] | None,
    conf_dir: Path,
    service_log: Path,
    cached: Iterable[tuple[Path, str]] = (),
) -> BuildContainer:
    """Check the image, start the podman service, and give the shell's `podman run` prefix."""
    podman = shutil.which("podman")
    if podman is None:
        raise missing_tool("podman", "podman")
    given = {k: build_env[k] for k in _CONFIG_FILES if k in build_env}  # `--environment`'s
    penv = podman_env({**given, **(container_env or {})}, conf_dir)
    ensure_image(podman, image, penv)
    service, sock_dir = start_service(podman, penv, service_log)
    container = BuildContainer([], penv, service, sock_dir)
    try:
        container.argv, container.inside = _run_argv(
            podman, image, mounts, src, build_env, penv, sock_dir, cached
        )
    except BaseException:
        container.close()
        raise
    return container


# The host's trust store, as the build inside must trust what the host trusts: behind a
# TLS-inspecting proxy (measured here: npm in the `build` image failed every fetch with
# SELF_SIGNED_CERT_IN_CHAIN until it saw the host's bundle) the proxy's CA is only there.
# Certificates are public: mounted read-only, nothing secret crosses.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _trust_mounts(env: dict[str, str]) -> list[str]:
    """`-v` for the host's CA bundle at the same path, and node told to use it too."""
    if not HOST_CA_BUNDLE.is_file():
        return []
    env.setdefault("NODE_EXTRA_CA_CERTS", str(HOST_CA_BUNDLE))
    return ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]


def _run_argv(
    podman: str,
    image: str,
    mounts: Iterable[Path],
    src: Path,
    build_env: Mapping[str, str],
    penv: dict[str, str],
    sock_dir: Path,
    cached: Iterable[tuple[Path, str]],
) -> tuple[list[str], dict[str, str]]:
    """`podman run ... IMAGE` and the variables inside; their values go into `penv`."""
    argv = [podman, "run", "--rm", "-i", "--network", "host", "--name", CONTAINER_NAME]
    for m in sorted({m.resolve() for m in mounts}):
        argv += ["-v", f"{m}:{m}"]
    for host, inside in cached:
        argv += ["-v", f"{host}:{inside}"]
    argv += ["-v", f"{sock_dir / 'podman.sock'}:{SOCKET_INSIDE}"]
    shim = sock_dir / "bin" / "podman"
    shim.parent.mkdir()
    shim.write_text(PODMAN_SHIM, encoding="utf-8")
    shim.chmod(0o755)
    argv += ["-v", f"{shim.parent}:{SHIM_DIR}:ro"]
    path = build_env.get("PATH") or image_path(podman, image, penv)
    env = {
        **build_env,
        "CONTAINER_HOST": f"unix://{SOCKET_INSIDE}",
        "PATH": f"{SHIM_DIR}:{path}",
    }
    argv += _trust_mounts(env)
    for name in _CONFIG_FILES:
        conf = env.get(name) or penv.get(name)
        if conf and Path(conf).is_file():
            env[name] = conf
            argv += ["-v", f"{conf}:{conf}:ro"]
    argv += ["-w", str(src)]
    for k, v in env.items():
        if k in ("CONTAINER_HOST", "PATH"):  # for inside, not for the `podman run` here
            argv += ["--env", f"{k}={v}"]
            continue
        penv[k] = v  # the value goes through podman's environment, never on a command line
        argv += ["--env", k]
    argv.append(image)
    return argv, env
