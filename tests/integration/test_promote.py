"""`image.promote` with real registries, podman and skopeo: by digest, immutable tags, indexes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.actions.base import ActionResult
from conveyor.actions.promote import Promote
from conveyor.adapters.containers import ContainerRuntime
from conveyor.adapters.registry import RegistryClient
from conveyor.errors import ActionFailed, NotFound, Unavailable
from conveyor.model.pipeline import Action, Environment
from conveyor.platform.daemon import free_port
from conveyor.platform.local import LocalPlatform
from conveyor.settings import Settings
from tests.integration.testimages import (
    action_context,
    build_image,
    pipeline_with,
    remove_images,
    started_platform,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    yield from started_platform(tmp_path_factory.mktemp("promote"))


@pytest.fixture(scope="module")
def images(
    platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """v1 and v2 of webapp in the test registry, as digest references."""
    runtime = ContainerRuntime(platform.container_env())
    work = tmp_path_factory.mktemp("images")
    host = platform.registry_host("test")
    out = {}
    for version in ("v1", "v2"):
        build_image(runtime, work, f"{host}/webapp:{version}", version)
        out[version] = f"{host}/webapp@{platform.resolve_digest(f'{host}/webapp:{version}')}"
    yield out
    remove_images(runtime, [f"{host}/webapp:{v}" for v in out] + list(out.values()))


def promote(platform: LocalPlatform, tmp_path: Path, **config: Any) -> ActionResult:
    action = Action("PushImageToProd", "image.promote", namespace="Promote")
    envs = {
        "test": Environment("test", registry="test"),
        "prod": Environment("prod", registry="prod"),
    }
    ctx = action_context(platform, pipeline_with(envs, action), action, config, tmp_path / "w")
    return Promote().run(ctx)


def blob_bytes_served(platform: LocalPlatform, repository: str, since_line: int) -> int:
    """Bytes of blobs the test registry served (its access log) after line `since_line`."""
    log = platform.state_dir / "logs" / "platform" / "registry-test.log"
    total = 0
    for line in log.read_text().splitlines()[since_line:]:
        m = re.search(rf'"GET /v2/{repository}/blobs/\S+ HTTP/[\d.]+" 200 (\d+)', line)
        if m:
            total += int(m.group(1))
    return total


def log_lines(platform: LocalPlatform) -> int:
    log = platform.state_dir / "logs" / "platform" / "registry-test.log"
    return len(log.read_text().splitlines())


def test_promotion_copies_by_digest_and_records_provenance(
    platform: LocalPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    """The prod registry serves the very digest of the test image; outputs and provenance say so."""
    digest = images["v1"].split("@")[1]
    result = promote(platform, tmp_path, image=images["v1"], to="prod", tag="1.0.0")
    prod = platform.registry_host("prod")
    with RegistryClient() as client:
        assert client.resolve(f"{prod}/webapp:1.0.0") == digest
    assert result.variables["ImageURI"] == f"{prod}/webapp@{digest}"
    assert result.variables["ImageDigest"] == digest
    prov = result.details["promotion"]
    assert prov["source_digest"] == digest and prov["target"] == f"{prod}/webapp:1.0.0"
    assert prov["execution_id"] == "exec-1" and prov["bytes_copied"] > 1_000_000


def test_a_second_promotion_of_the_same_digest_moves_almost_nothing(
    platform: LocalPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    """Promoting a digest the target has (under a new tag) reads no layer from the source."""
    promote(platform, tmp_path / "a", image=images["v2"], to="prod", tag="2.0.0")
    before = log_lines(platform)
    result = promote(platform, tmp_path / "b", image=images["v2"], to="prod", tag="2.0.0-rc")
    moved = blob_bytes_served(platform, "webapp", before)
    prov = result.details["promotion"]
    assert prov["copied"] and prov["bytes_copied"] == 0
    assert moved < 20_000 < prov["bytes_total"]  # the config blob at most, not the layers


def test_the_same_digest_under_the_same_tag_is_a_no_op(
    platform: LocalPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    """Re-promoting what a prod tag already names succeeds without copying."""
    promote(platform, tmp_path / "a", image=images["v1"], to="prod", tag="1.1.0")
    result = promote(platform, tmp_path / "b", image=images["v1"], to="prod", tag="1.1.0")
    assert result.succeeded and not result.details["promotion"]["copied"]


def test_moving_a_prod_tag_to_another_digest_is_refused(
    platform: LocalPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    """Tags are immutable in prod: v2 under v1's tag fails and the tag keeps naming v1."""
    promote(platform, tmp_path / "a", image=images["v1"], to="prod", tag="3.0.0")
    with pytest.raises(ActionFailed, match="tag '3.0.0' .* already names .* immutable"):
        promote(platform, tmp_path / "b", image=images["v2"], to="prod", tag="3.0.0")
    with RegistryClient() as client:
        served = client.resolve(f"{platform.registry_host('prod')}/webapp:3.0.0")
    assert served == images["v1"].split("@")[1]


