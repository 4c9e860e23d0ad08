"""The container runtime: podman (or the docker CLI) driven as a command, errors translated.

Every call runs with the environment the local platform gives (`CONTAINERS_CONF`,
`CONTAINERS_REGISTRIES_CONF`: runtime runc, ulimits below the host's hard limits, the
loopback registries insecure), so podman works on this machine without editing /etc.

A failing command raises `ContainerError` (an `ActionError`) whose message quotes podman's own
error line and, when that line is a known failure, what to do (`adapters.tool_errors`).
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

from conveyor.adapters.tool_errors import describe, explain
from conveyor.errors import ActionError, missing_tool

__all__ = ["ContainerError", "ContainerRuntime", "PodInfo", "explain", "find_runtime"]


class ContainerError(ActionError):
    """A podman/docker command failed; the message quotes podman's error line and says what to
    do when that line is a known failure (`tool_errors.advice`)."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tool = Path(self.argv[0]).name if self.argv else "podman"
        head = f"`{' '.join(self.argv[:4])}` failed (exit {returncode})"
        super().__init__(describe(tool, head, output))


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
