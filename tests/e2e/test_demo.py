"""The main job: `conveyor demo` runs the seed pipeline end to end on the example app, then a
commit that breaks a feature stops at the Selenium stage while production keeps its image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

NEEDED = (
    "podman",
    "skopeo",
    "docker-registry",
    "busybox",
    "chromium",
    "chromedriver",
    "node",
    "npm",
    "git",
)


def test_demo_release_then_a_breaking_commit(tmp_path: Path) -> None:
    """Run 1 reaches prod with the digest that passed the tests; run 2 fails e2e and prod is untouched."""
    missing = [b for b in NEEDED if not shutil.which(b)]
    if missing:
        pytest.fail(f"missing tools for the demo: {missing} (make test installs them)")
    env = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    try:
        res = subprocess.run(
            [sys.executable, "-m", "conveyor", "demo", "--approve", "--break-e2e", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
        summary = json.loads(res.stdout[res.stdout.index("{\n") :])
        good, bad = summary["runs"]
        assert good["status"] == "Succeeded"
        assert [s["name"] for s in good["stages"]] == [
            "Source",
            "Build",
            "DeployToEKS",
            "RunSeleniumTest",
            "DeployToEKSProdApproval",
            "DeployToEKSProd",
        ]
        assert all(s["status"] == "Succeeded" for s in good["stages"])
        released = good["environments"]["prod"]["digest"]
        assert released == good["environments"]["test"]["digest"]  # the same image, by digest
        assert bad["status"] == "Failed"
        assert [s["name"] for s in bad["stages"] if s["status"] == "Failed"] == ["RunSeleniumTest"]
        assert "tests failed in report 'e2e'" in bad["message"] and "test_filter" in bad["message"]
        assert bad["environments"]["prod"]["digest"] == released
        assert bad["environments"]["test"]["digest"] != released
        health = httpx.get("http://127.0.0.1:8080/healthz", timeout=5).json()
        assert health["commit"] == good["environments"]["prod"]["commit"]
        # the failing test's screenshot is kept as an artifact of the action
        shots = list(
            (tmp_path / "home" / "work" / bad["execution"]).glob(
                "**/out/**/FAILED-*test_filter*.png"
            )
        )
        assert shots
    finally:
        subprocess.run(
            [sys.executable, "-m", "conveyor", "down"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
