"""Conveyor's own containers configuration, so podman works here without editing /etc.

Measured on this machine (MACHINE-NOTES): the default runtime crun fails ("cgroups in
hybrid mode not supported") and the default ulimits exceed the host's hard limits. The
files written here are passed to podman/buildah through `CONTAINERS_CONF` and
`CONTAINERS_REGISTRIES_CONF`; skopeo 1.9.3 ignores the latter variable and gets
`--registries-conf` plus `--*-tls-verify=false` instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CONTAINERS_CONF = """\
# Written by Conveyor; passed to podman as CONTAINERS_CONF. /etc is never edited.
[containers]
default_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]

[engine]
runtime = "runc"
"""


def registries_conf(hosts: Iterable[str]) -> str:
    lines = [
        "# Written by Conveyor; passed as CONTAINERS_REGISTRIES_CONF.",
        "# The local registries speak plain HTTP on loopback.",
        "unqualified-search-registries = []",
        "",
    ]
    for host in hosts:
        lines += ["[[registry]]", f'location = "{host}"', "insecure = true", ""]
    return "\n".join(lines)


def write_containers_config(directory: Path, registry_hosts: Iterable[str]) -> dict[str, str]:
    """Write containers.conf and registries.conf (only when they change); return the env."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "containers.conf"
    regs = directory / "registries.conf"
    _write_if_changed(conf, CONTAINERS_CONF)
    _write_if_changed(regs, registries_conf(registry_hosts))
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_REGISTRIES_CONF": str(regs)}


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
