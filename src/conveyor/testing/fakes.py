"""In-memory fakes of the platform and registry seams (`conveyor.ports`), for tests."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from conveyor.adapters.manifests import ManifestSet
from conveyor.adapters.registry import Blob, ImageRef
from conveyor.errors import NotFound
from conveyor.model.pipeline import Environment, Pipeline

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_REGISTRIES = MappingProxyType({"test": "127.0.0.1:5001", "prod": "127.0.0.1:5002"})


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """An OCI registry in memory (a fake: no HTTP, no blobs' bytes kept).

    `push(ref, content)` stores an image of one layer and returns its reference pinned by
    digest; the `Registry` methods then answer for it, on every host.
    """

    def __init__(self) -> None:
        self._tags: dict[tuple[str, str, str], str] = {}
        self._images: dict[tuple[str, str, str], list[Blob]] = {}
        self._lock = threading.Lock()

    def push(self, ref: str | ImageRef, content: bytes = b"layer") -> ImageRef:
        """Store an image under REF's tag (if any); its reference by digest."""
        r = ImageRef.parse(ref) if isinstance(ref, str) else ref
        layer = Blob(_digest(content), len(content), LAYER)
        digest = _digest(f"{r.repository}\n{layer.digest}".encode())
        with self._lock:
            self._images[(r.host, r.repository, digest)] = [layer]
            if r.tag:
                self._tags[(r.host, r.repository, r.tag)] = digest
        return r.with_digest(digest)

    def resolve(self, ref: ImageRef | str) -> str:
        r = ImageRef.parse(ref) if isinstance(ref, str) else ref
        with self._lock:
            if r.digest is not None:
                if (r.host, r.repository, r.digest) in self._images:
                    return r.digest
            elif r.tag and (r.host, r.repository, r.tag) in self._tags:
                return self._tags[(r.host, r.repository, r.tag)]
        raise NotFound(f"{r}: manifest unknown to the fake registry (push it first)")

    def tag_digest(self, ref: ImageRef) -> str | None:
        with self._lock:
            return self._tags.get((ref.host, ref.repository, ref.tag or "latest"))

    def has_manifest(self, host: str, repository: str, digest: str) -> bool:
        with self._lock:
            return (host, repository, digest) in self._images

    def has_blob(self, host: str, repository: str, digest: str) -> bool:
        with self._lock:
            return any(
                b.digest == digest
                for (h, repo, _), blobs in self._images.items()
                if (h, repo) == (host, repository)
                for b in blobs
            )

    def blobs(self, ref: ImageRef | str) -> list[Blob]:
        r = ImageRef.parse(ref) if isinstance(ref, str) else ref
        digest = self.resolve(r)
        with self._lock:
            return list(self._images[(r.host, r.repository, digest)])


@dataclass
class FakeEnvironment:
    """A podman environment that records what was deployed to it (a fake: nothing runs)."""

    name: str
    url: str
    deployed: list[dict[str, Any]] = field(default_factory=list)

    def deploy(self, mset: ManifestSet, image: ImageRef, **options: Any) -> dict[str, Any]:
        """Record the release (`options`: workdir, timeout, log, cancel, primary)."""
        log: Callable[[str], None] = options["log"]
        log(f"fake environment {self.name}: serving {image}\n")
        release = f"r{len(self.deployed) + 1}"
        details = {"driver": "fake", "url": self.url, "release": release}
        self.deployed.append(
            {**details, "image": str(image), "objects": len(mset.documents), **options}
        )
        return dict(details)


class FakePlatform:
    """The local platform without podman or registries (a fake): named registries map to
    hosts, podman environments are `FakeEnvironment`s, digests come from a `FakeRegistry`."""

    def __init__(
        self,
        registry: FakeRegistry | None = None,
        *,
        registries: Mapping[str, str] = DEFAULT_REGISTRIES,
        container_env: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry or FakeRegistry()
        self.registries = dict(registries)
        self._container_env = dict(container_env or {})
        self.environments: dict[str, FakeEnvironment] = {}

    def registry_host(self, name_or_host: str) -> str:
        """A registry by name ('test'), or a host as given."""
        return self.registries.get(name_or_host, name_or_host)

    def environment_registry(self, environment: Environment) -> str:
        """The environment's `registry`, else the one named like it, else 'test'."""
        known = environment.name if environment.name in self.registries else "test"
        return self.registry_host(environment.registry or known)

    def resolve_digest(self, image_ref: str) -> str:
        return self.registry.resolve(image_ref)

    def container_env(self) -> dict[str, str]:
        return dict(self._container_env)

    def image_env(self, pipeline: Pipeline) -> dict[str, str]:
        env: dict[str, str] = {}
        for e in pipeline.environments.values():
            host = self.environment_registry(e)
            key = e.name.upper().replace("-", "_")
            env[f"REGISTRY_HOST_{key}"] = host
            env[f"REPOSITORY_URI_{key}"] = f"{host}/{e.repository or pipeline.name}"
        return env

    def podman_environment(self, environment: Environment) -> FakeEnvironment:
        if environment.name not in self.environments:
            port = 18080 + len(self.environments)
            self.environments[environment.name] = FakeEnvironment(
                environment.name, f"http://127.0.0.1:{port}"
            )
        return self.environments[environment.name]