def test_a_tag_source_is_promoted_as_the_digest_it_names(
    platform: LocalPlatform, images: dict[str, str], tmp_path: Path
) -> None:
    """`image: host/webapp:v2` promotes v2's digest and pins the output to it."""
    tag_ref = images["v2"].split("@")[0] + ":v2"
    result = promote(platform, tmp_path, image=tag_ref, to="prod")
    assert result.variables["ImageDigest"] == images["v2"].split("@")[1]
    assert result.variables["ImageTag"] == "v2"


def test_a_multi_arch_index_is_copied_whole(platform: LocalPlatform, tmp_path: Path) -> None:
    """An index of amd64 and arm64 images arrives with the same index digest and both images."""
    runtime = ContainerRuntime(platform.container_env())
    host = platform.registry_host("test")
    local = "localhost/conveyor-test-multi:v1"
    runtime.run("manifest", "rm", local, check=False)
    try:
        for arch in ("amd64", "arm64"):
            build_image(runtime, tmp_path, "", f"multi-{arch}", arch=arch, manifest=local)
        runtime.run(
            "manifest", "push", "--all", "--tls-verify=false", local, f"docker://{host}/multi:v1"
        )
    finally:
        runtime.run("manifest", "rm", local, check=False)
    with RegistryClient() as client:
        index = client.manifest(f"{host}/multi:v1")
        assert index.is_index and len(index.json["manifests"]) == 2
        result = promote(
            platform, tmp_path, image=f"{host}/multi@{index.digest}", to="prod", tag="v1"
        )
        prod = platform.registry_host("prod")
        assert client.resolve(f"{prod}/multi:v1") == index.digest
        for child in index.json["manifests"]:
            assert client.has_manifest(prod, "multi", child["digest"])
    assert result.details["promotion"]["blobs_total"] >= 6


def test_an_unknown_digest_is_a_not_found_error(platform: LocalPlatform, tmp_path: Path) -> None:
    """A digest the test registry does not have fails with the reference in the message."""
    ref = f"{platform.registry_host('test')}/webapp@sha256:{'0' * 64}"
    with pytest.raises(NotFound, match="not found: registry .* has no digest sha256:000"):
        promote(platform, tmp_path, image=ref, to="prod")


def test_a_stopped_target_registry_is_unavailable(images: dict[str, str], tmp_path: Path) -> None:
    """Promoting to a registry nobody runs says which registry does not answer."""
    settings = Settings(state_dir=tmp_path / "state", database_url="sqlite://")
    dead = LocalPlatform(
        settings,
        registry_ports={"test": int(images["v1"].split(":")[1].split("/")[0]), "prod": free_port()},
    )
    with pytest.raises(Unavailable, match="registry 127.0.0.1:\\d+ is not answering"):
        promote(dead, tmp_path, image=images["v1"], to="prod", tag="x")
