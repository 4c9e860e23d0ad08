"""The adapters actions may use, built once by the composition root and passed down.

`platform` is the local platform (conveyor.platform.local.LocalPlatform) when running
locally; actions reach registries and the container runtime through it:

    platform.container_env() -> dict[str, str]        env vars podman/skopeo need
    platform.registry_host(name_or_host) -> str       'test' -> '127.0.0.1:5001'
    platform.image_env(pipeline) -> dict[str, str]    REGISTRY_HOST / REPOSITORY_URI... for buildspecs
    platform.resolve_digest(image_ref) -> str         'host/repo:tag' -> 'sha256:...'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.settings import Settings


@dataclass
class Services:
    settings: Settings
    platform: Any = None
    secrets: dict[str, str] | None = None
