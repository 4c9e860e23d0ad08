"""The `podman` deploy driver: an environment as releases of pods behind a front door.

A deploy to environment ENV, with the manifests already pinned to a digest:

1. takes ENV's deploy lock (one deploy per environment at a time) and starts ENV's front
   door if needed (its port taken by someone else -> a clear error, nothing changed);
2. writes the manifests for podman to the attempt's workdir: each workload renamed
   `ENV-NAME-RELEASE` (a release id per deploy: short digest + random suffix), one
   replica, every `containerPort` published on a free loopback `hostPort` (kube play
   publishes all of them, so two releases would otherwise collide), labels
   `conveyor.environment/release/home`; `Service` objects are left out (kube play ignores
   them; the front door is the service);
3. `podman kube play --network conveyor-ENV` (a network per environment, created with
   `isolate=true` so test pods cannot reach prod pods) — the new release runs beside the
   old one;
4. runs the container's readinessProbe itself (kube play ignores probes): httpGet on the
   published port, tcpSocket, or exec in the container; with no probe, GET /healthz (or
   the environment's `settings.readinessPath`); 200-399 is ready;
5. switches the front door to the new release and waits for its acknowledgement, waits
   until the old release has no open connection, then removes the old release's pods.

If the release is not ready before the timeout, its pods are removed, the front door is
not touched (the previous release keeps serving) and the deploy fails with the probe's
last answer. If the front door does not acknowledge the switch, it is pointed back at the
previous release before the new pods are removed: as with the kubernetes driver, a failed
deploy leaves the last good version serving.

State: `state_dir/environments/ENV/current.json` (the release serving), `port`,
the front door's files, `deploy.lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from ruamel.yaml.comments import CommentedMap

from conveyor.adapters.containers import ContainerRuntime
from conveyor.adapters.manifests import Document, ManifestSet
from conveyor.adapters.registry import ImageRef
from conveyor.errors import ActionError, ActionFailed, Conflict, ConveyorError
from conveyor.model.pipeline import Environment
from conveyor.platform.daemon import free_port
from conveyor.platform.frontdoor import FrontDoor

if TYPE_CHECKING:
    from conveyor.platform.local import LocalPlatform, Part

Log = Callable[[str], None]
DEFAULT_TIMEOUT = 120.0
PROBE_PERIOD = 0.25  # faster than Kubernetes' default 10 s: a deploy waits on it


@dataclass(frozen=True)
class Probe:
    kind: str  # http | tcp | exec
    port: int | None = None  # the published (host) port
    path: str = "/healthz"
    command: tuple[str, ...] = ()
    timeout: float = 2.0

    def describe(self) -> str:
        if self.kind == "http":
            return f"GET http://127.0.0.1:{self.port}{self.path}"
        if self.kind == "tcp":
            return f"TCP connect 127.0.0.1:{self.port}"
        return f"exec {' '.join(self.command)}"


class PodmanEnvironment:
    def __init__(self, platform: LocalPlatform, environment: Environment) -> None:
        self.platform = platform
        self.environment = environment
        self.name = environment.name
        self.directory = platform.state_dir / "environments" / self.name
        self.network = f"conveyor-{self.name}"
        self.home = hashlib.sha256(str(platform.state_dir).encode()).hexdigest()[:10]

    @classmethod
    def from_state(cls, platform: LocalPlatform, name: str) -> PodmanEnvironment:
        port_file = platform.state_dir / "environments" / name / "port"
        port = int(port_file.read_text().strip()) if port_file.exists() else None
        return cls(platform, Environment(name=name, port=port))

    @property
    def frontdoor(self) -> FrontDoor:
        return self.platform.frontdoor(self.environment)

    @property
    def url(self) -> str:
        return self.environment.url or f"http://{self.frontdoor.address}/"

    def runtime(self) -> ContainerRuntime:
        rt = ContainerRuntime(self.platform.container_env())
        if not rt.is_podman:
            raise ActionError(
                "the podman deploy driver needs podman (`podman kube play`): "
                "install it with `apt-get install -y podman`"
            )
        return rt

    def current(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.directory / "current.json").read_text())
            return data
        except (OSError, ValueError):
            return None

    def _write_current(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / "current.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.directory / "current.json")

    @contextlib.contextmanager
    def _lock(self, wait: float) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "deploy.lock", "w") as fh:
            end = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > end:
                        raise Conflict(
                            f"another deploy to environment '{self.name}' is still "
                            f"running (waited {wait:.0f}s); retry when it is done"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- deploy ------------------------------------------------------------------------------

    def deploy(
        self,
        mset: ManifestSet,
        image: ImageRef,
        *,
        workdir: Path,
        timeout: float = DEFAULT_TIMEOUT,
        log: Log = print,
        cancel: threading.Event | None = None,
        primary: str | None = None,
    ) -> dict[str, Any]:
        """Run the pinned manifests as a new release and switch traffic to it once ready."""
        assert image.digest, "deploy needs an image pinned by digest"
        started = time.time()
        t0 = time.monotonic()
        runtime = self.runtime()
        door = self.frontdoor
        with self._lock(wait=max(timeout, 30.0)):
            if door.ensure_running():
                log(f"started the front door of '{self.name}' on {door.address}")
            (self.directory / "port").write_text(f"{door.port}\n")
            previous = self.current()
            self._remove_stale(runtime, previous, log)
            release = f"{image.digest.split(':', 1)[-1][:8]}-{secrets.token_hex(2)}"
            plan = self._podman_manifests(mset, release, primary, log)
            path = workdir / f"podman-{self.name}-{release}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(mset.dump(plan.documents))
            log(f"wrote the manifests for podman to {path}")
            runtime.ensure_network(self.network)
            pods: list[str] = []
            switching = False
            try:
                log(
                    f"starting release {release} ({image}) beside "
                    f"{'release ' + previous['release'] if previous else 'nothing'}"
                )
                runtime.kube_play(path, network=self.network)
                pods = [p.name for p in runtime.pods(f"conveyor.release={release}")]
                container = f"{plan.primary_pod}-{plan.primary_container}"
                probe = plan.probe
                log(f"waiting for readiness: {probe.describe()} (timeout {timeout:.0f}s)")
                ready, answer = self._wait_ready(runtime, probe, container, timeout, cancel)
                if not ready:
                    what = f"release {release} ({image})"
                    raise self._not_ready(what, timeout, f"{probe.describe()}: {answer}", previous)
                ready_s = time.monotonic() - t0
                log(
                    f"release {release} is ready ({answer}); switching {door.address} to "
                    f"{plan.upstream}"
                )
                switching = True
                door.switch(plan.upstream, release)
            except BaseException:
                if switching:  # written but not acknowledged: point the door back first
                    self._switch_back(door, previous, log)
                for pod in pods or [p.name for p in runtime.pods(f"conveyor.release={release}")]:
                    runtime.remove_pod(pod)
                raise
            record = {
                "release": release,
                "pods": pods,
                "upstream": plan.upstream,
                "image": str(image),
                "digest": image.digest,
                "deployed_at": started,
                "manifest": str(path),
            }
            self._write_current(record)
            serving_s = time.monotonic() - t0
            if previous:
                self._retire(runtime, door, previous, log)
        return {
            "environment": self.name,
            "driver": "podman",
            "image": str(image),
            "digest": image.digest,
            "url": self.url,
            "previous_digest": previous.get("digest") if previous else None,
            "previous_image": previous.get("image") if previous else None,
            "release": release,
            "pods": pods,
            "network": self.network,
            "frontdoor": door.address,
            "upstream": plan.upstream,
            "ready_seconds": round(ready_s, 3),
            "serving_seconds": round(serving_s, 3),
            "started_at": started,
            "finished_at": time.time(),
        }

    def _not_ready(
        self, what: str, timeout: float, last: str, previous: dict[str, Any] | None
    ) -> ActionFailed:
        """A release that never answered its probe; the previous one (if any) keeps serving."""
        keeps = (
            f"release {previous['release']} ({previous['image']}) keeps serving"
            if previous
            else "nothing was serving before"
        )
        return ActionFailed(
            f"environment '{self.name}': {what} did not become "
            f"ready within {timeout:.0f}s; last answer of {last}; {keeps}"
        )

    def _retire(
        self, runtime: ContainerRuntime, door: FrontDoor, previous: dict[str, Any], log: Log
    ) -> None:
        """Drain the release that served before the switch, then remove its pods."""
        drained = door.drain(
            previous["upstream"], float(self.environment.settings.get("drainSeconds", 30))
        )
        if not drained:
            log(
                f"connections to release {previous['release']} still open after the "
                "drain period: closing them"
            )
        for pod in previous.get("pods", []):
            runtime.remove_pod(pod)
        log(f"removed release {previous['release']}")

    @staticmethod
    def _switch_back(door: FrontDoor, previous: dict[str, Any] | None, log: Log) -> None:
        """A switch that failed half-way: the previous release serves again (or nothing)."""
        upstream = previous["upstream"] if previous else None
        try:
            door.switch(upstream, previous["release"] if previous else None)
            log(f"the front door points at {upstream or 'nothing'} again")
        except ConveyorError as exc:
            log(f"could not point the front door back at {upstream}: {exc.message}")

    def _remove_stale(
        self, runtime: ContainerRuntime, current: dict[str, Any] | None, log: Log
    ) -> None:
        """Pods of this environment that are not the serving release (an interrupted deploy)."""
        keep = set(current.get("pods", [])) if current else set()
        for pod in runtime.pods(f"conveyor.environment={self.name}"):
            if pod.labels.get("conveyor.home") == self.home and pod.name not in keep:
                log(f"removing pod {pod.name} left by an interrupted deploy")
                runtime.remove_pod(pod.name)

    def _podman_manifests(
        self, mset: ManifestSet, release: str, primary: str | None, log: Log
    ) -> _Plan:
        documents: list[Document] = []
        plan = _Plan()
        labels = {
            "conveyor.environment": self.name,
            "conveyor.release": release,
            "conveyor.home": self.home,
        }
        for doc in mset.documents:
            if doc.kind == "Service":
                log(
                    f"{doc.file}:{doc.line}: Service '{doc.name}' is not run by the podman "
                    f"driver: the front door {self.frontdoor.address} plays its role"
                )
                continue
            if doc.pod_spec() is None:
                documents.append(doc)
                continue
            old_name = doc.name
            new_name = f"{self.name}-{old_name}-{release}"
            data = doc.data
            data["metadata"]["name"] = new_name
            if doc.kind == "Pod":
                meta = data["metadata"]
                pod_name = new_name
            else:
                spec = data["spec"]
                if int(spec.get("replicas", 1) or 1) != 1:
                    log(
                        f"{doc.file}:{doc.line}: {doc.kind} '{old_name}' runs 1 replica under "
                        f"the podman driver (not {spec.get('replicas')})"
                    )
                spec["replicas"] = 1
                meta = data["spec"]["template"].setdefault("metadata", CommentedMap())
                pod_name = f"{new_name}-pod-0"
            meta.setdefault("labels", CommentedMap()).update(labels)
            data["metadata"].setdefault("labels", CommentedMap()).update(labels)
            for c in doc.containers():
                ports = c.get("ports") or []
                mapping: dict[Any, int] = {}
                for p in ports:
                    host_port = free_port()
                    p["hostPort"] = host_port
                    p["hostIP"] = "127.0.0.1"
                    mapping[p["containerPort"]] = host_port
                    if p.get("name"):
                        mapping[str(p["name"])] = host_port
                is_primary = (c.get("name") == primary) if primary else plan.upstream == ""
                if is_primary and ports:
                    plan.upstream = f"127.0.0.1:{mapping[ports[0]['containerPort']]}"
                    plan.primary_pod = pod_name
                    plan.primary_container = str(c.get("name"))
                    plan.probe = self._probe(c, mapping, ports[0]["containerPort"])
            documents.append(doc)
        if not plan.upstream:
            raise ActionFailed(
                f"environment '{self.name}': no container "
                f"{'named ' + repr(primary) + ' ' if primary else ''}with a `containerPort` "
                "in the manifests; the front door needs one to send traffic to"
            )
        plan.documents = documents
        return plan

    def _probe(self, c: CommentedMap, mapping: dict[Any, int], first_port: int) -> Probe:
        rp = c.get("readinessProbe")
        default_path = str(self.environment.settings.get("readinessPath", "/healthz"))
        if not isinstance(rp, dict):
            return Probe("http", mapping[first_port], default_path)
        timeout = float(min(int(rp.get("timeoutSeconds", 1) or 1), 5)) + 1
        if "httpGet" in rp:
            hg = rp["httpGet"]
            port = mapping.get(
                hg.get("port"), mapping.get(str(hg.get("port")), mapping[first_port])
            )
            return Probe("http", port, str(hg.get("path") or "/"), timeout=timeout)
        if "tcpSocket" in rp:
            port = mapping.get(rp["tcpSocket"].get("port"), mapping[first_port])
            return Probe("tcp", port, timeout=timeout)
        if "exec" in rp:
            return Probe(
                "exec", command=tuple(str(x) for x in rp["exec"]["command"]), timeout=timeout
            )
        return Probe("http", mapping[first_port], default_path)

    def _wait_ready(
        self,
        runtime: ContainerRuntime,
        probe: Probe,
        container: str,
        timeout: float,
        cancel: threading.Event | None,
    ) -> tuple[bool, str]:
        end = time.monotonic() + timeout
        answer = "no answer yet"
        checks = 0
        with httpx.Client(timeout=probe.timeout) as client:
            while True:
                if cancel is not None and cancel.is_set():
                    return False, f"cancelled (last answer: {answer})"
                ok, answer = self._probe_once(runtime, probe, container, client)
                if ok:
                    return True, answer
                checks += 1
                if checks % 8 == 0:  # every ~2 s: a crashed container explains a refusal
                    state = runtime.container_state(container)
                    if state and state.get("Status") in ("exited", "stopped"):
                        logs = runtime.logs(container, 5)
                        answer += (
                            f" (container {container} {state.get('Status')} with code "
                            f"{state.get('ExitCode')}; last log lines: {logs!r})"
                        )
                if time.monotonic() + PROBE_PERIOD > end:
                    return False, answer
                time.sleep(PROBE_PERIOD)

    @staticmethod
    def _probe_once(
        runtime: ContainerRuntime, probe: Probe, container: str, client: httpx.Client
    ) -> tuple[bool, str]:
        if probe.kind == "http":
            url = f"http://127.0.0.1:{probe.port}{probe.path}"
            try:
                resp = client.get(url)
            except httpx.HTTPError as exc:
                return False, f"{type(exc).__name__}: {exc or 'no response'}"
            body = resp.text.strip().replace("\n", " ")[:200]
            return 200 <= resp.status_code < 400, f"HTTP {resp.status_code} {body!r}"
        if probe.kind == "tcp":
            assert probe.port is not None
            try:
                with socket.create_connection(("127.0.0.1", probe.port), timeout=probe.timeout):
                    return True, "TCP connection accepted"
            except OSError as exc:
                return False, f"TCP connect failed: {exc}"
        res = runtime.exec(container, probe.command, timeout=probe.timeout + 5)
        out = (res.stdout + res.stderr).strip()[:200]
        return res.returncode == 0, f"exit {res.returncode} {out!r}"

    # -- up / down / status ------------------------------------------------------------------

    def start(self) -> list[str]:
        started: list[str] = []
        door = self.frontdoor
        if door.ensure_running():
            started.append(f"front door {self.name} on {door.address}")
        current = self.current()
        if current:
            runtime = self.runtime()
            running = {p.name: p.status for p in runtime.pods(f"conveyor.environment={self.name}")}
            for pod in current.get("pods", []):
                if pod not in running:
                    started.append(
                        f"release {current['release']}: pod {pod} is gone; "
                        "deploy again to restore it"
                    )
                elif running[pod] != "Running":
                    runtime.start_pod(pod)
                    started.append(f"pod {pod} (release {current['release']})")
        return started

    def stop(self, *, remove: bool = False) -> list[str]:
        """Stop the release's pods (`remove`: remove them) and the front door; says which."""
        stopped: list[str] = []
        current = self.current()
        if current:
            runtime = self.runtime()
            for pod in current.get("pods", []):
                if remove:
                    runtime.remove_pod(pod)
                    stopped.append(f"pod {pod} (removed)")
                else:
                    runtime.stop_pod(pod)
                    stopped.append(f"pod {pod} (kept: `podman pod start {pod}` restarts it)")
        if self.frontdoor.stop():
            stopped.append(f"front door {self.name}")
        return stopped

    def remove(self) -> None:
        """Remove the environment: its pods, front door, network and state (tests, teardown)."""
        runtime = self.runtime()
        self.frontdoor.stop()
        for pod in runtime.pods(f"conveyor.environment={self.name}"):
            if pod.labels.get("conveyor.home") == self.home:
                runtime.remove_pod(pod.name)
        runtime.remove_network(self.network)
        shutil.rmtree(self.directory, ignore_errors=True)

    def status(self) -> list[Part]:
        from conveyor.platform.local import Part

        door = self.frontdoor
        ok, detail = door.health()
        parts = [Part(f"frontdoor {self.name}", "frontdoor", door.address, ok, detail)]
        current = self.current()
        if current:
            try:
                running = {
                    p.name: p.status
                    for p in self.runtime().pods(f"conveyor.environment={self.name}")
                }
            except ActionError as exc:
                running, detail = {}, exc.message
            states = [running.get(p, "gone") for p in current.get("pods", [])]
            healthy = bool(states) and all(s == "Running" for s in states)
            parts.append(
                Part(
                    f"release {self.name}",
                    "release",
                    current.get("upstream", ""),
                    healthy,
                    f"{current.get('image')} pods: {', '.join(states) or 'none'}",
                )
            )
        return parts


@dataclass
class _Plan:
    upstream: str = ""
    primary_pod: str = ""
    primary_container: str = ""
    probe: Probe = Probe("http")
    documents: list[Document] = field(default_factory=list)
