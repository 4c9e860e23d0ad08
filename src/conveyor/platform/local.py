"""The local platform: registries, containers configuration, environments' front doors.

`LocalPlatform(settings)` is what `conveyor up/down/status` drive and what actions reach
as `ctx.services.platform` (see conveyor.engine.services for the protocol).

Parts, each a detached process with a pid file under `state_dir/run/` and a log under
`state_dir/logs/platform/`:

    registry test    docker-registry on 127.0.0.1:5001    storage state_dir/registry/test
    registry prod    docker-registry on 127.0.0.1:5002    storage state_dir/registry/prod
    frontdoor ENV    Conveyor's proxy on the environment's port (test 8081, prod 8080),
                     started by the first deploy to ENV; the release pods behind it

Ports can be overridden (tests use their own): constructor `registry_ports={"test": N}`,
`Settings.extra["registry_test_port"]`, or `CONVEYOR_REGISTRY_TEST_PORT` (same for prod).

Variables for buildspecs (`image_env(pipeline)`), as a CodeBuild buildspec that pushes to
ECR expects them, so that `podman build -t $REPOSITORY_URI:$IMAGE_TAG . && podman push
$REPOSITORY_URI:$IMAGE_TAG` works unchanged:

    REGISTRY_HOST           the build's target registry, e.g. 127.0.0.1:5001 (the pipeline's
                            environment `test` if it has one, else its first environment)
    REPOSITORY_URI          REGISTRY_HOST/<environment.repository or the pipeline's name>
    IMAGE_REPO_NAME         <environment.repository or the pipeline's name>
    CONTAINER_RUNTIME       podman, or docker if only docker is installed
    REGISTRY_HOST_<ENV>     the same per environment (ENV upper-cased, e.g. REGISTRY_HOST_PROD)
    REPOSITORY_URI_<ENV>
    AWS_DEFAULT_REGION      local
    AWS_ACCOUNT_ID          000000000000
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError
from conveyor.model.pipeline import Environment, Pipeline
from conveyor.platform.containers_conf import write_containers_config
from conveyor.platform.frontdoor import FrontDoor
from conveyor.platform.registry_server import RegistryServer
from conveyor.settings import Settings

DEFAULT_REGISTRY_PORTS = {"test": 5001, "prod": 5002}
DEFAULT_ENVIRONMENT_PORTS = {"test": 8081, "prod": 8080}
LOOPBACK = "127.0.0.1"
_HOSTPORT = re.compile(r"^[A-Za-z0-9.-]+:\d+$|^localhost$|^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class Part:
    """One part of the local platform, as `conveyor status` shows it."""

    name: str
    kind: str  # registry | frontdoor | release
    address: str
    healthy: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LocalPlatform:
    def __init__(
        self,
        settings: Settings,
        *,
        registry_ports: Mapping[str, int] | None = None,
        environment_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.state_dir = Path(settings.state_dir)
        ports: dict[str, int] = {}
        for name, default in DEFAULT_REGISTRY_PORTS.items():
            raw = settings.extra.get(f"registry_{name}_port") or os.environ.get(
                f"CONVEYOR_REGISTRY_{name.upper()}_PORT"
            )
            ports[name] = int(raw) if raw else default
        ports.update(registry_ports or {})
        self.registry_ports = ports
        self.environment_ports = {**DEFAULT_ENVIRONMENT_PORTS, **(environment_ports or {})}
        self._container_env: dict[str, str] | None = None

    # -- registries --------------------------------------------------------------------------

    def registries(self) -> list[RegistryServer]:
        return [
            RegistryServer(name, LOOPBACK, port, self.state_dir)
            for name, port in self.registry_ports.items()
        ]

    def registry_host(self, name_or_host: str) -> str:
        """'test' -> '127.0.0.1:5001'; a host:port passes through."""
        if name_or_host in self.registry_ports:
            return f"{LOOPBACK}:{self.registry_ports[name_or_host]}"
        if _HOSTPORT.match(name_or_host):
            return name_or_host
        raise ConfigError(
            f"unknown registry '{name_or_host}': use one of "
            f"{', '.join(sorted(self.registry_ports))} or a HOST:PORT"
        )

    def environment_registry(self, environment: Environment) -> str:
        """The registry host of an environment: its `registry`, else the one named like it."""
        name = environment.registry or (
            environment.name if environment.name in self.registry_ports else "test"
        )
        return self.registry_host(name)

    def resolve_digest(self, image_ref: str) -> str:
        """'host/repo:tag' -> 'sha256:...' (as the registry serves it)."""
        from conveyor.adapters.registry import ImageRef, RegistryClient

        with RegistryClient() as client:
            return client.resolve(ImageRef.parse(image_ref))

    # -- containers --------------------------------------------------------------------------

    def container_env(self) -> dict[str, str]:
        """CONTAINERS_CONF and CONTAINERS_REGISTRIES_CONF for podman/buildah (written once)."""
        if self._container_env is None:
            hosts = [r.address for r in self.registries()]
            self._container_env = write_containers_config(self.state_dir / "containers", hosts)
        return dict(self._container_env)

    def container_runtime_name(self) -> str:
        if shutil.which("podman"):
            return "podman"
        return "docker" if shutil.which("docker") else "podman"

    def image_env(self, pipeline: Pipeline) -> dict[str, str]:
        """Variables a CodeBuild buildspec for ECR expects (see the module docstring)."""
        env: dict[str, str] = {
            "AWS_DEFAULT_REGION": "local",
            "AWS_ACCOUNT_ID": "000000000000",
            "CONTAINER_RUNTIME": self.container_runtime_name(),
        }
        envs = list(pipeline.environments.values())
        for e in envs:
            host = self.environment_registry(e)
            repo = e.repository or pipeline.name
            key = re.sub(r"[^A-Z0-9]", "_", e.name.upper())
            env[f"REGISTRY_HOST_{key}"] = host
            env[f"REPOSITORY_URI_{key}"] = f"{host}/{repo}"
        target = pipeline.environments.get("test") or (envs[0] if envs else None)
        if target is not None:
            host = env[f"REGISTRY_HOST_{re.sub(r'[^A-Z0-9]', '_', target.name.upper())}"]
            repo = target.repository or pipeline.name
        else:
            host, repo = self.registry_host("test"), pipeline.name
        env["REGISTRY_HOST"] = host
        env["IMAGE_REPO_NAME"] = repo
        env["REPOSITORY_URI"] = f"{host}/{repo}"
        return env

    # -- environments ------------------------------------------------------------------------

    def environment_port(self, environment: Environment) -> int:
        if environment.port:
            return int(environment.port)
        if environment.name in self.environment_ports:
            return self.environment_ports[environment.name]
        raise ConfigError(
            f"environment '{environment.name}' has no `port`: set one in the "
            "pipeline file (test and prod default to 8081 and 8080)"
        )

    def frontdoor(self, environment: Environment) -> FrontDoor:
        return FrontDoor(
            environment.name, LOOPBACK, self.environment_port(environment), self.state_dir
        )

    def known_frontdoors(self) -> list[FrontDoor]:
        """Front doors this state dir has started (from their saved config)."""
        root = self.state_dir / "environments"
        out: list[FrontDoor] = []
        if not root.is_dir():
            return out
        for d in sorted(root.iterdir()):
            port_file = d / "port"
            if not (d / "frontdoor.json").exists() or not port_file.exists():
                continue
            try:
                port = int(port_file.read_text().strip())
            except ValueError:
                continue
            out.append(FrontDoor(d.name, LOOPBACK, port, self.state_dir))
        return out

    def podman_environment(self, environment: Environment) -> Any:
        from conveyor.platform.environment import PodmanEnvironment

        return PodmanEnvironment(self, environment)

    # -- up / down / status ------------------------------------------------------------------

    def up(self) -> list[str]:
        """Start what is not running (idempotent); return what was started."""
        started: list[str] = []
        self.container_env()
        for reg in self.registries():
            if reg.start():
                started.append(f"registry {reg.name} on {reg.address}")
        # the base image the example builds FROM, and the environment its builds run in
        from conveyor.images import ensure_images

        ensure_images(("web", "build"), self.state_dir, self.container_env(), say=_progress)
        from conveyor.platform.environment import PodmanEnvironment

        for door in self.known_frontdoors():
            env = PodmanEnvironment.from_state(self, door.environment)
            started += env.start()
        return started

    def down(self, *, keep: bool = False) -> list[str]:
        """Stop every part; the release pods this state dir created are removed (`keep`:
        stopped only)."""
        stopped: list[str] = []
        from conveyor.platform.environment import PodmanEnvironment

        for door in self.known_frontdoors():
            env = PodmanEnvironment.from_state(self, door.environment)
            stopped += env.stop(remove=not keep)
        for reg in self.registries():
            if reg.stop():
                stopped.append(f"registry {reg.name}")
        return stopped

    def status(self) -> list[Part]:
        parts: list[Part] = []
        for reg in self.registries():
            running = reg.daemon.pid() is not None
            ok, detail = reg.health()
            if not running and ok:
                detail = "answering, but not started by this state dir"
            elif not running:
                detail = "not running (start it with `conveyor up`)"
            parts.append(
                Part(f"registry {reg.name}", "registry", reg.address, ok and running, detail)
            )
        doors = self.known_frontdoors()
        if doors:  # a module of a tenth of a second: not for a platform with no environment
            from conveyor.platform.environment import PodmanEnvironment

        for door in doors:
            parts += PodmanEnvironment.from_state(self, door.environment).status()
        return parts


def _progress(line: str) -> None:
    """A long step of `up` (building a missing base image: about 30 s), on stderr."""
    print(f"conveyor up: {line}", file=sys.stderr, flush=True)
