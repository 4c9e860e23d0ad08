"""Test images and action contexts for the platform's integration tests (real podman, registry).

Images are built FROM scratch with Debian's busybox-static: `busybox httpd` serves
`/www/healthz` and `/www/index.html`, both holding a version string, so a test can tell
which release answered.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from conveyor.actions.base import ActionContext
from conveyor.adapters.containers import ContainerRuntime
from conveyor.bootstrap import build_services
from conveyor.model.pipeline import Action, Environment, Pipeline, Stage
from conveyor.platform.local import LocalPlatform

BUSYBOX = "/bin/busybox"

CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
{extra}
COPY www /www
STOPSIGNAL SIGKILL
EXPOSE 8080
CMD ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def build_image(
    runtime: ContainerRuntime,
    workdir: Path,
    ref: str,
    version: str,
    *,
    healthy: bool = True,
    padding_mb: int = 0,
    layers: int = 1,
    arch: str | None = None,
    manifest: str | None = None,
    push: bool = True,
) -> None:
    """Build a busybox httpd image serving `version` and push it to `ref` (plain HTTP).

    `healthy=False` leaves out /healthz (the readiness probe then gets HTTP 404).
    `padding_mb` adds that many MB of random data, split over `layers` layers.
    """
    ctx = workdir / f"ctx-{version}-{arch or 'native'}-{padding_mb}"
    if ctx.exists():
        shutil.rmtree(ctx)
    (ctx / "www").mkdir(parents=True)
    shutil.copy(BUSYBOX, ctx / "busybox")
    (ctx / "www" / "index.html").write_text(f"{version}\n")
    if healthy:
        (ctx / "www" / "healthz").write_text(f"{version}\n")
    extra = []
    if padding_mb:
        per = max(1, padding_mb // layers)
        for i in range(layers):
            (ctx / f"pad{i}").write_bytes(os.urandom(per * 1024 * 1024))
            extra.append(f"COPY pad{i} /pad/{i}")
    (ctx / "Containerfile").write_text(CONTAINERFILE.format(extra="\n".join(extra)))
    args = ["-f", str(ctx / "Containerfile")]
    if arch:
        args += ["--arch", arch, "--no-cache"]
    if manifest:
        runtime.run(
            "build", "--timestamp", "0", "--manifest", manifest, *args, str(ctx), timeout=600
        )
        return
    runtime.build(ctx, ref, *args)
    if push:
        runtime.push(ref)


def remove_images(runtime: ContainerRuntime, refs: list[str]) -> None:
    """Remove the local copies of test images (tags built here, digests pulled by pods)."""
    if refs:
        runtime.run("rmi", "-f", "--ignore", *refs, check=False)


def write_manifests(
    root: Path, image: str, *, readiness: dict[str, Any] | None = None, replicas: int = 2
) -> Path:
    """k8s/deployment.yaml (+ a Service) for the webapp, as the example application has."""
    k8s = root / "k8s"
    k8s.mkdir(parents=True, exist_ok=True)
    probe = readiness if readiness is not None else {"httpGet": {"path": "/healthz", "port": 8080}}
    import json

    probe_yaml = json.dumps(probe)
    (k8s / "deployment.yaml").write_text(f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webapp
  labels: {{app: webapp}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: webapp}}
  template:
    metadata:
      labels: {{app: webapp}}
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
          readinessProbe: {probe_yaml}
""")
    (k8s / "service.yaml").write_text("""\
apiVersion: v1
kind: Service
metadata:
  name: webapp
spec:
  selector: {app: webapp}
  ports:
    - port: 80
      targetPort: 8080
""")
    return k8s


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def mask(self, secret: str) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.lines)


def pipeline_with(environments: Mapping[str, Environment], action: Action) -> Pipeline:
    return Pipeline(
        name="webapp", stages=(Stage("Deploy", (action,)),), environments=dict(environments)
    )


def action_context(
    platform: LocalPlatform,
    pipeline: Pipeline,
    action: Action,
    config: Mapping[str, Any],
    workdir: Path,
    inputs: Mapping[str, Path] | None = None,
    execution_id: str = "exec-1",
) -> ActionContext:
    workdir.mkdir(parents=True, exist_ok=True)
    return ActionContext(
        execution_id=execution_id,
        pipeline=pipeline,
        stage="Deploy",
        action=action,
        attempt=1,
        config=dict(config),
        inputs=dict(inputs or {}),
        outputs={},
        workdir=workdir,
        log=Log(),
        cancel=threading.Event(),
        deadline=None,
        state_dir=platform.state_dir,
        services=dataclasses.replace(build_services(platform.settings), platform=platform),
    )


def started_platform(tmp: Path) -> Iterator[LocalPlatform]:
    """A local platform with its own state dir and free registry ports, stopped afterwards
    (the body of the module-scoped `platform` fixtures)."""
    from conveyor.platform.daemon import free_port
    from conveyor.settings import Settings

    settings = Settings(state_dir=tmp / "state", database_url="sqlite://")
    p = LocalPlatform(settings, registry_ports={"test": free_port(), "prod": free_port()})
    p.up()
    yield p
    p.down()
