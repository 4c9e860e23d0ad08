"""`conveyor aws rehearse`: the synthesized AWS pipeline's buildspecs, run here in pipeline order
on the real example app, with recording fakes of aws/kubectl/crane (FAKES of AWS and EKS only:
the registries, podman environments, build, browser and tests are real)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "pipeline.yaml"
CONVEYOR = Path(sys.executable).parent / "conveyor"


def test_rehearsal_of_the_example_runs_green_and_the_data_flows(tmp_path: Path) -> None:
    """Every generated buildspec passes in order; the test URL is non-empty and the Selenium suite
    reaches it through port-forward; manifests are pinned by digest; the promote copies the
    tested digest; the monitor probes prod; the approval's CustomData names the digest; every
    fake call is printed; the web base image is pushed to its repository's stand-in registry
    and the image build pulls it from there (BASE_IMAGE)."""
    for tool in ("podman", "skopeo", "chromium", "chromedriver", "node", "docker-registry"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    r = subprocess.run(
        [str(CONVEYOR), "aws", "rehearse", str(EXAMPLE), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "rehearsal passed" in out
    checks = [line.strip() for line in out.splitlines() if line.strip().startswith("[")]
    assert checks and all(c.startswith("[ok]") for c in checks), "\n".join(checks)
    for name in (
        "the build exports ImageURI and ImageDigest",
        "the image builds FROM the base image's ECR copy (BASE_IMAGE)",
        "DeployToEKS exports a non-empty URL: URL=http://webapp.webapp-test.svc.cluster.local:80",
        "DeployToEKS applies manifests pinned by digest",
        "RunTestSeleniumonEc2 (the Selenium suite) reaches the test URL",
        "PushImageToEcrProd copies exactly the tested digest",
        "monitor MonitorProd probes the prod URL",
        "approval DeployToEKSProdApproval's CustomData carries the digest",
    ):
        assert any(name in c for c in checks), name
    calls = out[out.index("Recorded fake calls") :]
    for call in (
        "kubectl get -n webapp-test serviceaccount default",
        "kubectl apply --dry-run=server -n webapp-test -f",
        "kubectl apply -n webapp-test -f",
        "kubectl port-forward -n webapp-test svc/webapp :80",
        "crane copy 127.0.0.1:",
        "aws ecr describe-images --repository-name webapp-prod",
        "kubectl port-forward -n webapp-prod svc/webapp :80",
    ):
        assert call in calls, call
    assert "kubectl create namespace" not in calls
    assert "CHROME_BINARY=/usr/bin/google-chrome (on aws/codebuild/standard:7.0)" in out
