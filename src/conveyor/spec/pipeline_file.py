"""The pipeline file (YAML): its schema (pydantic, at the boundary), loading with line-numbered
errors, conversion into the pure model, and writing back.

    name: seed
    executionMode: SUPERSEDED          # SUPERSEDED | QUEUED | PARALLEL
    variables: [{name: APP_VERSION, default: "1.0.0"}]
    environments:
      test: {registry: test, repository: webapp, driver: podman, port: 8081}
    triggers:
      - source: CodeCommitDMF
        branches: {includes: [main]}
    stages:
      - name: Source
        actions:
          - name: CodeCommitDMF
            type: source.git
            outputs: [app_src]
            namespace: SourceApp
            config: {repository: webapp, branch: main}
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conveyor.errors import Problem, ValidationFailed
from conveyor.model import pipeline as m
from conveyor.model.duration import parse_duration as parse_duration
from conveyor.model.validate import Catalogue, validate
from conveyor.spec.yamlfile import Lines, load, pydantic_problems

NAME = r"^[A-Za-z0-9.@\-_]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ActionFile(_Strict):
    name: str = Field(pattern=NAME, max_length=100)
    type: str
    runOrder: int = 1
    inputs: list[str] = []
    outputs: list[str] = []
    namespace: str | None = Field(default=None, pattern=NAME)
    timeout: int | str | None = Field(default=None, description="seconds, or 30s / 15m / 2h / 7d")
    environment: str | None = None
    region: str | None = None
    reuse: bool | None = Field(
        default=None,
        description="reuse an earlier attempt with the same inputs (default: on for a build "
        "that publishes an image, off otherwise)",
    )
    config: dict[str, Any] = {}

    @field_validator("timeout")
    @classmethod
    def _duration(cls, v: int | str | None) -> int | str | None:
        parse_duration(v)
        return v


class RetryConfigurationFile(_Strict):
    retryMode: Literal["FAILED_ACTIONS", "ALL_ACTIONS"] = "FAILED_ACTIONS"


class OnFailureFile(_Strict):
    result: Literal["FAIL", "RETRY", "ROLLBACK"] = "FAIL"
    retryConfiguration: RetryConfigurationFile | None = None


class StageFile(_Strict):
    name: str = Field(pattern=NAME, max_length=100)
    actions: list[ActionFile]
    onFailure: OnFailureFile | None = None


class GitFilterFile(_Strict):
    includes: list[str] = []
    excludes: list[str] = []


class TriggerFile(_Strict):
    source: str = Field(description="the name of a source action")
    branches: GitFilterFile | None = None
    tags: GitFilterFile | None = None
    filePaths: GitFilterFile | None = None


class VariableFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9@\-_]+$")
    default: str | None = Field(default=None, alias="defaultValue")
    description: str = ""
    allowedPattern: str | None = Field(
        default=None, description="a regular expression every value given at start must match"
    )


class EnvironmentFile(_Strict):
    registry: str = Field(
        default="", description="'test', 'prod' (local registries) or host:port / ECR URI"
    )
    repository: str = ""
    driver: Literal["podman", "kubernetes", "eks"] = "podman"
    port: int | None = Field(default=None, ge=1, le=65535)
    url: str | None = None
    namespace: str | None = None
    context: str | None = None
    cluster: str | None = None
    settings: dict[str, Any] = {}


class PipelineFile(_Strict):
    """A Conveyor pipeline file."""

    name: str = Field(pattern=NAME, max_length=100)
    executionMode: Literal["SUPERSEDED", "QUEUED", "PARALLEL"] = "SUPERSEDED"
    variables: list[VariableFile] = []
    environments: dict[str, EnvironmentFile] = {}
    triggers: list[TriggerFile] = []
    stages: list[StageFile]
    settings: dict[str, Any] = Field(
        default={}, description="engine settings, e.g. approval webhook"
    )


def schema() -> dict[str, Any]:
    s = PipelineFile.model_json_schema()
    s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    s["title"] = "Conveyor pipeline"
    return s


def to_model(f: PipelineFile) -> m.Pipeline:
    def gf(x: GitFilterFile | None) -> m.GitFilter:
        return m.GitFilter(tuple(x.includes), tuple(x.excludes)) if x else m.GitFilter()

    stages = []
    for si, s in enumerate(f.stages):
        actions = tuple(
            m.Action(
                name=a.name,
                type=a.type,
                run_order=a.runOrder,
                inputs=tuple(a.inputs),
                outputs=tuple(a.outputs),
                namespace=a.namespace,
                timeout_seconds=parse_duration(a.timeout),
                config=a.config,
                environment=a.environment,
                region=a.region,
                path=("stages", si, "actions", ai),
                reuse=a.reuse,
            )
            for ai, a in enumerate(s.actions)
        )
        on_failure = None
        if s.onFailure:
            on_failure = m.OnFailure(
                result=s.onFailure.result,
                retry_mode=(
                    s.onFailure.retryConfiguration.retryMode
                    if s.onFailure.retryConfiguration
                    else "FAILED_ACTIONS"
                ),
            )
        stages.append(m.Stage(s.name, actions, on_failure, path=("stages", si)))
    envs = {
        name: m.Environment(
            name=name,
            registry=e.registry,
            repository=e.repository,
            driver=e.driver,
            port=e.port,
            url=e.url,
            namespace=e.namespace,
            context=e.context,
            cluster=e.cluster,
            settings=e.settings,
            path=("environments", name),
        )
        for name, e in f.environments.items()
    }
    return m.Pipeline(
        name=f.name,
        stages=tuple(stages),
        execution_mode=m.ExecutionMode(f.executionMode),
        variables=tuple(
            m.Variable(
                v.name,
                v.default,
                v.description,
                path=("variables", i),
                allowed_pattern=v.allowedPattern,
            )
            for i, v in enumerate(f.variables)
        ),
        triggers=tuple(
            m.Trigger(t.source, gf(t.branches), gf(t.tags), gf(t.filePaths), path=("triggers", i))
            for i, t in enumerate(f.triggers)
        ),
        environments=envs,
        settings=f.settings,
    )


def from_model(p: m.Pipeline) -> dict[str, Any]:
    """The file form of a pipeline (what `init` and `import` write)."""

    def gf(x: m.GitFilter) -> dict[str, list[str]] | None:
        if not x.includes and not x.excludes:
            return None
        out: dict[str, list[str]] = {}
        if x.includes:
            out["includes"] = list(x.includes)
        if x.excludes:
            out["excludes"] = list(x.excludes)
        return out

    doc: dict[str, Any] = {"name": p.name, "executionMode": p.execution_mode.value}
    if p.variables:
        doc["variables"] = [
            {
                k: v
                for k, v in {
                    "name": x.name,
                    "defaultValue": x.default,
                    "description": x.description,
                    "allowedPattern": x.allowed_pattern,
                }.items()
                if v not in (None, "")
            }
            for x in p.variables
        ]
    if p.environments:
        doc["environments"] = {n: environment_definition(e) for n, e in p.environments.items()}
    if p.triggers:
        trig = []
        for t in p.triggers:
            d: dict[str, Any] = {"source": t.source_action}
            for key, val in (
                ("branches", gf(t.branches)),
                ("tags", gf(t.tags)),
                ("filePaths", gf(t.file_paths)),
            ):
                if val:
                    d[key] = val
            trig.append(d)
        doc["triggers"] = trig
    stages = []
    for s in p.stages:
        sd: dict[str, Any] = {"name": s.name, "actions": []}
        for a in s.actions:
            ad: dict[str, Any] = {"name": a.name, "type": a.type}
            if a.run_order != 1:
                ad["runOrder"] = a.run_order
            if a.environment:
                ad["environment"] = a.environment
            if a.region:
                ad["region"] = a.region
            if a.inputs:
                ad["inputs"] = list(a.inputs)
            if a.outputs:
                ad["outputs"] = list(a.outputs)
            if a.namespace:
                ad["namespace"] = a.namespace
            if a.timeout_seconds:
                ad["timeout"] = a.timeout_seconds
            if a.reuse is not None:
                ad["reuse"] = a.reuse
            if a.config:
                ad["config"] = _plain(a.config)
            sd["actions"].append(ad)
        if s.on_failure:
            sd["onFailure"] = {"result": s.on_failure.result}
            if s.on_failure.result == "RETRY":
                sd["onFailure"]["retryConfiguration"] = {"retryMode": s.on_failure.retry_mode}
        stages.append(sd)
    doc["stages"] = stages
    if p.settings:
        doc["settings"] = _plain(p.settings)
    return doc


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def parse(data: Any, lines: Lines) -> m.Pipeline:
    if not isinstance(data, dict):
        raise ValidationFailed(
            [
                Problem(
                    lines.file,
                    1,
                    "a pipeline file must be a mapping with 'name' and 'stages' at the top level",
                )
            ]
        )
    try:
        f = PipelineFile.model_validate(data)
    except ValidationError as e:
        raise ValidationFailed(pydantic_problems(e, lines, PipelineFile)) from None
    pipeline = to_model(f)
    refused = [
        lines.problem(
            (*a.path, "reuse"),
            f"action '{a.name}' of type {a.type} cannot be reused (it deploys, waits or reads "
            "the outside world): remove `reuse: true`; reuse is for build, shell and test.* "
            "actions",
        )
        for _, a in pipeline.all_actions()
        if a.reuse and not m.reusable_type(a.type)
    ]
    if refused:
        raise ValidationFailed(refused)
    return pipeline


def load_pipeline(
    path: str | Path, catalogue: Catalogue | None = None, *, text: str | None = None
) -> m.Pipeline:
    """Load and fully validate a pipeline file; raise ValidationFailed with every problem."""
    if text is None and Path(path).is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = Path(path).read_text(encoding="utf-8")
    hint = None
    if Path(path).suffix.lower() not in (".yaml", ".yml", ".json"):  # a program, by mistake?
        from conveyor.spec.codepipeline import source_code_hint

        hint = source_code_hint(path, text or "")
    if hint:
        raise ValidationFailed([Problem(str(path), None, hint)])
    data, lines = load(path, text=text)
    foreign = _foreign_format(data)
    if foreign:
        raise ValidationFailed([Problem(lines.file, 1, foreign)])
    pipeline = parse(data, lines)
    if catalogue is not None:
        findings = validate(pipeline, catalogue)
        if findings:
            raise ValidationFailed([lines.problem(f.path, f.message) for f in findings])
    return pipeline


def _foreign_format(data: Any) -> str | None:
    """A CodePipeline document given where a Conveyor pipeline file was expected."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("pipeline"), dict) and "name" not in data:
        return (
            "this is CodePipeline JSON (`aws codepipeline get-pipeline` output), not a Conveyor "
            "pipeline file: convert it with `conveyor import codepipeline FILE -o pipeline.yaml`"
        )
    if "Resources" in data or "AWSTemplateFormatVersion" in data:
        return (
            "this is a CloudFormation template, not a Conveyor pipeline file: if it holds an "
            "AWS::CodePipeline::Pipeline, convert it with "
            "`conveyor import codepipeline FILE -o pipeline.yaml`"
        )
    return None


