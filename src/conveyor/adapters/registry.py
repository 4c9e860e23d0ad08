"""An OCI distribution (registry v2) HTTP client: references, digests, manifests and blobs.

Used to resolve a tag to the digest a registry serves, to check that a digest (manifest or
blob) exists before promoting or deploying it, and to verify a promotion. Every request
sends an `Accept` header listing the OCI and Docker manifest and index types: podman and
buildah push OCI manifests, and distribution answers `MANIFEST_UNKNOWN` to a GET that does
not accept them.

Errors: a registry that does not answer -> `Unavailable` (exit 3) naming its address; an
image, tag or digest it does not have -> `NotFound` naming the reference.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from conveyor.errors import ConfigError, ConveyorError, NotFound, Unavailable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})

_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


@dataclass(frozen=True)
class ImageRef:
    """`host[:port]/repository[:tag][@digest]`; the host is required (no Docker Hub here)."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        raw = text.strip()
        if raw.startswith("docker://"):
            raw = raw[len("docker://") :]
        digest: str | None = None
        if "@" in raw:
            raw, digest = raw.split("@", 1)
            if not _DIGEST.match(digest):
                raise ConfigError(
                    f"image reference '{text}': '{digest}' is not a digest "
                    "(expected sha256:<64 hex>)"
                )
        if "/" not in raw:
            raise ConfigError(
                f"image reference '{text}' has no registry host: "
                "write it as HOST:PORT/REPOSITORY[:TAG][@sha256:...]"
            )
        host, rest = raw.split("/", 1)
        if not ("." in host or ":" in host or host == "localhost"):
            raise ConfigError(
                f"image reference '{text}' has no registry host ('{host}' is not host[:port])"
            )
        tag: str | None = None
        if ":" in rest:
            rest, tag = rest.rsplit(":", 1)
            if not _TAG.match(tag):
                raise ConfigError(f"image reference '{text}': '{tag}' is not a valid tag")
        if not _REPO.match(rest):
            raise ConfigError(
                f"image reference '{text}': '{rest}' is not a valid repository name "
                "(lower-case letters, digits, . _ - and /)"
            )
        return cls(host=host, repository=rest, tag=tag, digest=digest)

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag ('latest' if none)."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """The last path component of the repository (`team/webapp` -> `webapp`)."""
        return self.repository.rsplit("/", 1)[-1]

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.host, self.repository, None, digest)

    def with_tag(self, tag: str | None) -> ImageRef:
        return ImageRef(self.host, self.repository, tag, None)

    def __str__(self) -> str:
        out = f"{self.host}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


@dataclass(frozen=True)
class Manifest:
    ref: ImageRef
    media_type: str
    digest: str
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        if not isinstance(data, dict):
            raise ConveyorError(f"{self.ref}: the registry's manifest is not a JSON object")
        return data

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.json


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


class RegistryClient:
    """A plain-HTTP client for loopback registries (https when `scheme='https'`)."""

    def __init__(
        self,
        *,
        scheme: str = "http",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.scheme = scheme
        # plain HTTP (the loopback registries) needs no TLS: not loading the CA store saves
        # 0.05-0.2 s per client; redirects are not followed, so nothing reaches https unchecked
        self._client = httpx.Client(timeout=timeout, transport=transport, verify=scheme == "https")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- low level -------------------------------------------------------------------------

    def _request(
        self, method: str, host: str, path: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        url = f"{self.scheme}://{host}/v2/{path}"
        try:
            return self._client.request(method, url, headers=headers)
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"registry {host} is not answering ({_reason(exc)}): start the local "
                "registries with `conveyor up`, or check the environment's registry address"
            ) from exc
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"registry {host} did not answer in time ({method} /v2/{path})"
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"registry {host}: {method} /v2/{path} failed: {exc}") from exc

    def ping(self, host: str) -> tuple[bool, str]:
        """(healthy, detail) from `GET /v2/` without raising."""
        try:
            resp = self._request("GET", host, "")
        except Unavailable as exc:
            return False, exc.message
        if resp.status_code == 200:
            return True, "API v2 answering"
        return False, f"GET /v2/ answered HTTP {resp.status_code}"

    # -- manifests -------------------------------------------------------------------------

    def _manifest_request(self, method: str, r: ImageRef) -> httpx.Response:
        """`method` on `r`'s manifest; a manifest the registry does not have -> NotFound."""
        resp = self._request(
            method, r.host, f"{r.repository}/manifests/{r.reference}", {"Accept": MANIFEST_ACCEPT}
        )
        if resp.status_code == 404:
            raise NotFound(_not_found(r, resp))
        return resp

    def manifest(self, ref: ImageRef | str) -> Manifest:
        """The manifest (or index) `ref` names, with the digest the registry serves it under."""
        r = ImageRef.parse(ref) if isinstance(ref, str) else ref
        resp = self._manifest_request("GET", r)
        if resp.status_code != 200:
            raise ConveyorError(
                f"registry {r.host}: GET manifest of {r} answered "
                f"HTTP {resp.status_code}: {resp.text[:300]}"
            )
        body = resp.content
        digest = resp.headers.get("Docker-Content-Digest") or _sha256(body)
        if r.digest and r.digest.startswith("sha256:") and _sha256(body) != r.digest:
            raise ConveyorError(
                f"registry {r.host} served a manifest for {r} whose content "
                f"hashes to {_sha256(body)}: the registry's storage is corrupt"
            )
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if not media or media == "application/json":
            media = str(json.loads(body).get("mediaType") or OCI_MANIFEST)
        return Manifest(ref=r, media_type=media, digest=digest, body=body)

    def resolve(self, ref: ImageRef | str) -> str:
        """The digest the registry serves for a tag (or verifies that a pinned digest exists)."""
        r = ImageRef.parse(ref) if isinstance(ref, str) else ref
        resp = self._manifest_request("HEAD", r)
        digest = resp.headers.get("Docker-Content-Digest")
        if resp.status_code == 200 and digest:
            return str(digest)
        return self.manifest(r).digest

    def tag_digest(self, ref: ImageRef) -> str | None:
        """The digest behind `ref`'s tag, or None if the tag (or repository) does not exist."""
        try:
            return self.resolve(ref.with_tag(ref.tag))
        except NotFound:
            return None

    def has_manifest(self, host: str, repository: str, digest: str) -> bool:
        resp = self._request(
            "HEAD", host, f"{repository}/manifests/{digest}", {"Accept": MANIFEST_ACCEPT}
        )
        return resp.status_code == 200

    def has_blob(self, host: str, repository: str, digest: str) -> bool:
        resp = self._request("HEAD", host, f"{repository}/blobs/{digest}")
        return resp.status_code == 200

    def tags(self, host: str, repository: str) -> list[str]:
        resp = self._request("GET", host, f"{repository}/tags/list")
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return list(resp.json().get("tags") or [])

    def blobs(self, ref: ImageRef | str) -> list[Blob]:
        """Every blob (configs and layers) of an image, walking an index into its images."""
        return list(self._walk(ImageRef.parse(ref) if isinstance(ref, str) else ref))

    def _walk(self, ref: ImageRef) -> Iterator[Blob]:
        man = self.manifest(ref)
        data = man.json
        if man.is_index:
            for child in data.get("manifests") or []:
                yield from self._walk(ref.with_digest(str(child["digest"])))
            return
        config = data.get("config")
        if isinstance(config, dict):
            yield Blob(
                str(config["digest"]), int(config.get("size", 0)), str(config.get("mediaType", ""))
            )
        for layer in data.get("layers") or []:
            yield Blob(
                str(layer["digest"]), int(layer.get("size", 0)), str(layer.get("mediaType", ""))
            )


def _sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


def _not_found(ref: ImageRef, resp: httpx.Response) -> str:
    code = ""
    try:
        errors = resp.json().get("errors") or []
        if errors:
            code = f" ({errors[0].get('code')}: {errors[0].get('message')})"
    except (ValueError, AttributeError):
        pass
    what = f"digest {ref.digest}" if ref.digest else f"tag '{ref.tag or 'latest'}'"
    return (
        f"image {ref} not found: registry {ref.host} has no {what} in repository "
        f"'{ref.repository}'{code}; check that the build pushed it (or that it was promoted)"
    )
