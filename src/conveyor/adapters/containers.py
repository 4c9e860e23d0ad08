"""The container runtime: podman (or the docker CLI) driven as a command, errors translated.

Every call runs with the environment the local platform gives (`CONTAINERS_CONF`,
`CONTAINERS_REGISTRIES_CONF`: runtime runc, ulimits below the host's hard limits, the
loopback registries insecure), so podman works on this machine without editing /etc.

A failing command raises `ContainerError` (an `ActionError`) whose message is the
translation of podman's error into what to do (see `explain`), followed by podman's
own last lines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ActionError, missing_tool

# (substring of podman/docker output, advice); the first match wins.
_ADVICE: tuple[tuple[str, str], ...] = (
    (
        "cgroups in hybrid mode not supported",
        "the OCI runtime crun cannot run here: use runtime runc (Conveyor's CONTAINERS_CONF "
        "sets it; is CONTAINERS_CONF overridden?)",
    ),
    (
        "setrlimit",
        "the container's ulimits exceed the host's hard limits: Conveyor's "
        "CONTAINERS_CONF lowers them (nofile=1000, nproc=1000); is CONTAINERS_CONF overridden?",
    ),
    (
        "server gave http response to https client",
        "the registry speaks plain HTTP: pass --tls-verify=false or list it as insecure in "
        "registries.conf (Conveyor's CONTAINERS_REGISTRIES_CONF does for 127.0.0.1:5001/5002)",
    ),
    (
        "connection refused",
        "a registry is not answering: start the local registries with `conveyor up`",
    ),
    (
        "manifest unknown",
        "the image (tag or digest) is not in the registry: check that the "
        "build pushed it, or that it was promoted to this environment's registry",
    ),
    ("name unknown", "the repository does not exist in the registry: check the image name"),
    ("address already in use", "a port the pod publishes is already taken by another process"),
    ("port is already allocated", "a port the pod publishes is already taken by another process"),
    ("no such container", "the container does not exist (it was removed or never started)"),
    ("no such pod", "the pod does not exist (it was removed or never started)"),
    (
        "executable file not found",
        "the image has no such command: check the image's CMD / the probe's command",
    ),
    ("no space left on device", "the disk is full: free space (podman system prune)"),
)


def explain(output: str) -> str | None:
    """The advice for a runtime's error output, or None if it is not a known failure."""
    low = output.lower()
    for needle, advice in _ADVICE:
        if needle in low:
            return advice
    return None


class ContainerError(ActionError):
    """A podman/docker command failed; the message says what to do."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(
            line
            for line in output.strip().splitlines()[-6:]
            if "failed to connect to syslog" not in line
        )
        advice = explain(output)
        head = f"`{' '.join(self.argv[:4])}` failed (exit {returncode})"
        msg = f"{head}: {advice}" if advice else head
        super().__init__(f"{msg}\n{tail}" if tail else msg)


@dataclass(frozen=True)
class PodInfo:
    name: str
    status: str
    labels: dict[str, str]


def find_runtime() -> str:
    """'podman' if installed, else 'docker', else Unavailable naming the package."""
    for name in ("podman", "docker"):
        if shutil.which(name):
            return name
    raise missing_tool("podman", "podman")


class ContainerRuntime:
    """podman (preferred) or docker, with Conveyor's containers configuration."""

    def __init__(self, env: Mapping[str, str] | None = None, binary: str | None = None) -> None:
        self.binary = binary or find_runtime()
        if not shutil.which(self.binary):
            raise missing_tool(self.binary, self.binary if self.binary == "podman" else "docker.io")
        self.env = {**os.environ, **(env or {})}

    @property
    def is_podman(self) -> bool:
        return Path(self.binary).name == "podman"

    def run(
        self, *args: str, timeout: float = 300, check: bool = True, cwd: str | Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args]
        try:
            res = subprocess.run(
                argv,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=str(cwd) if cwd else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise ActionError(
                f"`{' '.join(argv[:4])}` did not finish within {timeout:.0f}s"
            ) from exc
        if check and res.returncode != 0:
            raise ContainerError(argv, res.returncode, (res.stdout or "") + (res.stderr or ""))
        return res

    # -- networks ------------------------------------------------------------------------

    def ensure_network(self, name: str, *, isolate: bool = True) -> None:
        if self.run("network", "exists", name, check=False).returncode == 0:
            return
        opts = ["--opt", "isolate=true"] if isolate and self.is_podman else []
        res = self.run("network", "create", *opts, name, check=False)
        if res.returncode != 0 and "already exists" not in (res.stderr or ""):
            raise ContainerError(
                [self.binary, "network", "create", name], res.returncode, res.stdout + res.stderr
            )

    def remove_network(self, name: str) -> None:
        self.run("network", "rm", "-f", name, check=False)

    # -- pods ----------------------------------------------------------------------------

    def kube_play(self, manifest: Path, *, network: str, timeout: float = 300) -> str:
        if not self.is_podman:
            raise ActionError(
                "the podman deploy driver needs podman (`kube play`); docker "
                "cannot run Kubernetes manifests: install podman"
            )
        return self.run(
            "kube",
            "play",
            "--network",
            network,
            "--tls-verify=false",
            "--replace",
            str(manifest),
            timeout=timeout,
        ).stdout

    def pods(self, label: str | None = None) -> list[PodInfo]:
        args = ["pod", "ps", "--format", "json"]
        if label:
            args += ["--filter", f"label={label}"]
        raw = self.run(*args).stdout.strip() or "[]"
        out: list[PodInfo] = []
        for item in json.loads(raw):
            out.append(
                PodInfo(
                    name=str(item.get("Name")),
                    status=str(item.get("Status")),
                    labels=dict(item.get("Labels") or {}),
                )
            )
        return out

    def remove_pod(self, name: str) -> None:
        self.run("pod", "rm", "-f", "-t", "0", name, check=False, timeout=60)

    def stop_pod(self, name: str) -> None:
        self.run("pod", "stop", "-t", "0", name, check=False, timeout=60)

    def start_pod(self, name: str) -> None:
        self.run("pod", "start", name, timeout=60)

    def pod_containers(self, pod: str) -> list[dict[str, Any]]:
        raw = self.run("ps", "-a", "--filter", f"pod={pod}", "--format", "json").stdout.strip()
        items: list[dict[str, Any]] = json.loads(raw or "[]")
        return [c for c in items if not c.get("IsInfra")]

    def container_state(self, name: str) -> dict[str, Any]:
        raw = self.run(
            "inspect", "--type", "container", "--format", "{{json .State}}", name, check=False
        )
        if raw.returncode != 0:
            return {}
        state: dict[str, Any] = json.loads(raw.stdout or "{}")
        return state

    def logs(self, name: str, tail: int = 20) -> str:
        res = self.run("logs", "--tail", str(tail), name, check=False, timeout=30)
        return (res.stdout + res.stderr).strip()

    def exec(
        self, container: str, command: Sequence[str], timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return self.run("exec", container, *command, check=False, timeout=timeout)

    # -- images --------------------------------------------------------------------------

    def build(self, context: Path, tag: str, *args: str) -> str:
        return self.run(
            "build", "--timestamp", "0", "-t", tag, *args, str(context), timeout=900
        ).stdout

    def push(self, ref: str, *args: str) -> None:
        tls = ["--tls-verify=false"] if self.is_podman else []
        self.run("push", *tls, *args, ref, timeout=900)