def dump_yaml(doc: dict[str, Any]) -> str:
    import io

    from ruamel.yaml import YAML

    y = YAML()
    y.default_flow_style = False
    y.width = 100
    y.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def pipeline_warnings(path: str | Path, pipeline: m.Pipeline) -> list[Problem]:
    """What `validate` warns about without refusing the file, located (`file:line: warning`)."""
    from conveyor.model.validate import command_warnings
    from conveyor.spec.publish_contract import manifest_warnings

    _, lines = load(path)
    found = command_warnings(pipeline) + manifest_warnings(path, pipeline)
    return [lines.problem(f.path, f.message) for f in found]


def environment_definition(env: m.Environment) -> dict[str, Any]:
    """The environment as the pipeline file wrote it (recorded with each deployment).

    `conveyor rollback` deploys with the definition recorded at the deployment it rolls
    back to (its context, namespace, kubeconfig), not whichever pipeline ran last.
    """
    return {
        k: v
        for k, v in {
            "registry": env.registry,
            "repository": env.repository,
            "driver": env.driver,
            "port": env.port,
            "url": env.url,
            "namespace": env.namespace,
            "context": env.context,
            "cluster": env.cluster,
            "settings": dict(env.settings) or None,
        }.items()
        if v not in (None, "")
    }
