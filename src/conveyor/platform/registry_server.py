"""A local OCI registry: Debian's `docker-registry` (CNCF distribution 2.8) with its own config.

The packaged config (htpasswd, :5000) is not used. Each registry gets
`state_dir/registry/<name>.yml`: storage under `state_dir/registry/<name>/`, deletes
enabled, plain HTTP on a loopback address. Its access log (one line per request, with
the response size) goes to `state_dir/logs/platform/registry-<name>.log`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import missing_tool
from conveyor.platform.daemon import Daemon, port_free, require_free_port

BINARY = "docker-registry"


@dataclass(frozen=True)
class RegistryServer:
    name: str
    host: str
    port: int
    state_dir: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def storage(self) -> Path:
        return self.state_dir / "registry" / self.name

    @property
    def config_file(self) -> Path:
        return self.state_dir / "registry" / f"{self.name}.yml"

    @property
    def daemon(self) -> Daemon:
        return Daemon.of_platform(self.state_dir, f"registry-{self.name}", str(self.config_file))

    def config(self) -> str:
        return (
            "# Written by Conveyor (conveyor up).\n"
            "version: 0.1\n"
            "log:\n  level: warn\n  fields: {service: registry, registry: " + self.name + "}\n"
            "storage:\n"
            f"  filesystem: {{rootdirectory: {self.storage}}}\n"
            "  delete: {enabled: true}\n"
            "  cache: {blobdescriptor: inmemory}\n"
            f"http:\n  addr: {self.address}\n"
        )

    def health(self) -> tuple[bool, str]:
        if port_free(self.host, self.port):  # nothing listens: no need for an HTTP client
            return False, f"nothing listens on {self.address}"
        from conveyor.adapters.registry import RegistryClient

        with RegistryClient(timeout=2) as client:
            return client.ping(self.address)

    def start(self, wait: float = 10.0) -> bool:
        """Start it unless it runs; True if it was started. Raises Unavailable with the cause."""
        if self.daemon.pid() is not None:
            return False
        binary = shutil.which(BINARY)
        if not binary:
            raise missing_tool(BINARY, "docker-registry")
        require_free_port(
            self.host,
            self.port,
            f"cannot start registry '{self.name}': port {self.address}",
            "stop that process, or give Conveyor another port "
            f"(CONVEYOR_REGISTRY_{self.name.upper()}_PORT)",
        )
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        daemon = self.daemon
        daemon.start([binary, "serve", str(self.config_file)])
        daemon.wait_ready(
            lambda: self.health()[0],
            wait,
            f"registry '{self.name}'",
            f"answer GET http://{self.address}/v2/",
        )
        return True

    def stop(self) -> bool:
        return self.daemon.stop()
