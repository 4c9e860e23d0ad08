"""CodePipeline JSON import/export: the real-world corpus, located problems, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.errors import ValidationFailed
from conveyor.spec.codepipeline import (
    export_pipeline,
    import_document,
    load_codepipeline,
    load_json,
)
from conveyor.spec.pipeline_file import from_model, load_pipeline

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PIPELINES = SHARED / "corpus" / "pipelines"
JSON_FILES = sorted(PIPELINES.glob("*.json"))
BROKEN = {
    "NTT-DATA-Cloud-Transformation__devops-springboard-pipelines__cf-templates_deploy-with-approval_"
    "microservice-pipeline.yml": (557, "duplicate key 'RoleArn'")
}
ALL = sorted(PIPELINES.glob("*"))
IMPORTABLE = [p for p in ALL if p.name not in BROKEN and p.name != "README.md"]
SEED = Path(__file__).resolve().parent / "data" / "seed_eks.yaml"

pytestmark = pytest.mark.skipif(not PIPELINES.is_dir(), reason=f"corpus not found at {PIPELINES}")


def _shape(
    p: object,
) -> list[tuple[str, list[tuple[str, int, tuple[str, ...], tuple[str, ...], str | None]]]]:
    return [
        (s.name, [(a.name, a.run_order, a.inputs, a.outputs, a.namespace) for a in s.actions])
        for s in p.stages
    ]  # type: ignore[attr-defined]


def _reimport(doc: dict[str, object]) -> object:
    text = json.dumps(doc, indent=2)
    data, lines = load_json(text, "exported.json")
    return import_document(data, lines).pipeline


def test_corpus_is_complete() -> None:
    """Every corpus pipeline is either importable or listed as broken with its expected message."""
    assert len(JSON_FILES) == 4
    assert {p.name for p in ALL} - {p.name for p in IMPORTABLE} - {"README.md"} == set(BROKEN)


@pytest.mark.parametrize("path", IMPORTABLE, ids=lambda p: p.name[:60])
def test_corpus_imports_and_round_trips(path: Path) -> None:
    """Each importable corpus file imports, and import -> export -> import keeps stages, actions,
    runOrder, artifacts and namespaces."""
    first = load_codepipeline(path).pipeline
    assert first.stages and all(s.actions for s in first.stages)
    exported, _ = export_pipeline(first)
    assert exported["pipeline"]["pipelineType"] == "V2"
    second = _reimport(exported)
    assert _shape(second) == _shape(first)


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name[:60])
def test_json_round_trip_is_exact(path: Path) -> None:
    """For get-pipeline JSON, the whole file survives a round trip (AWS-only keys included)."""
    first = load_codepipeline(path).pipeline
    second = _reimport(export_pipeline(first)[0])
    assert from_model(second) == from_model(first)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_corpus_file_fails_precisely(name: str) -> None:
    """A broken corpus file fails with its file, line and what is wrong."""
    line, what = BROKEN[name]
    with pytest.raises(ValidationFailed) as e:
        load_codepipeline(PIPELINES / name)
    p = e.value.problems[0]
    assert (p.file.endswith(name), p.line, what in p.message) == (True, line, True)


def test_codebuild_typo_is_accepted_with_a_warning() -> None:
    """The docs bug `"provider": "AWS CodeBuild"` imports as build, with a located did-you-mean."""
    path = (
        PIPELINES
        / "awsdocs__aws-codebuild-user-guide__doc_source_sample-pipeline-multi-input-output.md.json"
    )
    imported = load_codepipeline(path)
    build = imported.pipeline.stage("Build").action("Build")
    assert build.type == "build"
    assert dict(build.config) == {
        "codebuildProject": "my-build-project-name",
        "primarySource": "source1",
    }
    assert build.inputs == ("source1", "source2") and build.outputs == ("artifact1", "artifact2")
    [w] = [w for w in imported.warnings if "did you mean 'CodeBuild'" in w.message]
    assert w.line == 67
    exported, _ = export_pipeline(imported.pipeline)
    action = exported["pipeline"]["stages"][1]["actions"][0]
    assert action["actionTypeId"]["provider"] == "CodeBuild"


def test_unknown_provider_is_kept_and_reported() -> None:
    """A CodeDeploy action is kept as aws.CodeDeploy with its configuration, and reported."""
    path = PIPELINES / "aws__aws-cli__awscli_examples_codepipeline_get-pipeline.rst__output.json"
    imported = load_codepipeline(path)
    action = imported.pipeline.stage("Beta").action("CodePipelineDemoFleet")
    assert action.type == "aws.CodeDeploy"
    assert action.config["configuration"] == {
        "ApplicationName": "CodePipelineDemoApplication",
        "DeploymentGroupName": "CodePipelineDemoFleet",
    }
    assert [w.line for w in imported.warnings if "aws.CodeDeploy" in w.message] == [40]


def test_metadata_is_stripped_and_poll_string_kept() -> None:
    """`metadata` is dropped with a note; `PollForSourceChanges: "false"` stays a string."""
    path = PIPELINES / "awsdocs__aws-codepipeline-user-guide__doc_source_pipelines-create.md.json"
    imported = load_codepipeline(path)
    assert any("metadata" in w.message for w in imported.warnings)
    exported, _ = export_pipeline(imported.pipeline)
    assert "metadata" not in exported
    source = exported["pipeline"]["stages"][0]["actions"][0]
    assert source["configuration"]["PollForSourceChanges"] == "false"
    assert exported["tags"] == [{"key": "Project", "value": "ProjectA"}]


def test_codecommit_maps_to_git_source() -> None:
    """CodeCommit becomes source.git (repository, branch); a cross-region action keeps region."""
    path = (
        PIPELINES
        / "awsdocs__aws-codepipeline-user-guide__doc_source_actions-create-cross-region.md.json"
    )
    p = load_codepipeline(path).pipeline
    src = p.stage("Source").action("Source")
    assert (src.type, dict(src.config)) == (
        "source.git",
        {"repository": "MyTestRepo", "branch": "main"},
    )
    assert p.stage("Deploy").action("Deploy").region == "us-east-1"


def test_cloudformation_template_imports_its_pipeline_resource() -> None:
    """A CFN template's AWS::CodePipeline::Pipeline imports; parameters become variables."""
    path = PIPELINES / "aws-samples__eks-workshop__templates_ci-cd-codepipeline.cfn.yml"
    imported = load_codepipeline(path)
    p = imported.pipeline
    app = p.stage("Source").action("App")
    assert app.type == "source.git"
    assert (
        app.config["repository"]
        == "https://github.com/#{variables.GitHubUser}/#{variables.GitSourceRepo}.git"
    )
    assert {v.name for v in p.variables} == {"GitBranch", "GitHubUser", "GitSourceRepo"}
    assert any("OAuthToken dropped" in w.message for w in imported.warnings)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        (
            '{\n  "pipeline": {\n    "name": "x",\n    "stages": [\n  }\n}',
            5,
            "invalid JSON, column 3",
        ),
        ('{"pipelines": {}}', 1, 'expected a top-level "pipeline" object (found: pipelines)'),
        (
            '{\n "pipeline": {\n  "name": "p",\n  "stages": [\n   {"name": "S",\n    "actions": [\n'
            '     {"name": "A", "actionTypeId": {"category": "Build"}}]}]}}',
            7,
            "actionTypeId needs",
        ),
        (
            '{\n "pipeline": {\n  "name": "p",\n  "stages": [\n   {"name": "S", "actions": [\n'
            '     {"name": "A",\n      "runOrder": "first",\n      "actionTypeId": {"category": '
            '"Approval",'
            ' "owner": "AWS", "provider": "Manual", "version": "1"}}]}]}}',
            7,
            "runOrder must be an integer",
        ),
        (
            '{"Resources": {"B": {"Type": "AWS::S3::Bucket"}}}',
            1,
            "no AWS::CodePipeline::Pipeline resource",
        ),
    ],
)
def test_bad_input_is_located(text: str, line: int, what: str) -> None:
    """Malformed JSON and malformed pipelines fail with the line and what is wrong."""
    with pytest.raises(ValidationFailed) as e:
        load_codepipeline("bad.json", text=text)
    p = e.value.problems[0]
    assert (p.file, p.line) == ("bad.json", line)
    assert what in p.message


