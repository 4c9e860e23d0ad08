"""Running a build's shell inside a podman container (`environment.image`, `--image`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from conveyor.adapters import process
from conveyor.buildspec.shell import CONTAINER_NAME
from conveyor.errors import Unavailable, missing_tool


def container_argv(
    image: str,
    workdir: Path,
    source_dirs: list[Path],
    src: Path,
    build_env: Mapping[str, str],
    container_env: Mapping[str, str] | None,
    state_dir: Path | None,
    scratch: Path,
) -> tuple[list[str], dict[str, str]]:
    podman = shutil.which("podman")
    if podman is None:
        raise missing_tool("podman", "podman")
    penv = dict(os.environ)
    if container_env:
        penv.update(container_env)
    if "CONTAINERS_CONF" not in penv:
        conf_dir = (state_dir or scratch) / "podman"
        conf_dir.mkdir(parents=True, exist_ok=True)
        conf = conf_dir / "containers.conf"
        conf.write_text(
            '[containers]\ndefault_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]\n'
            '[engine]\nruntime = "runc"\n',
            encoding="utf-8",
        )
        penv["CONTAINERS_CONF"] = str(conf)
    exists = process.call([podman, "image", "exists", image], env=penv)
    if exists.returncode != 0:
        host = image.split("/", 1)[0]
        if host.startswith(("127.0.0.1", "localhost")) and "/" in image:
            pull = process.call([podman, "pull", "--tls-verify=false", image], env=penv)
            if pull.returncode != 0:
                raise Unavailable(
                    f"image {image}: cannot pull it from {host}: {pull.stderr.strip()[-300:]}"
                )
        else:
            raise Unavailable(
                f"image {image} is not available locally (this machine cannot pull from "
                "public registries): build it with `podman build -t " + image + " ...` or "
                "push it to the local registry first"
            )
    argv = [
        podman,
        "run",
        "--rm",
        "-i",
        "--network",
        "host",
        "--name",
        CONTAINER_NAME,
    ]
    mounts = {workdir.resolve(), *[d.resolve() for d in source_dirs]}
    for m in sorted(mounts):
        argv += ["-v", f"{m}:{m}"]
    argv += ["-w", str(src)]
    for k, v in build_env.items():
        penv[k] = v
        argv += ["--env", k]
    argv.append(image)
    return argv, penv
