"""The typed seams between the engine, the action types and the outside world.

Everything an action may reach beyond its own context comes through `Services`, built once
by the composition root (`conveyor.bootstrap`) and passed down by the engine; no action
builds its own platform, registry client or artifact store. The seams are Protocols, so a
test (or a plugin author, with `conveyor.testing`) gives its own implementation:

    Platform      the local platform: registry hosts, container env, podman environments
                  (conveyor.platform.local.LocalPlatform)
    Registry      an OCI registry client: digests, manifests, blobs
                  (conveyor.adapters.registry.RegistryClient)
    ApprovalGate  where an action waits for people (conveyor.engine.gate.ApprovalGate)

This module imports nothing at run time but the settings: the concrete types are named
for the type checker only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.adapters.manifests import ManifestSet
    from conveyor.adapters.registry import Blob, ImageRef
    from conveyor.engine.gate import Decision
    from conveyor.model.pipeline import Environment, Pipeline
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.records import ApprovalRecord


class EnvironmentDriver(Protocol):
    """One local (podman) environment: where it serves, and how a release replaces another."""

    @property
    def url(self) -> str: ...

    def deploy(
        self,
        mset: ManifestSet,
        image: ImageRef,
        *,
        workdir: Path,
        timeout: float,
        log: Callable[[str], None],
        cancel: threading.Event | None,
        primary: str | None,
    ) -> dict[str, Any]:
        """Run the pinned manifests as a new release; the deployment's details (JSON-able)."""
        ...


class Platform(Protocol):
    """The local platform as actions see it."""

    def registry_host(self, name_or_host: str) -> str:
        """'test' -> '127.0.0.1:5001'; a host is returned as given."""
        ...

    def environment_registry(self, environment: Environment) -> str:
        """The registry host an environment pulls from."""
        ...

    def resolve_digest(self, image_ref: str) -> str:
        """'host/repo:tag' -> 'sha256:...'."""
        ...

    def container_env(self) -> dict[str, str]:
        """Variables podman/skopeo need (CONTAINERS_CONF...)."""
        ...

    def image_env(self, pipeline: Pipeline) -> dict[str, str]:
        """REGISTRY_HOST / REPOSITORY_URI... of each environment, for buildspecs."""
        ...

    def podman_environment(self, environment: Environment) -> EnvironmentDriver:
        """The driver of a podman environment."""
        ...


class Registry(Protocol):
    """An OCI registry client (one, shared: it is safe to use from several threads)."""

    def resolve(self, ref: ImageRef | str) -> str:
        """The digest a reference names now (raises NotFound)."""
        ...

    def tag_digest(self, ref: ImageRef) -> str | None:
        """The digest a tag names, None if the tag does not exist."""
        ...

    def has_manifest(self, host: str, repository: str, digest: str) -> bool: ...

    def has_blob(self, host: str, repository: str, digest: str) -> bool: ...

    def blobs(self, ref: ImageRef | str) -> list[Blob]:
        """Every blob an image (or index: every platform) references."""
        ...


class ApprovalGate(Protocol):
    """Where an action waits for a person's decision."""

    @property
    def opened_now(self) -> bool:
        """`open()` created the request (False: a resumed wait found it)."""
        ...

    def open(
        self,
        *,
        summary: str,
        digest: str | None,
        timeout_seconds: int,
        external_link: str | None = None,
    ) -> ApprovalRecord:
        """Create the pending request (idempotent); its record (token, expires_at...)."""
        ...

    def wait(self, cancel: threading.Event, poll: float = 0.2) -> Decision:
        """The decision; under the engine, raises `gate.Parked` while it is pending."""
        ...


@dataclass(frozen=True)
class Services:
    """The adapters actions may use, built by `conveyor.bootstrap` (or `conveyor.testing`)."""

    settings: Settings
    platform: Platform
    registry: Registry
    artifacts: ArtifactStore
    secrets: Mapping[str, str] = field(default_factory=dict)  # secret id -> value (tests)
