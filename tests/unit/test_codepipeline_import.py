"""CodePipeline JSON import/export: the real-world corpus, located problems, round trips."""

from __future__ import annotations

import json
import os
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
from tests.conftest import CORPUS, corpus_cases

PIPELINES = CORPUS / "pipelines"
JSON_FILES = sorted(PIPELINES.glob("*.json"))
BROKEN = {
    "NTT-DATA-Cloud-Transformation__devops-springboard-pipelines__cf-templates_deploy-with-approval_"
    "microservice-pipeline.yml": (557, "duplicate key 'RoleArn'")
}
ALL = sorted(PIPELINES.glob("*"))
IMPORTABLE = [p for p in ALL if p.name not in BROKEN and p.name != "README.md"]
SEED = Path(__file__).resolve().parent / "data" / "seed_eks.yaml"


@pytest.fixture(autouse=True)
def _corpus() -> None:
    """The real corpus: skipped with the reason when absent, a failure under CI=true."""
    if not PIPELINES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"corpus not found at {PIPELINES} (set CONVEYOR_CORPUS)")
        pytest.skip(f"corpus not found at {PIPELINES} (set CONVEYOR_CORPUS)")


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


@pytest.mark.corpus
def test_corpus_is_complete() -> None:
    """Every corpus pipeline is either importable or listed as broken with its expected message."""
    assert len(JSON_FILES) == 4
    assert {p.name for p in ALL} - {p.name for p in IMPORTABLE} - {"README.md"} == set(BROKEN)


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_cases(IMPORTABLE), ids=lambda p: p.name[:60])
def test_corpus_imports_and_round_trips(path: Path) -> None:
    """Each importable corpus file imports, and import -> export -> import keeps stages, actions,
    runOrder, artifacts, namespaces and the pipeline type (these are all V1: no executionMode)."""
    first = load_codepipeline(path).pipeline
    assert first.stages and all(s.actions for s in first.stages)
    exported, _ = export_pipeline(first)
    assert exported["pipeline"]["pipelineType"] == "V1"
    assert "executionMode" not in exported["pipeline"]
    second = _reimport(exported)
    assert _shape(second) == _shape(first)


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_cases(JSON_FILES), ids=lambda p: p.name[:60])
def test_json_round_trip_is_exact(path: Path) -> None:
    """For get-pipeline JSON, the whole file survives a round trip (AWS-only keys included)."""
    first = load_codepipeline(path).pipeline
    second = _reimport(export_pipeline(first)[0])
    assert from_model(second) == from_model(first)


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_corpus_file_fails_precisely(name: str) -> None:
    """A broken corpus file fails with its file, line and what is wrong."""
    line, what = BROKEN[name]
    with pytest.raises(ValidationFailed) as e:
        load_codepipeline(PIPELINES / name)
    p = e.value.problems[0]
    assert (p.file.endswith(name), p.line, what in p.message) == (True, line, True)


@pytest.mark.corpus
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


@pytest.mark.corpus
def test_unknown_provider_is_kept_and_reported() -> None:
    """A CodeDeploy action is kept as aws.Deploy.CodeDeploy with its configuration, and reported."""
    path = PIPELINES / "aws__aws-cli__awscli_examples_codepipeline_get-pipeline.rst__output.json"
    imported = load_codepipeline(path)
    action = imported.pipeline.stage("Beta").action("CodePipelineDemoFleet")
    assert action.type == "aws.Deploy.CodeDeploy"
    assert action.config["configuration"] == {
        "ApplicationName": "CodePipelineDemoApplication",
        "DeploymentGroupName": "CodePipelineDemoFleet",
    }
    assert [w.line for w in imported.warnings if "aws.Deploy.CodeDeploy" in w.message] == [40]


@pytest.mark.corpus
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


@pytest.mark.corpus
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


@pytest.mark.corpus
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


# ---- what real pipelines revealed (issue 14, section 3)

GET_PIPELINE = (
    PIPELINES / "aws__aws-cli__awscli_examples_codepipeline_get-pipeline.rst__output.json"
)
EKS_CFN = PIPELINES / "aws-samples__eks-workshop__templates_ci-cd-codepipeline.cfn.yml"


def _v2(doc: dict[str, object]) -> dict[str, object]:
    d = json.loads(GET_PIPELINE.read_text())
    d["pipeline"].update(doc)
    return d


def test_v1_stays_v1_without_execution_mode_or_warning_and_v2_stays_v2() -> None:
    """D5: a V1 import exports as V1 with no executionMode and no warning about it; V2 as V2."""
    exported, warnings = export_pipeline(load_codepipeline(GET_PIPELINE).pipeline)
    assert exported["pipeline"]["pipelineType"] == "V1"
    assert "executionMode" not in exported["pipeline"]
    assert not [w for w in warnings if "V1" in w or "V2" in w]
    v2 = _v2({"pipelineType": "V2", "executionMode": "QUEUED"})
    data, lines = load_json(json.dumps(v2, indent=2), "v2.json")
    exported, _ = export_pipeline(import_document(data, lines).pipeline)
    assert (exported["pipeline"]["pipelineType"], exported["pipeline"]["executionMode"]) == (
        "V2",
        "QUEUED",
    )