def test_export_of_seed_pipeline() -> None:
    """The seed exports as V2 JSON: CodeCommit sources, CodeBuild for build/deploy/promote and the
    monitor (its failure rolls the stage back), a Manual approval."""
    p = load_pipeline(SEED)
    doc, warnings = export_pipeline(
        p, role_arn="arn:aws:iam::123456789012:role/r", artifact_bucket="b"
    )
    stages = {s["name"]: s for s in doc["pipeline"]["stages"]}
    providers = {
        a["name"]: a["actionTypeId"]["provider"] for s in stages.values() for a in s["actions"]
    }
    assert providers == {
        "CodeCommitDMF": "CodeCommit",
        "CodeCommitTestSelenium": "CodeCommit",
        "AngularBuildAndCreateDockerImage": "CodeBuild",
        "DeployToEKS": "CodeBuild",
        "RunTestSeleniumonEc2": "CodeBuild",
        "DeployToEKSProdApproval": "Manual",
        "PushImageToEcrProd": "CodeBuild",
        "DeployToEKSNamespaceProd": "CodeBuild",
        "Monitor": "CodeBuild",
    }
    assert stages["DeployToEKSProd"]["onFailure"] == {"result": "ROLLBACK"}
    assert any(
        "EventBridge" in w for w in warnings
    )  # the CodeCommit trigger cannot be a V2 trigger
    again = _reimport(doc)
    assert [s.name for s in again.stages] == [s.name for s in p.stages]  # type: ignore[attr-defined]
