"""`conveyor export codepipeline`: JSON that create-pipeline accepts, with the stack's names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from conveyor.aws.synth import synthesize
from conveyor.spec.codepipeline import export_pipeline
from conveyor.spec.pipeline_file import load_pipeline

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "unit" / "data" / "seed_eks.yaml"
EXAMPLE = REPO / "examples" / "pipeline.yaml"


def _export(path: Path) -> dict[str, Any]:
    doc, _ = export_pipeline(
        load_pipeline(path),
        role_arn="arn:aws:iam::123456789012:role/r",
        artifact_bucket="conveyor-artifacts",
    )
    return doc


def _actions(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for s in doc["pipeline"]["stages"] for a in s["actions"]}


@pytest.mark.parametrize("path", [SEED, EXAMPLE], ids=["seed", "example"])
def test_export_passes_botocore_create_pipeline_validation(path: Path) -> None:
    """The JSON is a valid CreatePipeline input for botocore's codepipeline service model."""
    model = botocore.session.get_session().get_service_model("codepipeline")
    shape = model.operation_model("CreatePipeline").input_shape
    report = ParamValidator().validate(_export(path), shape)
    assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize("path", [SEED, EXAMPLE], ids=["seed", "example"])
def test_every_codebuild_action_has_one_to_five_inputs(path: Path) -> None:
    """CodeBuild actions need 1-5 input artifacts: the promote reads the build's output."""
    actions = _actions(_export(path))
    for name, a in actions.items():
        if a["actionTypeId"]["provider"] == "CodeBuild":
            assert 1 <= len(a["inputArtifacts"]) <= 5, name
    assert actions["PushImageToEcrProd"]["inputArtifacts"] == [{"name": "build_out"}]


def test_approval_keeps_topic_digest_and_link() -> None:
    """The approval has an SNS topic, CustomData naming the digest, and a link to the evidence."""
    config = _actions(_export(EXAMPLE))["DeployToEKSProdApproval"]["configuration"]
    assert config["NotificationArn"].startswith("arn:aws:sns:")
    assert config["CustomData"].endswith("Image: #{Build.ImageDigest}")
    assert config["ExternalEntityLink"].endswith(
        "/codebuild/projects/seed-webapp-RunTestSeleniumonEc2/history"
    )


def test_names_agree_with_the_stack() -> None:
    """Project names, the monitor action and its URL, and input artifacts are the stack's."""
    p = load_pipeline(EXAMPLE)
    stack = synthesize(p, {"test": "eks", "prod": "eks"}).template
    resources = stack["Resources"]
    stack_actions = {
        a["Name"]: a for s in resources["Pipeline"]["Properties"]["Stages"] for a in s["Actions"]
    }
    for name, a in _actions(_export(EXAMPLE)).items():
        mine = stack_actions[name]
        assert a["actionTypeId"] == {k.lower(): v for k, v in mine["ActionTypeId"].items()}, name
        assert a["inputArtifacts"] == [
            {"name": x["Name"]} for x in mine.get("InputArtifacts", [])
        ], name
        if "ProjectName" in a.get("configuration", {}):
            project = resources[mine["Configuration"]["ProjectName"]["Ref"]]["Properties"]["Name"]
            assert a["configuration"]["ProjectName"] == project, name
        if "EnvironmentVariables" in a.get("configuration", {}):
            by_name = sorted(json.loads(a["configuration"]["EnvironmentVariables"]), key=str)
            assert by_name == sorted(
                json.loads(mine["Configuration"]["EnvironmentVariables"]), key=str
            ), name


def test_sources_do_not_poll_when_triggers_start_the_pipeline() -> None:
    """With a trigger, CodeCommit sources set PollForSourceChanges to "false"."""
    actions = _actions(_export(EXAMPLE))
    assert actions["CodeCommitDMF"]["configuration"]["PollForSourceChanges"] == "false"
    assert actions["CodeCommitTestSelenium"]["configuration"]["PollForSourceChanges"] == "false"
