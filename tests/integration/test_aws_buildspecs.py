"""The generated deploy buildspec's image pinning, run by real bash + sed on the example manifests.

kubectl, aws and a cluster are not here: only the part that needs none runs (resolve the image
when it is already a digest reference or comes from imageDetail.json, pin it in the manifests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conveyor.aws.buildspecs import deploy_buildspec
from conveyor.spec.buildspec import parse_buildspec

pytestmark = pytest.mark.integration

MANIFESTS = Path(__file__).resolve().parents[2] / "examples" / "webapp" / "k8s"
DIGEST_REF = "123456789012.dkr.ecr.us-east-1.amazonaws.com/webapp-test@sha256:" + "a" * 64


def _pinning_script() -> str:
    phases = {p.name: p for p in parse_buildspec(deploy_buildspec()).phases}
    resolve = phases["pre_build"].commands[0].text
    render = [c.text for c in phases["build"].commands[:3]]
    return "set -e\n" + resolve + "\n" + "\n".join(render) + '\ncat "$RENDERED"/*.yaml\n'


def _run(
    src: Path, image: str | None, image_name: str = "webapp"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IMAGE"}
    env.update(CODEBUILD_SRC_DIR=str(src), MANIFESTS="k8s/", IMAGE_NAME=image_name)
    if image is not None:
        env["IMAGE"] = image
    return subprocess.run(
        ["bash", "-c", _pinning_script()], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def src(tmp_path: Path) -> Path:
    if not MANIFESTS.is_dir():
        pytest.skip("examples/webapp/k8s is missing")
    shutil.copytree(MANIFESTS, tmp_path / "k8s")
    return tmp_path


def test_digest_is_pinned_in_the_deployment(src: Path) -> None:
    """The app's Deployment gets the image by digest, whatever tag it had."""
    r = _run(src, DIGEST_REF)
    assert r.returncode == 0, r.stderr
    assert f"image: {DIGEST_REF}" in r.stdout
    assert "image: webapp:latest" not in r.stdout


def test_image_from_image_detail_file(src: Path) -> None:
    """Without IMAGE, the image comes from imageDetail.json in the input artifact."""
    (src / "imageDetail.json").write_text(json.dumps({"ImageURI": DIGEST_REF}))
    r = _run(src, None)
    assert r.returncode == 0, r.stderr
    assert f"image: {DIGEST_REF}" in r.stdout


def test_no_matching_image_line_fails(src: Path) -> None:
    """No manifest image matches the repository name: fail rather than apply stale images."""
    r = _run(src, DIGEST_REF, image_name="not-this-app")
    assert r.returncode != 0
    assert "nothing pinned" in r.stderr


def test_no_image_at_all_fails(src: Path) -> None:
    """Neither IMAGE nor imageDetail.json: a clear failure."""
    r = _run(src, None)
    assert r.returncode != 0
    assert "no image given" in r.stderr


def test_image_that_is_not_a_reference_is_refused_before_sed(src: Path, tmp_path: Path) -> None:
    """An IMAGE value with shell or sed syntax (from a variable) is refused, and runs nothing."""
    marker = tmp_path / "f"
    r = _run(src, f"x@sha256:{'a' * 64}#e id > {marker}#$(id > {marker})")
    assert r.returncode == 1
    assert "IMAGE is not an image reference" in r.stderr
    assert not marker.exists()