def test_cloudformation_intrinsics_are_each_reported_at_import_and_export() -> None:
    """D6: each `!Ref`/`!GetAtt` turned into a literal is reported with its line, kept in the
    settings, and reported again by export (never a silent logical id)."""
    imported = load_codepipeline(EKS_CFN)
    found = {
        w.line: w.message for w in imported.warnings if "CloudFormation intrinsic" in w.message
    }
    assert "`!GetAtt CodePipelineServiceRole.Arn`" in found[243] and "roleArn" in found[243]
    assert "artifactStore.location: `!Ref CodePipelineArtifactBucket`" in found[246]
    assert "`!Ref CodeBuildProject`" in found[273]
    kept = imported.pipeline.settings["codepipeline"]["intrinsics"]
    assert {
        "path": ["artifactStore", "location"],
        "intrinsic": "!Ref CodePipelineArtifactBucket",
    } in kept
    _, warnings = export_pipeline(imported.pipeline)
    [w] = [w for w in warnings if w.startswith("artifactStore.location")]
    assert "was `!Ref CodePipelineArtifactBucket`" in w and "'CodePipelineArtifactBucket'" in w


@pytest.mark.parametrize("path", IMPORTABLE, ids=lambda p: p.name[:60])
def test_an_imported_pipeline_always_validates(path: Path, tmp_path: Path) -> None:
    """D7: every importable real pipeline, written as a pipeline file, passes `validate` with the
    installed action types (S3 sources, CodeDeploy... included)."""
    from conveyor.actions.registry import ActionRegistry
    from conveyor.spec.pipeline_file import dump_yaml

    out = tmp_path / "pipeline.yaml"
    out.write_text(dump_yaml(from_model(load_codepipeline(path).pipeline)))
    load_pipeline(out, ActionRegistry().catalogue())


def test_an_unknown_provider_is_a_typed_passthrough_that_exports_unchanged() -> None:
    """D7: CodeDeploy imports as `aws.Deploy.CodeDeploy` and exports byte-for-byte as it was."""
    original = json.loads(GET_PIPELINE.read_text())["pipeline"]["stages"][1]["actions"][0]
    imported = load_codepipeline(GET_PIPELINE).pipeline
    assert imported.stage("Beta").action("CodePipelineDemoFleet").type == "aws.Deploy.CodeDeploy"
    exported, _ = export_pipeline(imported)
    again = exported["pipeline"]["stages"][1]["actions"][0]
    assert again == original


def test_validate_on_get_pipeline_json_suggests_import(tmp_path: Path) -> None:
    """`validate` on get-pipeline JSON or a CFN template says to run `conveyor import codepipeline`."""
    for path in (GET_PIPELINE, EKS_CFN):
        with pytest.raises(ValidationFailed) as e:
            load_pipeline(path)
        (p,) = e.value.problems
        assert "conveyor import codepipeline" in p.message and p.line == 1


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("pipeline_stack.ts", "import * as cdk from 'aws-cdk-lib';\nnew cdk.Stack(app, 'S');\n"),
        ("pipeline_stack.py", "import aws_cdk as cdk\nfrom aws_cdk import aws_codepipeline\n"),
    ],
)
def test_cdk_code_says_to_synth_and_import_the_template(
    name: str, code: str, tmp_path: Path
) -> None:
    """A CDK source file given to `validate` or `import` says: this is CDK code, run `cdk synth`."""
    path = tmp_path / name
    path.write_text(code)
    for load in (load_pipeline, load_codepipeline):
        with pytest.raises(ValidationFailed) as e:
            load(path)
        assert "this is CDK code" in str(e.value) and "run `cdk synth`" in str(e.value)
        assert "import the template" in str(e.value)


def test_a_malformed_role_arn_is_warned_about_with_its_line() -> None:
    """A roleArn AWS would refuse ('ARN', a non-numeric account) is a located warning."""
    cross = (
        PIPELINES
        / "awsdocs__aws-codepipeline-user-guide__doc_source_actions-create-cross-region.md.json"
    )
    [w] = [w for w in load_codepipeline(cross).warnings if "IAM role ARN" in w.message]
    assert w.line == 4 and "'ARN'" in w.message
    good = load_codepipeline(GET_PIPELINE).warnings
    assert not [w for w in good if "IAM role ARN" in w.message]


def test_a_hyphenated_secondary_input_artifact_is_warned_about() -> None:
    """An input artifact named `test-src` cannot become CODEBUILD_SRC_DIR_test-src: a warning."""
    doc = {
        "pipeline": {
            "name": "p",
            "roleArn": "arn:aws:iam::123456789012:role/r",
            "stages": [
                {
                    "name": "Build",
                    "actions": [
                        {
                            "name": "B",
                            "actionTypeId": {"category": "Build", "owner": "AWS",
                                             "provider": "CodeBuild", "version": "1"},
                            "configuration": {"ProjectName": "x"},
                            "inputArtifacts": [{"name": "app-src"}, {"name": "test-src"}],
                        }
                    ],
                }
            ],
        }
    }  # fmt: skip
    data, lines = load_json(json.dumps(doc, indent=2), "p.json")
    warned = [w for w in import_document(data, lines).warnings if "CODEBUILD_SRC_DIR_" in w.message]
    assert (
        len(warned) == 1 and "'test-src'" in warned[0].message and "test_src" in warned[0].message
    )
