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
from conveyor.buildspec.spec import parse_buildspec

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


def _fake_kubectl_bin(
    tmp: Path, *, service: bool, namespace_exists: bool = True, refuse: bool = False
) -> Path:
    """A FAKE kubectl (a cluster cannot run here): answers the deploy buildspec's calls and
    notes each in calls.log; `refuse`: the API server refuses the manifests' dry run."""
    bindir = tmp / "fake-bin"
    bindir.mkdir(exist_ok=True)
    svc = (
        ',{"kind":"Service","metadata":{"name":"webapp"},"spec":{"ports":[{"port":80}]}}'
        if service
        else ""
    )
    (bindir / "kubectl").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp / "calls.log"}\n'
        'case "$*" in\n'
        f'  *"serviceaccount default"*) exit {0 if namespace_exists else 1} ;;\n'
        + (
            '  *"--dry-run=server"*) echo \'The Deployment "webapp" is invalid\' >&2; exit 1 ;;\n'
            if refuse
            else ""
        )
        + '  *"-o json"*) echo \'{"kind":"List","items":[{"kind":"Deployment",'
        f'"metadata":{{"name":"webapp"}}}}{svc}]}}\' ;;\n'
        '  *"-o name"*) echo deployment.apps/webapp ;;\n'
        "esac\n"
    )
    (bindir / "aws").write_text("#!/bin/sh\nexit 0\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    return bindir


def _run_phases(src: Path, bindir: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    phases = {p.name: p for p in parse_buildspec(deploy_buildspec()).phases}
    script = "set -e\n" + "\n".join(
        c.text for name in ("pre_build", "build") for c in phases[name].commands
    )
    env = dict(os.environ)
    env.update(
        PATH=f"{bindir}:{os.environ['PATH']}",
        CODEBUILD_SRC_DIR=str(src),
        MANIFESTS="k8s/",
        IMAGE_NAME="webapp",
        IMAGE=DIGEST_REF,
        EKS_CLUSTER="seed-test",
        K8S_NAMESPACE="webapp-test",
        **extra,
    )
    if "APP_URL" not in extra:
        env.pop("APP_URL", None)
    return subprocess.run(
        ["bash", "-c", script + '\necho "URL=$URL"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_url_is_the_services_cluster_address(src: Path, tmp_path: Path) -> None:
    """Without `url:`, the deploy exports the Service's cluster-internal URL (never empty)."""
    r = _run_phases(src, _fake_kubectl_bin(tmp_path, service=True), {})
    assert r.returncode == 0, r.stderr
    assert "URL=http://webapp.webapp-test.svc.cluster.local:80" in r.stdout


def test_environment_url_wins(src: Path, tmp_path: Path) -> None:
    """With the environment's `url:` (APP_URL), that is the URL."""
    r = _run_phases(
        src, _fake_kubectl_bin(tmp_path, service=False), {"APP_URL": "https://test.example.com"}
    )
    assert r.returncode == 0, r.stderr
    assert "URL=https://test.example.com" in r.stdout


def test_no_service_and_no_url_fails_saying_how(src: Path, tmp_path: Path) -> None:
    """Neither a Service nor `url:`: the deploy fails and says how to set a URL."""
    r = _run_phases(src, _fake_kubectl_bin(tmp_path, service=False), {})
    assert r.returncode != 0
    assert "add one, or set url: on the environment" in r.stderr


def test_missing_namespace_fails_with_the_create_command(src: Path, tmp_path: Path) -> None:
    """A namespace that is not there: the exact `kubectl create namespace` command, no create."""
    r = _run_phases(src, _fake_kubectl_bin(tmp_path, service=True, namespace_exists=False), {})
    assert r.returncode != 0
    assert "kubectl create namespace webapp-test" in r.stderr
    assert "conveyor aws prepare-cluster" in r.stderr


def test_a_manifest_the_cluster_refuses_changes_nothing(src: Path, tmp_path: Path) -> None:
    """The server-side dry run comes first: refused, the deploy fails before any real apply."""
    r = _run_phases(src, _fake_kubectl_bin(tmp_path, service=True, refuse=True), {})
    assert r.returncode != 0
    assert "refused the manifests (server-side dry run): nothing was applied" in r.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    applies = [c for c in calls if c.startswith("apply")]
    assert applies == [applies[0]] and "--dry-run=server" in applies[0]


def test_the_dry_run_precedes_the_apply(src: Path, tmp_path: Path) -> None:
    """Accepted, the same manifests are dry-run on the server, then applied."""
    r = _run_phases(src, _fake_kubectl_bin(tmp_path, service=True), {})
    assert r.returncode == 0, r.stderr
    applies = [
        c for c in (tmp_path / "calls.log").read_text().splitlines() if c.startswith("apply")
    ]
    assert [("--dry-run=server" in c) for c in applies] == [True, False]
