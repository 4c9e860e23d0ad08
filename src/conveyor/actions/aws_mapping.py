"""How an action type maps to AWS: its CodePipeline action (export and import) and its
CloudFormation synthesis. The type owns this knowledge, so a new type needs no edit in
`conveyor.spec` or `conveyor.aws`.

A type provides it in one of two ways (the registry looks in this order):

- a class under the entry-point group `conveyor.aws_mappings`, named as the action type
  (the built-ins keep theirs in sibling modules, e.g. `conveyor.actions.build_aws`);
- the same class methods on the action plugin class itself (what a third-party type does).

The methods, each optional (a type without one fails export or synthesis with its name and
what it lacks):

- `to_codepipeline(req: ExportRequest) -> dict`: the CodePipeline action declaration
  (`aws codepipeline create-pipeline` JSON), usually `req.finish(type_id, configuration)`;
- `to_cloudformation(req: SynthRequest) -> dict | None`: the action in the stack's
  `AWS::CodePipeline::Pipeline` (usually `req.finish(configuration)` after adding resources
  through `req.synth`), None when the action has no place there (a finding was recorded, or
  it became a stage condition);
- `from_codepipeline(req: ImportRequest) -> dict`: this type's config from a CodePipeline
  action whose (category, owner, provider) is in `codepipeline_providers`;
- `type_id(original) -> dict`: the actionTypeId export writes (import keeps the original
  beside the pipeline when it differs); by default `exported_type`.

Optional hooks: `check_import(req, config)` (warnings once the action is read),
`codepipeline_action_keys` (keys of the CodePipeline action, beside its configuration, that
the type reads itself), `imported_type(type_id)` (the type name when one mapping answers for
a pattern such as `aws.*`), `synth_checks_refs = False` (its `#{ns.var}` are not passed to a
buildspec, so synthesis does not warn about them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from conveyor.model.pipeline import Action, Path, Pipeline, Stage

if TYPE_CHECKING:
    from conveyor.aws.synth import Synthesizer

ProviderKey = tuple[str, str, str]  # (category, owner, provider); "*" matches any
EXPORT_METHOD = "to_codepipeline"
SYNTH_METHOD = "to_cloudformation"
IMPORT_METHOD = "from_codepipeline"


def codebuild_type_id(category: str = "Build") -> dict[str, Any]:
    return {"category": category, "owner": "AWS", "provider": "CodeBuild", "version": "1"}


def template_type_id(type_id: Mapping[str, Any]) -> dict[str, Any]:
    """An actionTypeId as CloudFormation spells it (`Category`, `Owner`, ...)."""
    return {k[0].upper() + k[1:]: v for k, v in type_id.items()}


# --------------------------------------------------------------------------- export


@dataclass
class ExportRequest:
    """One action to write as CodePipeline JSON."""

    pipeline: Pipeline
    stage: Stage
    action: Action
    extra: dict[str, Any]  # CodePipeline keys kept from an import (settings.codepipeline)
    leftover: dict[str, Any]  # configuration keys kept from an import; a mapping may pop
    names: Mapping[str, str]  # CodeBuild project names by action
    warnings: list[str]
    # actions of this stage whose failure rolls the stage back (CodePipeline onFailure)
    stage_rollbacks: list[Action] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.action.config)

    @property
    def where(self) -> str:
        a = self.action
        return f"stage '{self.stage.name}', action '{a.name}' ({a.type})"

    def finish(
        self,
        type_id: dict[str, Any],
        configuration: dict[str, Any],
        *,
        commands: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The declaration: type, configuration, artifacts and what import kept."""
        from conveyor.spec.codepipeline import finish_export

        return finish_export(self, type_id, configuration, commands)


def codebuild_configuration(req: ExportRequest) -> dict[str, Any]:
    """The configuration of an action CodeBuild runs: its project's name."""
    a, cfg = req.action, req.config
    from conveyor.spec.codepipeline import project_name

    return {
        "ProjectName": str(
            cfg.get("codebuildProject")
            or req.names.get(a.name)
            or project_name(req.pipeline.name, a.name)
        )
    }


class CodePipelineExport(Protocol):
    @classmethod
    def to_codepipeline(cls, req: ExportRequest) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- import


class ImportProblems(Protocol):
    """Where an importer reports, each at a path of the imported document."""

    def err(self, path: tuple[str | int, ...], msg: str) -> None: ...

    def warn(self, path: tuple[str | int, ...], msg: str) -> None: ...

    def note(self, path: tuple[str | int, ...], msg: str) -> None: ...


@dataclass
class ImportRequest:
    """One CodePipeline action to read as this type."""

    name: str
    type_id: dict[str, Any]
    configuration: dict[str, Any]  # pop what the type uses: the rest is kept beside it
    raw: Mapping[str, Any]  # the whole action declaration
    inputs: list[str]
    path: tuple[str | int, ...]
    problems: ImportProblems


class CodePipelineImport(Protocol):
    codepipeline_providers: ClassVar[tuple[ProviderKey, ...]]

    @classmethod
    def from_codepipeline(cls, req: ImportRequest) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- synthesis


@dataclass
class SynthRequest:
    """One action to synthesize into the stack."""

    synth: Synthesizer
    stage: Stage
    action: Action
    inputs: list[str]  # a mapping may add the one CodeBuild needs
    approvals: list[str]  # approval actions (the stack then gets the approval topic)
    last_project: list[str]  # the latest CodeBuild project's logical id (approval evidence)
    rules: list[dict[str, Any]]  # the stage's onSuccess conditions (a monitor adds one)
    decl: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.action.config)

    @property
    def path(self) -> Path:
        return self.action.path

    def fail(self, path: Path, msg: str) -> None:
        self.synth.fail(path, msg)

    def finish(self, configuration: dict[str, Any]) -> dict[str, Any]:
        """The declaration: configuration (with what import kept), artifacts, namespace."""
        return self.synth.finish(self, configuration)


class CloudFormationSynthesis(Protocol):
    @classmethod
    def to_cloudformation(cls, req: SynthRequest) -> dict[str, Any] | None: ...


class AwsMapping:
    """Base of a type's AWS mapping: the defaults each method has."""

    codepipeline_providers: ClassVar[tuple[ProviderKey, ...]] = ()
    exported_type: ClassVar[Mapping[str, Any]] = codebuild_type_id()

    @classmethod
    def type_id(cls, original: Mapping[str, Any]) -> dict[str, Any]:
        """The actionTypeId export writes for this type."""
        return dict(cls.exported_type)
