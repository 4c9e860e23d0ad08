"""Provenance: a deployment traces to the source its image was built from (pure model)."""

from __future__ import annotations

from conveyor.model.provenance import commit_of, headline_source, ordered_revisions, source_of
from conveyor.spec.pipeline_file import load_pipeline
from tests.conftest import REPO

SEED = load_pipeline(REPO / "examples" / "pipeline.yaml")


def test_test_deploy_traces_through_build_out_to_the_app_source() -> None:
    """deploy <- build_out <- build <- app_src <- CodeCommitDMF, not the Selenium source."""
    assert source_of(SEED, "DeployToEKS") == "CodeCommitDMF"


def test_prod_deploy_traces_through_the_promoted_image_to_the_app_source() -> None:
    """The prod deploy's image comes from the promotion of the build: the app source again."""
    assert source_of(SEED, "DeployToEKSNamespaceProd") == "CodeCommitDMF"
    assert source_of(SEED, "PushImageToEcrProd") == "CodeCommitDMF"


def test_the_selenium_build_traces_to_the_selenium_source() -> None:
    """A build's primary (first) input decides its source."""
    assert source_of(SEED, "RunTestSeleniumonEc2") == "CodeCommitTestSelenium"


def test_an_action_with_no_lineage_has_no_source() -> None:
    """A monitor reads no artifact nor variable: no source, and an unknown name none either."""
    assert source_of(SEED, "MonitorProd") is None
    assert source_of(SEED, "NoSuchAction") is None


def test_headline_is_the_trigger_else_the_first_declared_source() -> None:
    """A push to the tests repo heads with it; a manual start heads with the first source."""
    assert headline_source(SEED, {"type": "Push", "source": "CodeCommitTestSelenium"}) == (
        "CodeCommitTestSelenium"
    )
    assert headline_source(SEED, {"type": "StartPipelineExecution"}) == "CodeCommitDMF"
    assert headline_source(SEED, None) == "CodeCommitDMF"


def test_revisions_are_ordered_headline_first_then_declared() -> None:
    """Whatever order sources finished in, the headline comes first, then declared order."""
    revs = {"tests": {"CommitId": "t"}, "app": {"CommitId": "a"}}
    assert list(ordered_revisions(revs, order={"app": 0, "tests": 1})) == ["app", "tests"]
    assert list(ordered_revisions(revs, headline="tests", order={"app": 0, "tests": 1})) == [
        "tests",
        "app",
    ]
    assert commit_of(revs, "app") == "a" and commit_of(revs, None) is None
