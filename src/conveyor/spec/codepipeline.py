"""CodePipeline JSON <-> the pipeline model: `conveyor import codepipeline` / `export codepipeline`.

Import reads `aws codepipeline get-pipeline` output (or a CloudFormation template holding an
`AWS::CodePipeline::Pipeline`) and maps it onto our action types:

    Source  CodeCommit               -> source.git {repository: RepositoryName, branch: BranchName}
    Source  CodeStarSourceConnection  -> source.git  {repository: https://github.com/FullRepositoryId.git}
    Source  GitHub (ThirdParty, v1)  -> source.git (OAuthToken dropped: a secret; v1 is deprecated)
    Source  S3                        -> source.s3   {bucket, key}
    Build/Test CodeBuild             -> build {codebuildProject: ProjectName, primarySource, env}
    Compute Commands                  -> shell       {commands}
    Approval Manual                   -> approval    {customData, externalEntityLink}
    anything else                    -> aws.<Provider> {actionTypeId, configuration}: kept, reported

What our action types have no key for (PollForSourceChanges, NotificationArn, ConnectionArn,
the role and artifact store, stage conditions...) is kept verbatim under the pipeline's
`settings.codepipeline`, so an import -> export round trip gives back the same JSON (less
`metadata`, which describes one deployed copy, not the pipeline).

Every problem is located (`file:line: what`); warnings are problems that do not stop the import.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from conveyor.actions.aws_mapping import (
    EXPORT_METHOD,
    IMPORT_METHOD,
    ExportRequest,
    ImportRequest,
    codebuild_type_id,
)
from conveyor.actions.registry import ActionRegistry
from conveyor.errors import ConfigError, Problem, ValidationFailed
from conveyor.model import pipeline as m
from conveyor.spec import limits
from conveyor.spec.yamlfile import Lines, _load_fast, _plain, read_text

NAME = re.compile(r"^[A-Za-z0-9.@\-_]+$")
GIT_HOSTS = {"github.com": "GitHub", "gitlab.com": "GitLab", "bitbucket.org": "Bitbucket"}
SETTINGS_KEY = "codepipeline"
ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
PLACEHOLDER_ROLE = "arn:aws:iam::111111111111:role/REPLACE-WITH-PIPELINE-ROLE"
PLACEHOLDER_BUCKET = "replace-with-artifact-bucket"
PLACEHOLDER_TOPIC = "arn:aws:sns:us-east-1:111111111111:REPLACE-WITH-APPROVAL-TOPIC"
PLACEHOLDER_CONNECTION = "arn:aws:codeconnections:us-east-1:111111111111:connection/REPLACE-ME"


@dataclass
class Imported:
    pipeline: m.Pipeline
    warnings: list[Problem] = field(default_factory=list)


# --------------------------------------------------------------------------- JSON with lines


def _index_json(text: str, lines: Lines) -> None:
    """Record the line of every object key and array item of a (valid) JSON text: JSON is
    YAML 1.2 in flow style, so ruamel reads it with the line of every node."""
    try:
        doc = _load_fast(text)  # libyaml when installed; None on any problem (a duplicate key)
        if doc is None:
            yaml = YAML(typ="rt")
            yaml.allow_duplicate_keys = True  # json.loads accepts them (keeps the last value)
            doc = yaml.load(text)
        _plain(doc, (), lines)
    except (YAMLError, RecursionError):  # valid JSON YAML refuses (a key over 1024 chars)
        lines.index.setdefault((), 1)


def load_json(text: str, label: str) -> tuple[Any, Lines]:
    """Parse JSON; a syntax error becomes `file:line: invalid JSON, column C: what`."""
    limits.check_json(text, label)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValidationFailed(
            [Problem(label, e.lineno, f"invalid JSON, column {e.colno}: {e.msg}")]
        ) from None
    except (ValueError, RecursionError) as e:
        raise limits.parse_failure(label, e) from None
    lines = Lines(label)
    _index_json(text, lines)
    return data, lines


# --------------------------------------------------------------------------- import


class _Importer:
    def __init__(self, lines: Lines, registry: ActionRegistry | None = None) -> None:
        self.lines = lines
        self.registry = registry or ActionRegistry()
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.extra_actions: dict[str, dict[str, Any]] = {}
        self.extra_stages: dict[str, dict[str, Any]] = {}

    def err(self, path: tuple[str | int, ...], msg: str) -> None:
        self.errors.append(self.lines.problem(path, msg))

    def warn(self, path: tuple[str | int, ...], msg: str) -> None:
        self.warnings.append(self.lines.problem(path, f"warning: {msg}"))

    def note(self, path: tuple[str | int, ...], msg: str) -> None:
        self.warnings.append(self.lines.problem(path, msg))

    def run(self, doc: Mapping[str, Any], root: tuple[str | int, ...]) -> m.Pipeline:
        p = doc
        name = p.get("name")
        if not isinstance(name, str) or not name:
            self.err((*root, "name"), "the pipeline has no 'name'")
            name = "imported"
        elif not NAME.match(name) or len(name) > 100:
            self.err(
                (*root, "name"), f"pipeline name '{name}' must be 1-100 characters of A-Za-z0-9.@-_"
            )
        settings: dict[str, Any] = {}
        for key in (
            "roleArn",
            "artifactStore",
            "artifactStores",
            "version",
            "disableInboundStageTransitions",
        ):
            if key in p:
                settings[key] = p[key]
        settings["pipelineType"] = self.pipeline_type(p, root)
        role = p.get("roleArn")
        if isinstance(role, str):
            self.check_role(role, (*root, "roleArn"), "the pipeline's roleArn")
        mode = p.get("executionMode", "SUPERSEDED")
        if mode not in m.ExecutionMode.__members__:
            self.err(
                (*root, "executionMode"),
                f"executionMode '{mode}' is not one of SUPERSEDED, QUEUED, PARALLEL",
            )
            mode = "SUPERSEDED"
        variables = []
        for i, v in enumerate(p.get("variables") or []):
            if not isinstance(v, Mapping) or not isinstance(v.get("name"), str):
                self.err((*root, "variables", i), "a variable needs a 'name'")
                continue
            variables.append(m.Variable(v["name"], v.get("defaultValue"), v.get("description", "")))
        stages_raw = p.get("stages")
        stages: list[m.Stage] = []
        if not isinstance(stages_raw, list) or not stages_raw:
            self.err((*root, "stages"), "the pipeline needs a non-empty 'stages' list")
        else:
            for si, s in enumerate(stages_raw):
                st = self.stage(s, (*root, "stages", si))
                if st:
                    stages.append(st)
        triggers = self.triggers(p.get("triggers") or [], (*root, "triggers"))
        if self.extra_actions:
            settings["actions"] = self.extra_actions
        if self.extra_stages:
            settings["stages"] = self.extra_stages
        return m.Pipeline(
            name=name,
            stages=tuple(stages),
            execution_mode=m.ExecutionMode(mode),
            variables=tuple(variables),
            triggers=tuple(triggers),
            settings={SETTINGS_KEY: settings} if settings else {},
        )

    def pipeline_type(self, p: Mapping[str, Any], root: tuple[str | int, ...]) -> str:
        """V1 or V2, as given; no pipelineType means V1 (CodePipeline's default) unless the
        pipeline uses what only V2 has."""
        given = p.get("pipelineType")
        if given in ("V1", "V2"):
            return str(given)
        if given is not None:
            self.err((*root, "pipelineType"), f"pipelineType {given!r} is not V1 or V2")
            return "V2"
        v2_only = [k for k in ("variables", "triggers") if p.get(k)]
        if p.get("executionMode", "SUPERSEDED") != "SUPERSEDED":
            v2_only.append(f"executionMode {p['executionMode']}")
        if v2_only:
            self.warn(
                root,
                "no pipelineType (which means V1), but "
                + ", ".join(v2_only)
                + " need(s) V2: imported as V2",
            )
            return "V2"
        return "V1"

    def check_role(self, role: str, path: tuple[str | int, ...], what: str) -> None:
        """Warn about a role ARN AWS would refuse (placeholders and `${...}` are left alone)."""
        if "${" in role or "#{" in role or ROLE_ARN.match(role):
            return
        self.warn(
            path,
            f"{what} {role!r} is not a valid IAM role ARN "
            "(arn:aws:iam::ACCOUNT-ID:role/NAME, a 12-digit account id): AWS will refuse it",
        )

    def stage(self, s: Any, path: tuple[str | int, ...]) -> m.Stage | None:
        if not isinstance(s, Mapping):
            self.err(path, "a stage must be an object with 'name' and 'actions'")
            return None
        name = s.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            self.err(
                (*path, "name"), f"stage name {name!r} must be 1-100 characters of A-Za-z0-9.@-_"
            )
            return None
        actions_raw = s.get("actions")
        if not isinstance(actions_raw, list) or not actions_raw:
            self.err((*path, "actions"), f"stage '{name}' needs a non-empty 'actions' list")
            return None
        actions = [
            a
            for ai, raw in enumerate(actions_raw)
            if (a := self.action(name, raw, (*path, "actions", ai))) is not None
        ]
        extra: dict[str, Any] = {}
        on_failure = None
        of = s.get("onFailure")
        if isinstance(of, Mapping):
            result = of.get("result", "FAIL")
            if result not in ("FAIL", "RETRY", "ROLLBACK"):
                self.err(
                    (*path, "onFailure", "result"),
                    f"onFailure result '{result}' is not FAIL, RETRY or ROLLBACK",
                )
                result = "FAIL"
            mode = (of.get("retryConfiguration") or {}).get("retryMode", "FAILED_ACTIONS")
            on_failure = m.OnFailure(result=result, retry_mode=mode)
            if of.get("conditions"):
                extra["onFailureConditions"] = of["conditions"]
        for key in ("onSuccess", "beforeEntry", "blockers"):
            if s.get(key):
                extra[key] = s[key]
                self.warn(
                    (*path, key),
                    f"stage '{name}': {key} is kept for export only; "
                    "the local engine does not evaluate CodePipeline stage conditions",
                )
        if extra:
            self.extra_stages[name] = extra
        return m.Stage(name, tuple(actions), on_failure)

    def action(self, stage: str, a: Any, path: tuple[str | int, ...]) -> m.Action | None:
        if not isinstance(a, Mapping):
            self.err(path, "an action must be an object")
            return None
        name = a.get("name")
        if not isinstance(name, str) or not NAME.match(name) or len(name) > 100:
            self.err(
                (*path, "name"), f"action name {name!r} must be 1-100 characters of A-Za-z0-9.@-_"
            )
            return None
        tid = a.get("actionTypeId")
        if not isinstance(tid, Mapping) or not all(
            isinstance(tid.get(k), str) for k in ("category", "provider")
        ):
            self.err(
                (*path, "actionTypeId"),
                f"action '{name}': actionTypeId needs 'category', 'owner', "
                "'provider' and 'version'",
            )
            return None
        run_order = a.get("runOrder", 1)
        if isinstance(run_order, str) and run_order.isdigit():
            run_order = int(run_order)
        if not isinstance(run_order, int) or isinstance(run_order, bool):
            self.err(
                (*path, "runOrder"),
                f"action '{name}': runOrder must be an integer, got {run_order!r}",
            )
            run_order = 1
        inputs = self.artifacts(a.get("inputArtifacts"), (*path, "inputArtifacts"), name)
        outputs = self.artifacts(a.get("outputArtifacts"), (*path, "outputArtifacts"), name)
        cfg_raw = a.get("configuration") or {}
        if not isinstance(cfg_raw, Mapping):
            self.err((*path, "configuration"), f"action '{name}': configuration must be an object")
            cfg_raw = {}
        ns = a.get("namespace")
        timeout = a.get("timeoutInMinutes")
        tid = dict(tid)
        type_, config, leftover = self.map_type(name, tid, dict(cfg_raw), path, a, inputs)
        mapping = self.registry.mapping(type_, IMPORT_METHOD) if type_ else None
        if isinstance(a.get("roleArn"), str):
            self.check_role(a["roleArn"], (*path, "roleArn"), f"action '{name}': roleArn")
        check = getattr(mapping, "check_import", None)
        if check is not None:
            check(ImportRequest(name, tid, {}, a, inputs, path, self), config)
        extra: dict[str, Any] = {}
        if leftover:
            extra["configuration"] = leftover
        own: frozenset[str] = getattr(mapping, "codepipeline_action_keys", frozenset())
        for key in ("roleArn", "commands", "outputVariables", "environmentVariables"):
            if key in a and key not in own:
                extra[key] = a[key]
        if mapping is not None and dict(tid) != _type_id_for(mapping, tid):
            extra["actionTypeId"] = dict(tid)
        if extra:
            self.extra_actions[f"{stage}/{name}"] = extra
        return m.Action(
            name=name,
            type=type_,
            run_order=run_order,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            namespace=ns if isinstance(ns, str) else None,
            timeout_seconds=int(timeout) * 60 if isinstance(timeout, int) else None,
            config=config,
            region=a.get("region") if isinstance(a.get("region"), str) else None,
        )

    def artifacts(self, raw: Any, path: tuple[str | int, ...], action: str) -> list[str]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.err(path, f"action '{action}': expected a list of {{\"name\": ...}} objects")
            return []
        out = []
        for i, x in enumerate(raw):
            if isinstance(x, Mapping) and isinstance(x.get("name"), str):
                out.append(x["name"])
            else:
                self.err(
                    (*path, i),
                    f"action '{action}': an artifact must be {{\"name\": ...}}, got {x!r}",
                )
        return out

    def map_type(
        self,
        name: str,
        tid: dict[str, Any],
        cfg: dict[str, Any],
        path: tuple[str | int, ...],
        raw: Mapping[str, Any],
        inputs: list[str],
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(our type, our config, CodePipeline configuration keys we have no place for), read
        by the type whose `codepipeline_providers` names this provider."""
        provider, category, owner = tid["provider"], tid["category"], tid.get("owner", "AWS")
        if provider == "AWS CodeBuild":
            self.warn(
                (*path, "actionTypeId", "provider"),
                f"action '{name}': provider 'AWS CodeBuild' is not "
                "a CodePipeline provider id; did you mean 'CodeBuild'? (imported as CodeBuild)",
            )
            provider = tid["provider"] = "CodeBuild"
        found = self.registry.importer(category, owner, provider)
        if found is None:  # no type imports it and no pass-through is installed
            self.err((*path, "actionTypeId"), f"action '{name}': no action type imports {provider}")
            return "", {}, cfg
        type_, mapping = found
        req = ImportRequest(name, tid, cfg, raw, inputs, path, self)
        config: dict[str, Any] = mapping.from_codepipeline(req)
        return type_, config, cfg

    def triggers(self, raw: Any, path: tuple[str | int, ...]) -> list[m.Trigger]:
        out: list[m.Trigger] = []
        if not isinstance(raw, list):
            self.err(path, "triggers must be a list")
            return out
        for i, t in enumerate(raw):
            git = (t or {}).get("gitConfiguration") or {}
            source = git.get("sourceActionName")
            if not isinstance(source, str):
                self.err((*path, i), "a trigger needs gitConfiguration.sourceActionName")
                continue
            if git.get("pullRequest"):
                self.warn(
                    (*path, i, "gitConfiguration", "pullRequest"),
                    "pull-request triggers are not modelled; dropped (push triggers are kept)",
                )
            for push in git.get("push") or [{}]:
                out.append(
                    m.Trigger(
                        source,
                        _gf(push.get("branches")),
                        _gf(push.get("tags")),
                        _gf(push.get("filePaths")),
                    )
                )
        return out


def _gf(raw: Any) -> m.GitFilter:
    if not isinstance(raw, Mapping):
        return m.GitFilter()
    return m.GitFilter(tuple(raw.get("includes") or ()), tuple(raw.get("excludes") or ()))


def _type_id_for(mapping: Any, original: Mapping[str, Any]) -> dict[str, Any]:
    """The actionTypeId export writes for a type (CodeBuild's unless the type says)."""
    type_id = getattr(mapping, "type_id", None)
    return dict(type_id(original)) if type_id is not None else codebuild_type_id()


def import_document(data: Any, lines: Lines) -> Imported:
    """Import a parsed get-pipeline document (or CloudFormation template)."""
    if isinstance(data, Mapping) and "Resources" in data:
        return _import_cfn(data, lines)
    if not isinstance(data, Mapping) or not isinstance(data.get("pipeline"), Mapping):
        keys = (
            ", ".join(sorted(map(str, data))) if isinstance(data, Mapping) else type(data).__name__
        )
        raise ValidationFailed(
            [
                Problem(
                    lines.file,
                    1,
                    "not an `aws codepipeline get-pipeline` document: expected "
                    f'a top-level "pipeline" object (found: {keys or "nothing"})',
                )
            ]
        )
    imp = _Importer(lines)
    pipeline = imp.run(data["pipeline"], ("pipeline",))
    if "metadata" in data:
        imp.warnings.append(
            lines.problem(
                ("metadata",),
                "note: 'metadata' (pipelineArn, created, updated) "
                "describes a deployed copy; stripped",
            )
        )
    if "tags" in data:
        settings = dict(pipeline.settings.get(SETTINGS_KEY, {}))
        settings["tags"] = data["tags"]
        pipeline = _with_settings(pipeline, settings)
    if imp.errors:
        raise ValidationFailed(imp.errors)
    return Imported(pipeline, imp.warnings)


def _with_settings(p: m.Pipeline, cp: Mapping[str, Any]) -> m.Pipeline:
    from dataclasses import replace

    settings = dict(p.settings)
    settings[SETTINGS_KEY] = dict(cp)
    return replace(p, settings=settings)


CODE_SUFFIXES = {
    ".ts": "TypeScript",
    ".js": "JavaScript",
    ".py": "Python",
    ".java": "Java",
    ".cs": "C#",
    ".go": "Go",
}


def source_code_hint(path: str | Path, text: str) -> str | None:
    """What to do with a program given where a pipeline file was expected (CDK code above all)."""
    lang = CODE_SUFFIXES.get(Path(path).suffix.lower())
    if lang is None:
        return None
    if re.search(r"aws[-_]cdk|awscdk|Amazon\.CDK|from ['\"]constructs['\"]", text):
        return (
            f"this is CDK code ({lang}), not a pipeline file: run `cdk synth` and import the "
            "template: `conveyor import codepipeline cdk.out/STACK.template.json`"
        )
    return f"this is {lang} source code, not a pipeline file (YAML or JSON)"


def load_codepipeline(path: str | Path, *, text: str | None = None) -> Imported:
    """Import a get-pipeline JSON file, or a CloudFormation template (YAML or JSON)."""
    label = str(path)
    if text is None:
        text = read_text(path, label, "a JSON or YAML file")
    hint = source_code_hint(path, text)
    if hint:
        raise ValidationFailed([Problem(label, None, hint)])
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        data, lines = load_json(text, label)
    else:
        data, lines = _load_cfn_yaml(text, label)
    try:
        return import_document(data, lines)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
        # a shape the importer does not expect: one line, not a traceback
        raise ValidationFailed(
            [
                Problem(
                    label,
                    None,
                    f"not a pipeline Conveyor can import ({type(e).__name__}: {e}); "
                    "check it against `aws codepipeline get-pipeline` output",
                )
            ]
        ) from None


# ------------------------------------------------------------------- CloudFormation templates

_INTRINSIC = {"Ref", "Condition"} | {
    f"Fn::{x}"
    for x in (
        "Sub",
        "GetAtt",
        "Join",
        "ImportValue",
        "Select",
        "Split",
        "If",
        "FindInMap",
        "Base64",
        "GetAZs",
        "Cidr",
        "Equals",
        "Not",
        "And",
        "Or",
        "ToJsonString",
        "Length",
    )
}


def _load_cfn_yaml(text: str, label: str) -> tuple[Any, Lines]:
    """YAML with CloudFormation's short tags (!Ref, !Sub...) turned into their long form."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    limits.check_yaml(text, label)
    yaml = YAML(typ="rt")
    try:
        doc = yaml.load(text)
    except DuplicateKeyError as e:
        first = e.context_mark.line + 1 if e.context_mark else None
        key = re.search(r'duplicate key "([^"]+)"', str(e.problem))
        raise ValidationFailed(
            [
                Problem(
                    label,
                    e.problem_mark.line + 1 if e.problem_mark else None,
                    f"duplicate key '{key.group(1) if key else '?'}' in the mapping that "
                    f"starts at line {first} (YAML keys must be unique; cfn-lint reports it as "
                    "E0000: "
                    "remove one of them)",
                )
            ]
        ) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ValidationFailed(
            [
                Problem(
                    label,
                    mark.line + 1 if mark else None,
                    f"invalid YAML: {(e.problem or e.context or '').strip()}",
                )
            ]
        ) from None
    except (YAMLError, ValueError, RecursionError) as e:
        raise limits.parse_failure(label, e) from None
    lines = Lines(label)

    def tag_of(node: Any) -> str | None:
        t = getattr(node, "tag", None)
        value = getattr(t, "value", t) if t is not None else None
        return value if isinstance(value, str) and value.startswith("!") else None

    def conv(node: Any, path: tuple[str | int, ...]) -> Any:
        tag = tag_of(node)
        if isinstance(node, CommentedMap):
            lines.index.setdefault(path, node.lc.line + 1)
            out: dict[str, Any] = {}
            for k in node:
                with contextlib.suppress(KeyError, TypeError):
                    lines.index[(*path, str(k))] = node.lc.key(k)[0] + 1
                out[str(k)] = conv(node[k], (*path, str(k)))
            value: Any = out
        elif isinstance(node, CommentedSeq):
            lines.index.setdefault(path, node.lc.line + 1)
            value = [conv(v, (*path, i)) for i, v in enumerate(node)]
        elif isinstance(node, TaggedScalar):
            value = node.value
        else:
            value = node if not isinstance(node, str) else str(node)
        if tag:
            fn = tag[1:]
            key = "Ref" if fn == "Ref" else ("Condition" if fn == "Condition" else f"Fn::{fn}")
            if key == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
            return {key: value}
        return value

    return conv(doc, ()), lines


def _short_intrinsic(fn: str, arg: Any) -> str:
    """An intrinsic as it is written in YAML: `!Ref Bucket`, `!GetAtt Role.Arn`, `!Sub '...'`."""
    name = fn.removeprefix("Fn::")
    if name in ("Ref", "Condition") and isinstance(arg, str):
        return f"!{name} {arg}"
    if name == "GetAtt" and isinstance(arg, list):
        return "!GetAtt " + ".".join(map(str, arg))
    if name == "Sub" and isinstance(arg, str):
        return f"!Sub {json.dumps(arg)}"
    return f"!{name} {json.dumps(arg, default=str)}"


class _CfnRenderer:
    """Intrinsic functions -> text: parameters become `#{variables.P}`, resources their name."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.params = template.get("Parameters") or {}
        self.resources = template.get("Resources") or {}
        self.used_params: set[str] = set()
        self.unresolved: set[str] = set()

    def ref(self, name: str) -> str:
        if name in self.params:
            if (self.params[name] or {}).get("NoEcho") in (True, "true", "True"):
                self.unresolved.add(f"a NoEcho parameter ({name})")
                return f"${{{name}}}"
            self.used_params.add(name)
            return f"#{{variables.{name}}}"
        if name in self.resources:
            res_name = ((self.resources[name] or {}).get("Properties") or {}).get("Name")
            return res_name if isinstance(res_name, str) else name
        return f"${{{name}}}"

    def render(self, v: Any) -> Any:
        if isinstance(v, Mapping) and len(v) == 1:
            ((k, arg),) = v.items()
            if k == "Ref" and isinstance(arg, str):
                return self.ref(arg)
            if k == "Fn::Sub":
                tmpl, mapping = (
                    (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
                )

                def sub(mt: re.Match[str]) -> str:
                    inner = mt.group(1)
                    if inner in mapping:
                        r = self.render(mapping[inner])
                        return r if isinstance(r, str) else mt.group(0)
                    if "." in inner or inner.startswith("AWS::"):
                        return mt.group(0)
                    return self.ref(inner)

                return re.sub(r"\$\{([^}!]+)\}", sub, str(tmpl))
            if k == "Fn::GetAtt":
                return "${" + ".".join(map(str, arg)) + "}"
            if (
                k == "Fn::Join"
                and isinstance(arg, list)
                and len(arg) == 2
                and isinstance(arg[1], list)
            ):
                parts = [self.render(x) for x in arg[1]]
                if all(isinstance(x, str) for x in parts):
                    return str(arg[0]).join(parts)
            if k in _INTRINSIC:
                self.unresolved.add(k)
                return "${" + k + ": " + json.dumps(arg, sort_keys=True, default=str) + "}"
        if isinstance(v, Mapping):
            return {str(k): self.render(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.render(x) for x in v]
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        return v


_STRUCTURAL = {
    "Name",
    "Stages",
    "Actions",
    "ActionTypeId",
    "Category",
    "Owner",
    "Provider",
    "Version",
    "InputArtifacts",
    "OutputArtifacts",
    "RunOrder",
    "Namespace",
    "Region",
    "RoleArn",
    "Configuration",
    "ArtifactStore",
    "ArtifactStores",
    "Location",
    "Type",
    "EncryptionKey",
    "Id",
    "PipelineType",
    "ExecutionMode",
    "Variables",
    "DefaultValue",
    "Description",
    "Triggers",
    "ProviderType",
    "GitConfiguration",
    "SourceActionName",
    "Push",
    "PullRequest",
    "Branches",
    "Tags",
    "FilePaths",
    "Includes",
    "Excludes",
    "Events",
    "OnFailure",
    "OnSuccess",
    "BeforeEntry",
    "Result",
    "RetryConfiguration",
    "RetryMode",
    "Conditions",
    "Rules",
    "RuleTypeId",
    "TimeoutInMinutes",
    "Commands",
    "OutputVariables",
    "EnvironmentVariables",
    "Value",
    "Key",
    "Blockers",
}


Intrinsic = tuple[tuple[str | int, ...], tuple[str | int, ...], str, Any]


def _import_cfn(template: Mapping[str, Any], lines: Lines) -> Imported:
    logical = _pipeline_resource(template, lines)
    rnd = _CfnRenderer(template)
    src_root: tuple[str | int, ...] = ("Resources", logical, "Properties")
    body, converted_lines, intrinsics = _cfn_body(template, logical, lines, rnd)
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        converted_lines.index.setdefault(("pipeline", "name"), lines.line((*src_root,)) or 1)
        body["name"] = logical
    imp = _Importer(converted_lines)
    pipeline = imp.run(body, ("pipeline",))
    warnings = _cfn_warnings(lines, logical, name != body["name"], rnd, intrinsics)
    warnings.extend(imp.warnings)
    if imp.errors:
        raise ValidationFailed(imp.errors)
    if intrinsics:
        cp = dict(pipeline.settings.get(SETTINGS_KEY, {}))
        cp["intrinsics"] = [
            {"path": list(dst[1:]), "intrinsic": short} for _, dst, short, _ in intrinsics
        ]
        pipeline = _with_settings(pipeline, cp)
    params = template.get("Parameters") or {}
    from dataclasses import replace

    extra_vars = tuple(
        m.Variable(
            n,
            str(params[n].get("Default")) if params[n].get("Default") is not None else None,
            str(params[n].get("Description", "")),
        )
        for n in sorted(rnd.used_params)
        if n not in {v.name for v in pipeline.variables}
    )
    return Imported(replace(pipeline, variables=pipeline.variables + extra_vars), warnings)


def _pipeline_resource(template: Mapping[str, Any], lines: Lines) -> str:
    """The logical id of the template's one AWS::CodePipeline::Pipeline."""
    resources = template.get("Resources") or {}
    found = [
        k
        for k, r in resources.items()
        if isinstance(r, Mapping) and r.get("Type") == "AWS::CodePipeline::Pipeline"
    ]
    if not found:
        types = sorted({str(r.get("Type")) for r in resources.values() if isinstance(r, Mapping)})
        raise ValidationFailed(
            [
                lines.problem(
                    ("Resources",),
                    "this is a CloudFormation template with no "
                    "AWS::CodePipeline::Pipeline resource (types: "
                    + ", ".join(types)
                    + "); export the pipeline with `aws codepipeline get-pipeline "
                    "--name NAME > pipeline.json` and import that",
                )
            ]
        )
    if len(found) > 1:
        raise ValidationFailed(
            [
                lines.problem(
                    ("Resources", found[1]),
                    "this CloudFormation template defines "
                    f"{len(found)} pipelines ({', '.join(found)}); import one at a time "
                    "from `aws codepipeline get-pipeline` output",
                )
            ]
        )
    return str(found[0])


def _cfn_body(
    template: Mapping[str, Any], logical: str, lines: Lines, rnd: _CfnRenderer
) -> tuple[dict[str, Any], Lines, list[Intrinsic]]:
    """The pipeline resource's properties as `get-pipeline` JSON (camelCase), the lines of
    each converted path, and the intrinsics met on the way."""
    resources = template.get("Resources") or {}
    props = resources[logical].get("Properties") or {}
    converted_lines = Lines(lines.file)
    src_root: tuple[str | int, ...] = ("Resources", logical, "Properties")

    def camel(
        v: Any, src: tuple[str | int, ...], dst: tuple[str | int, ...], in_config: bool
    ) -> Any:
        ln = lines.line(src)
        if ln:
            converted_lines.index[dst] = ln
        if isinstance(v, Mapping) and not (len(v) == 1 and next(iter(v)) in _INTRINSIC):
            out: dict[str, Any] = {}
            for k, x in v.items():
                key = k if in_config or k not in _STRUCTURAL else k[0].lower() + k[1:]
                out[key] = camel(x, (*src, k), (*dst, key), in_config or k == "Configuration")
            return out
        if isinstance(v, list):
            return [camel(x, (*src, i), (*dst, i), in_config) for i, x in enumerate(v)]
        rendered = rnd.render(v)
        if isinstance(v, Mapping) and v:
            ((fn, arg),) = v.items()
            # a parameter inside an action's configuration is a pipeline variable: faithful
            faithful = fn == "Ref" and in_config and "#{variables." in str(rendered)
            if not faithful:
                intrinsics.append((src, dst, _short_intrinsic(fn, arg), rendered))
        return rendered

    intrinsics: list[tuple[tuple[str | int, ...], tuple[str | int, ...], str, Any]] = []
    body = camel(props, src_root, ("pipeline",), False)
    for stage in body.get("stages") or []:
        for a in stage.get("actions") or []:
            if isinstance(a.get("runOrder"), str) and a["runOrder"].isdigit():
                a["runOrder"] = int(a["runOrder"])
            tid = a.get("actionTypeId")
            if isinstance(tid, dict) and "version" in tid:
                tid["version"] = str(tid["version"])
    return body, converted_lines, intrinsics


def _cfn_warnings(
    lines: Lines, logical: str, renamed: bool, rnd: _CfnRenderer, intrinsics: list[Intrinsic]
) -> list[Problem]:
    """What an import of a template says: the resource read, a computed name, unresolved values
    and each intrinsic."""
    src_root: tuple[str | int, ...] = ("Resources", logical, "Properties")
    warnings = [
        Problem(
            lines.file,
            lines.line(("Resources", logical)),
            f"note: imported the AWS::CodePipeline::Pipeline resource '{logical}' of a "
            "CloudFormation "
            "template; its other resources (projects, roles, buckets) are not imported",
        )
    ]
    if renamed:
        warnings.append(
            Problem(
                lines.file,
                lines.line((*src_root, "Name")),
                f"warning: the pipeline's Name is computed by CloudFormation; named '{logical}' "
                "(its logical id) instead",
            )
        )
    if rnd.unresolved:
        warnings.append(
            Problem(
                lines.file,
                lines.line(src_root),
                "warning: values built with "
                + ", ".join(sorted(rnd.unresolved))
                + " cannot be resolved outside "
                "CloudFormation; kept as ${...} text: edit them before running locally",
            )
        )
    for src, dst, short, rendered in intrinsics:
        warnings.append(
            Problem(
                lines.file,
                lines.line(src),
                f"warning: {_dotted(list(dst[1:]))}: `{short}` is a CloudFormation intrinsic; "
                f"imported as {rendered!r}, which AWS would not resolve: kept in "
                "settings.codepipeline.intrinsics and reported again by export",
            )
        )
    return warnings


# --------------------------------------------------------------------------- export


def _git_url(repo: str) -> tuple[str, str] | None:
    """(host, owner/name) of a GitHub/GitLab/Bitbucket URL, else None."""
    mt = re.match(r"^(?:https?://|ssh://git@|git@)([^/:]+)[/:](.+?)(?:\.git)?/?$", repo)
    if not mt or mt.group(1).lower() not in GIT_HOSTS:
        return None
    return mt.group(1).lower(), mt.group(2)


def is_codecommit_name(repo: str) -> bool:
    """A bare repository name (the seed's CodeCommit repositories): no scheme, no slash."""
    return bool(re.fullmatch(r"[\w.-]+", repo)) and not repo.startswith(".")


def export_pipeline(
    p: m.Pipeline,
    *,
    role_arn: str | None = None,
    artifact_bucket: str | None = None,
    project_names: Mapping[str, str] | None = None,
    registry: ActionRegistry | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The pipeline as `{"pipeline": ...}` for `aws codepipeline create-pipeline --cli-input-json`.

    Returns the document and warnings (placeholders written, things that cannot be expressed).
    Raises ConfigError listing every action that has no CodePipeline form.
    """
    cp: Mapping[str, Any] = p.settings.get(SETTINGS_KEY) or {}
    warnings: list[str] = []
    problems: list[str] = []
    names = dict(project_names or {})
    doc: dict[str, Any] = {"name": p.name}
    doc["roleArn"] = role_arn or cp.get("roleArn") or PLACEHOLDER_ROLE
    if doc["roleArn"] == PLACEHOLDER_ROLE:
        warnings.append(f"roleArn is a placeholder ({PLACEHOLDER_ROLE}): pass --role-arn")
    _export_artifact_store(doc, cp, artifact_bucket, warnings)
    stages = [
        _export_stage(p, s, cp, names, warnings, problems, registry or ActionRegistry())
        for s in p.stages
    ]
    if problems:
        raise ConfigError("cannot export to CodePipeline:\n  " + "\n  ".join(problems))
    doc["stages"] = stages
    for key in ("version", "disableInboundStageTransitions"):
        if key in cp:
            doc[key] = cp[key]
    # an imported V1 pipeline stays V1 (no executionMode: V1 runs SUPERSEDED only)
    doc["pipelineType"] = str(cp.get("pipelineType") or "V2")
    if doc["pipelineType"] == "V1":
        v2_only = [k for k, used in (("variables", p.variables), ("triggers", p.triggers)) if used]
        if p.execution_mode != m.ExecutionMode.SUPERSEDED:
            v2_only.append(f"executionMode {p.execution_mode.value}")
        if v2_only:
            warnings.append(
                f"pipelineType V1 (as imported), but {', '.join(v2_only)} need(s) V2: set "
                "settings.codepipeline.pipelineType to V2"
            )
    else:
        doc["executionMode"] = p.execution_mode.value
    if p.variables:
        doc["variables"] = declared_variables(p)
    triggers = _export_triggers(p, warnings)
    if triggers:
        doc["triggers"] = triggers
    out: dict[str, Any] = {"pipeline": doc}
    if "tags" in cp:
        out["tags"] = cp["tags"]
    for entry in cp.get("intrinsics") or []:
        where = _dotted(entry.get("path") or [])
        value = _at(doc, entry.get("path") or [])
        written = "not written" if value is None else f"written as {value!r}"
        warnings.append(
            f"{where}: was `{entry.get('intrinsic')}` in the CloudFormation template; {written}: "
            "replace it with the real value (or deploy the template itself)"
        )
    return out, warnings


def _dotted(path: list[Any]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def _at(doc: Any, path: list[Any]) -> Any:
    for k in path:
        try:
            doc = doc[k]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _image_owner(p: m.Pipeline, image: Any) -> m.Action | None:
    """The action whose `#{NS.ImageURI}` an image reference reads (through promotions)."""
    mt = re.search(r"#\{([A-Za-z0-9_@\-]+)\.", image) if isinstance(image, str) else None
    if not mt:
        return None
    owner = next((x for _, x in p.all_actions() if x.namespace == mt.group(1)), None)
    if owner is not None and owner.type == "image.promote":
        return _image_owner(p, owner.config.get("image"))
    return owner


def _earlier(p: m.Pipeline, s: m.Stage, a: m.Action) -> list[m.Action]:
    """The actions that run before `a` (earlier stages, lower runOrder in its stage)."""
    out: list[m.Action] = []
    for st in p.stages:
        for x in st.actions:
            if st is s and (x is a or x.run_order >= a.run_order):
                continue
            out.append(x)
        if st is s:
            break
    return out


def _codebuild_input(p: m.Pipeline, s: m.Stage, a: m.Action) -> list[str]:
    owner = _image_owner(p, a.config.get("image"))
    if owner is not None and owner.outputs:
        return [owner.outputs[0]]
    outputs = [x.outputs[0] for x in _earlier(p, s, a) if x.outputs]
    builds = [x.outputs[0] for x in _earlier(p, s, a) if x.outputs and x.type == "build"]
    return builds[:1] or outputs[-1:]


def monitor_wait_minutes(a: m.Action) -> int:
    """The bake time of a monitor action in whole minutes (CodePipeline's WaitTime), at least 1."""
    from conveyor.spec.pipeline_file import parse_duration

    cfg = a.config
    raw = next(
        (cfg[k] for k in ("bake", "bakeTime", "bake_time", "duration", "window") if k in cfg), None
    )
    try:
        secs = parse_duration(raw) if raw is not None else None
    except ValueError:
        secs = None
    if secs is None:
        secs = 60  # the monitor action's default bake
    return max(1, -(-secs // 60))


def project_name(pipeline: str, action: str) -> str:
    """The CodeBuild project name of an action: `[A-Za-z0-9][A-Za-z0-9\\-_]{1,254}`."""
    raw = re.sub(r"[^A-Za-z0-9\-_]", "-", f"{pipeline}-{action}")
    raw = raw.lstrip("-_") or "conveyor"
    return raw[:255]


def declared_variables(p: m.Pipeline, capital: bool = False) -> list[dict[str, Any]]:
    """The pipeline's variables as CodePipeline declares them (`Name` etc. in a template)."""
    keys = (
        ("Name", "DefaultValue", "Description")
        if capital
        else ("name", "defaultValue", "description")
    )
    return [
        {
            k: v
            for k, v in zip(keys, (x.name, x.default, x.description), strict=True)
            if v not in (None, "")
        }
        for x in p.variables
    ]


def _export_artifact_store(
    doc: dict[str, Any], cp: Mapping[str, Any], artifact_bucket: str | None, warnings: list[str]
) -> None:
    """The artifact store(s): as imported, or the bucket given (a placeholder otherwise)."""
    if "artifactStores" in cp and not artifact_bucket:
        doc["artifactStores"] = cp["artifactStores"]
    else:
        store = dict(cp.get("artifactStore") or {"type": "S3", "location": PLACEHOLDER_BUCKET})
        if artifact_bucket:
            store["location"] = artifact_bucket
        if store.get("location") == PLACEHOLDER_BUCKET:
            warnings.append(
                f"artifactStore location is a placeholder ({PLACEHOLDER_BUCKET}): pass "
                "--artifact-bucket"
            )
        doc["artifactStore"] = store


def _export_triggers(p: m.Pipeline, warnings: list[str]) -> list[dict[str, Any]]:
    """V2 triggers of the connection sources (a CodeCommit source has an EventBridge rule)."""
    triggers: list[dict[str, Any]] = []
    for t in p.triggers:
        try:
            _, src = p.find_action(t.source_action)
        except KeyError:
            continue
        if src.type != "source.git" or is_codecommit_name(str(src.config.get("repository", ""))):
            warnings.append(
                f"trigger on '{t.source_action}': CodePipeline triggers need a "
                "CodeStarSourceConnection "
                "source; a CodeCommit source starts the pipeline through an EventBridge rule "
                "(`conveyor aws synth` creates it)"
            )
            continue
        push: dict[str, Any] = {}
        for key, f in (("branches", t.branches), ("tags", t.tags), ("filePaths", t.file_paths)):
            if f.includes or f.excludes:
                push[key] = {
                    k: list(v) for k, v in (("includes", f.includes), ("excludes", f.excludes)) if v
                }
        triggers.append(
            {
                "providerType": "CodeStarSourceConnection",
                "gitConfiguration": {"sourceActionName": t.source_action, "push": [push]},
            }
        )
    return triggers


def _export_stage(
    p: m.Pipeline,
    s: m.Stage,
    cp: Mapping[str, Any],
    names: dict[str, str],
    warnings: list[str],
    problems: list[str],
    registry: ActionRegistry,
) -> dict[str, Any]:
    """A stage as CodePipeline JSON: its actions, onFailure (ROLLBACK when an action's failure
    rolls the stage back, a monitor) and what import kept."""
    extra_actions: Mapping[str, Any] = cp.get("actions") or {}
    se = dict((cp.get("stages") or {}).get(s.name) or {})
    actions = []
    rollbacks: list[m.Action] = []
    for a in s.actions:
        extra = dict(extra_actions.get(f"{s.name}/{a.name}") or {})
        req = ExportRequest(p, s, a, extra, {}, names, warnings, rollbacks)
        try:
            actions.append(_export_action(req, registry))
        except ConfigError as e:
            problems.append(e.message)
    sd: dict[str, Any] = {"name": s.name, "actions": actions}
    if rollbacks and not (s.on_failure and s.on_failure.result != "FAIL"):
        sd["onFailure"] = {"result": "ROLLBACK"}  # a failed monitor rolls the stage back
    if s.on_failure and s.on_failure.result != "FAIL":
        of: dict[str, Any] = {"result": s.on_failure.result}
        if s.on_failure.result == "RETRY":
            of["retryConfiguration"] = {"retryMode": s.on_failure.retry_mode}
        if se.get("onFailureConditions"):
            of["conditions"] = se["onFailureConditions"]
        sd["onFailure"] = of
    for key in ("onSuccess", "beforeEntry", "blockers"):
        if key in se:
            sd[key] = se[key]
    if rollbacks:
        warnings.append(
            f"stage '{s.name}': monitor action(s) "
            f"{', '.join(x.name for x in rollbacks)} run the HTTP probes in CodeBuild "
            "(project created by `conveyor aws synth`); its optional CloudWatch alarm "
            "condition (stack parameter UseMonitorAlarm) is not exported"
        )
    return sd


def _export_action(req: ExportRequest, registry: ActionRegistry) -> dict[str, Any]:
    """The action as CodePipeline JSON, written by its type's `to_codepipeline`."""
    req.leftover.update(req.extra.pop("configuration", {}) or {})
    try:
        mapping = registry.mapping(req.action.type, EXPORT_METHOD)
    except ConfigError as e:
        raise ConfigError(f"{req.where}: {e}") from None
    out: dict[str, Any] = mapping.to_codepipeline(req)
    return out


def finish_export(
    req: ExportRequest,
    type_id: dict[str, Any],
    configuration: dict[str, Any],
    commands: Sequence[str] | None,
) -> dict[str, Any]:
    """An exported action's declaration around its type and configuration: what import kept,
    the artifacts (a CodeBuild action gets the input it needs), namespace, region, timeout."""
    p, s, a, extra, where = req.pipeline, req.stage, req.action, req.extra, req.where
    if "actionTypeId" in extra:
        type_id = dict(extra.pop("actionTypeId"))
    configuration.update(req.leftover)
    out: dict[str, Any] = {"name": a.name, "actionTypeId": type_id, "runOrder": a.run_order}
    if commands is not None:
        out["commands"] = list(commands)
    if configuration:
        out["configuration"] = configuration
    inputs = list(a.inputs)
    if not inputs and type_id.get("provider") == "CodeBuild":
        # CodeBuild actions need 1-5 input artifacts: the output of the action that built the
        # image (a promote, a monitor), else the latest artifact before this action
        inputs = _codebuild_input(p, s, a)
        if not inputs:
            raise ConfigError(
                f"{where}: a CodeBuild action needs an input artifact and no earlier action "
                "produces one: give it `inputs:`"
            )
    out["inputArtifacts"] = [{"name": x} for x in inputs]
    out["outputArtifacts"] = [{"name": x} for x in a.outputs]
    if a.namespace:
        out["namespace"] = a.namespace
    if a.region:
        out["region"] = a.region
    if a.timeout_seconds and type_id.get("provider") in ("Manual", "Commands"):
        out["timeoutInMinutes"] = max(1, -(-a.timeout_seconds // 60))
    out.update(extra)
    return out
