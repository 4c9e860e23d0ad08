"""A third-party action type owns its AWS mapping: it validates, exports to CodePipeline JSON
and synthesizes into CloudFormation with no edit in conveyor.spec or conveyor.aws."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.actions.aws_mapping import ExportRequest, SynthRequest
from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.actions.registry import ActionRegistry
from conveyor.aws.synth import Unmappable, synthesize
from conveyor.errors import ConfigError
from conveyor.spec.codepipeline import export_pipeline
from conveyor.spec.pipeline_file import load_pipeline

PIPELINE = """\
name: plugged
stages:
  - name: Source
    actions:
      - name: App
        type: source.git
        outputs: [src]
        config: {repository: app, branch: main}
  - name: Check
    actions:
      - name: Smoke
        type: acme.smoke
        inputs: [src]
        config: {url: https://example.com/health}
"""
SMOKE_TYPE = {"category": "Test", "owner": "Custom", "provider": "AcmeSmoke", "version": "1"}


class SmokeConfig(ActionConfig):
    url: str


class Smoke(BaseAction):
    """A third-party type with its own CodePipeline export and CloudFormation synthesis."""

    type_name = "acme.smoke"
    Config = SmokeConfig

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult()

    @classmethod
    def to_codepipeline(cls, req: ExportRequest) -> dict[str, Any]:
        return req.finish(dict(SMOKE_TYPE), {"Url": req.config["url"]})

    @classmethod
    def to_cloudformation(cls, req: SynthRequest) -> dict[str, Any] | None:
        req.decl["ActionTypeId"] = {k.capitalize(): v for k, v in SMOKE_TYPE.items()}
        req.synth.warnings.append(f"action '{req.action.name}': register AcmeSmoke first")
        return req.finish({"Url": req.config["url"]})


class Bare(Smoke):
    """A third-party type that runs locally only: no AWS mapping."""

    to_codepipeline = None  # type: ignore[assignment]  # the method is absent on purpose
    to_cloudformation = None  # type: ignore[assignment]  # the method is absent on purpose


def _registry(cls: type[BaseAction]) -> ActionRegistry:
    registry = ActionRegistry()
    registry.register("acme.smoke", cls)
    return registry


def _pipeline(registry: ActionRegistry) -> Any:
    return load_pipeline("pipeline.yaml", registry.catalogue(), text=PIPELINE)


def test_a_third_party_type_exports_to_codepipeline_json() -> None:
    """The plugin's `to_codepipeline` writes its action; the common parts come from Conveyor."""
    registry = _registry(Smoke)
    doc, _ = export_pipeline(_pipeline(registry), registry=registry)
    smoke = doc["pipeline"]["stages"][1]["actions"][0]
    assert smoke == {
        "name": "Smoke",
        "actionTypeId": SMOKE_TYPE,
        "runOrder": 1,
        "configuration": {"Url": "https://example.com/health"},
        "inputArtifacts": [{"name": "src"}],
        "outputArtifacts": [],
    }


def test_a_third_party_type_synthesizes_into_cloudformation() -> None:
    """The plugin's `to_cloudformation` puts its action in the stack's pipeline."""
    registry = _registry(Smoke)
    synthesis = synthesize(_pipeline(registry), registry=registry)
    stages = synthesis.template["Resources"]["Pipeline"]["Properties"]["Stages"]
    assert stages[1]["Actions"] == [
        {
            "Name": "Smoke",
            "RunOrder": 1,
            "ActionTypeId": {
                "Category": "Test",
                "Owner": "Custom",
                "Provider": "AcmeSmoke",
                "Version": "1",
            },
            "Configuration": {"Url": "https://example.com/health"},
            "InputArtifacts": [{"Name": "src"}],
        }
    ]
    assert "action 'Smoke': register AcmeSmoke first" in synthesis.warnings


def test_a_type_without_export_names_itself_and_the_missing_method() -> None:
    """Export of a type with no `to_codepipeline` fails naming the type and what it lacks."""
    registry = _registry(Bare)
    with pytest.raises(ConfigError) as e:
        export_pipeline(_pipeline(registry), registry=registry)
    assert "action type 'acme.smoke' has no CodePipeline equivalent" in e.value.message
    assert "defines no `to_codepipeline` method" in e.value.message


def test_a_type_without_synthesis_names_itself_and_the_missing_method() -> None:
    """Synthesis of a type with no `to_cloudformation` fails naming the type and what it lacks."""
    registry = _registry(Bare)
    with pytest.raises(Unmappable) as e:
        synthesize(_pipeline(registry), registry=registry)
    assert "action type 'acme.smoke' has no AWS mapping" in e.value.message
    assert "defines no `to_cloudformation` method" in e.value.message
