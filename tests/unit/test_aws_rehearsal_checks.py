"""The rehearsal's image emulation and data-flow checks, without running a build (the full run
is tests/integration/test_aws_rehearsal.py)."""

from __future__ import annotations

from pathlib import Path

from conveyor.aws import images
from conveyor.aws.rehearsal import Step, _Run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml"


def _run(tmp_path: Path) -> _Run:
    run = _Run(EXAMPLE, tmp_path, say=lambda _: None, keep=False)
    run.bindir = tmp_path / "fakes"
    run.state_file = tmp_path / "rehearsal.json"
    return run


def test_unset_browser_paths_are_absent_on_the_codebuild_image(tmp_path: Path) -> None:
    """A Selenium project that sets no browser path gets the suite's Debian default, which the
    CodeBuild image lacks (defect 2 of issue 13 fails the rehearsal)."""
    env = _run(tmp_path).substitute("E2E", {"BASE_URL": "http://x"}, images.STANDARD_7)
    assert env["CHROME_BINARY"].startswith("/absent-on-")
    assert env["CHROMEDRIVER"].startswith("/absent-on-")
    assert not Path(env["CHROME_BINARY"]).exists()


def test_image_browser_paths_map_to_this_machine(tmp_path: Path) -> None:
    """The image's Chrome and chromedriver paths run as this machine's chromium."""
    env = _run(tmp_path).substitute(
        "E2E",
        {
            "BASE_URL": "http://x",
            "CHROME_BINARY": "/usr/bin/google-chrome",
            "CHROMEDRIVER": "/usr/local/bin/chromedriver",
        },
        images.STANDARD_7,
    )
    assert (env["CHROME_BINARY"], env["CHROMEDRIVER"]) == (
        "/usr/bin/chromium",
        "/usr/bin/chromedriver",
    )


def test_an_empty_test_url_fails_the_check(tmp_path: Path) -> None:
    """A deploy that exports an empty URL fails the rehearsal (defect 1 of issue 13)."""
    run = _run(tmp_path)
    run.result.steps = [
        Step(
            "DeployToEKS",
            "DeployToEKS",
            "codebuild",
            True,
            exported={"URL": "", "ImageURI": "r@sha256:1", "ImageDigest": "sha256:1"},
            env={"K8S_NAMESPACE": "webapp-test", "MANIFESTS": "k8s/"},
        )
    ]
    run.check()
    failed = {c.name for c in run.result.checks if not c.ok}
    assert "DeployToEKS exports a non-empty URL" in failed
    assert not run.result.succeeded


def test_result_as_json_names_each_check(tmp_path: Path) -> None:
    """`--json` gives the steps, checks, calls and substitutions, and the overall verdict."""
    run = _run(tmp_path)
    run.result.steps = [Step("Build", "B", "codebuild", True, exported={"ImageDigest": ""})]
    run.check()
    data = run.result.as_dict()
    assert data["succeeded"] is False
    assert data["checks"][0] == {
        "name": "the build exports ImageURI and ImageDigest",
        "ok": False,
        "detail": "ImageURI=(empty) ImageDigest=(empty)",
    }
